import { LRUCache } from 'lru-cache';
import { ConfigError, StoreUnavailableError } from '../errors.js';
import type { OwnedRecord, SessionStore, StoredSession, UpdateResult } from '../store.js';
import { LockTable } from './lock.js';

export interface MemoryStoreOptions {
  /**
   * How many sessions the store keeps. Past it, the least recently used
   * session is dropped, so a flood of new sessions (a bot that ignores
   * cookies) cannot exhaust the process's memory.
   * @default 10_000
   */
  maxEntries?: number;
}

/**
 * Keeps sessions in this process's memory: for development, tests and
 * single-process servers. Everything is lost on restart and nothing is shared
 * between processes. Records are copied in and out, so callers never alias
 * what the store holds.
 */
export function memoryStore(options: MemoryStoreOptions = {}): SessionStore {
  const maxEntries = options.maxEntries ?? 10_000;
  if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
    throw new ConfigError(
      `memory store: maxEntries must be a positive integer; got ${String(maxEntries)}`,
    );
  }

  // The TTL clock is Date.now(), the same clock as expiresAt. No autopurge
  // and no TTL resolution cache, so the cache never starts a timer. Stale
  // entries stay visible to peek and iteration so that clearExpired(now) can
  // count them; every read checks expiresAt itself.
  // owner -> keys; kept in step with the cache, evictions included.
  const owners = new Map<string, Set<string>>();
  const unindex = (key: string, owner: string | undefined): void => {
    if (owner === undefined) return;
    const keys = owners.get(owner);
    keys?.delete(key);
    if (keys?.size === 0) owners.delete(owner);
  };
  const cache = new LRUCache<string, StoredSession>({
    max: maxEntries,
    dispose: (record, key) => unindex(key, record.owner),
    allowStale: true,
    ttlAutopurge: false,
    ttlResolution: 0,
    perf: { now: () => Date.now() },
  });
  const locks = new LockTable();
  let closed = false;

  const ensureOpen = (): void => {
    if (closed) throw new StoreUnavailableError('memory', 'the store is closed');
  };

  const put = (key: string, record: StoredSession): void => {
    const now = Date.now();
    let ttl = record.expiresAt - now;
    let start = now;
    if (!Number.isFinite(ttl)) {
      // No expiry the cache can track; the expiresAt check below still applies.
      ttl = 0;
    } else if (ttl < 1) {
      // Already expired: a TTL of 0 would mean "never", so backdate the start.
      ttl = 1;
      start = record.expiresAt - 1;
    }
    cache.set(key, copy(record), { ttl, start });
    if (record.owner !== undefined) {
      const keys = owners.get(record.owner) ?? new Set<string>();
      owners.set(record.owner, keys.add(key));
    }
  };

  const live = (key: string, now = Date.now()): StoredSession | undefined => {
    const record = cache.peek(key);
    return record !== undefined && record.expiresAt > now ? record : undefined;
  };

  return {
    name: 'memory',

    async get(key) {
      ensureOpen();
      const record = cache.get(key);
      if (record === undefined) return undefined;
      if (record.expiresAt <= Date.now()) {
        cache.delete(key);
        return undefined;
      }
      return copy(record);
    },

    async create(key, record) {
      ensureOpen();
      if (live(key) !== undefined) return false;
      put(key, record);
      return true;
    },

    async update(key, record, expectedVersion): Promise<UpdateResult> {
      ensureOpen();
      const current = live(key);
      if (current === undefined) return 'missing';
      if (current.version !== expectedVersion) return 'conflict';
      put(key, record);
      return 'ok';
    },

    async touch(key, expiresAt) {
      ensureOpen();
      const current = live(key);
      if (current !== undefined) put(key, { ...current, expiresAt });
    },

    async destroy(key) {
      ensureOpen();
      cache.delete(key);
    },

    async clearExpired(now = Date.now()) {
      ensureOpen();
      const expired: string[] = [];
      for (const [key, record] of cache.entries()) {
        if (record.expiresAt <= now) expired.push(key);
      }
      for (const key of expired) cache.delete(key);
      locks.sweep();
      return expired.length;
    },

    async count(now) {
      ensureOpen();
      let live = 0;
      for (const record of cache.values()) if (record.expiresAt > now) live++;
      return live;
    },

    async listByOwner(owner) {
      ensureOpen();
      const now = Date.now();
      const out: OwnedRecord[] = [];
      for (const key of owners.get(owner) ?? []) {
        const record = live(key, now);
        if (record?.owner === owner) out.push({ key, record: copy(record) });
      }
      return out;
    },

    async destroyByOwner(owner, exceptKey) {
      ensureOpen();
      let removed = 0;
      for (const key of [...(owners.get(owner) ?? [])]) {
        if (key === exceptKey) continue;
        if (live(key) !== undefined) removed++;
        cache.delete(key);
      }
      return removed;
    },

    async close() {
      closed = true;
      cache.clear();
      owners.clear();
      locks.clear();
    },

    async lock(key, token, ttlMs) {
      ensureOpen();
      if (locks.size >= maxEntries) locks.sweep();
      return locks.take(key, token, ttlMs);
    },

    async unlock(key, token) {
      ensureOpen();
      locks.release(key, token);
    },
  };
}

function copy(record: StoredSession): StoredSession {
  const out: StoredSession = {
    data: record.data,
    version: record.version,
    expiresAt: record.expiresAt,
    createdAt: record.createdAt,
  };
  if (record.owner !== undefined) out.owner = record.owner;
  return out;
}
