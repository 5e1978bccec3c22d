import {
  forwardingTo,
  type OwnedRecord,
  type SessionStore,
  type StoredSession,
  type SyncAccess,
} from '../store.js';
import { checkOptions, openGuard, positiveInteger } from './kit.js';
import { LockTable } from './lock.js';

export interface MemoryStoreOptions {
  /**
   * How many sessions the store keeps, so a flood of new sessions (a bot that
   * ignores cookies) cannot exhaust the process's memory. Past it, the least
   * recently used session *without an owner* (anonymous) is dropped first;
   * a session with an owner (a signed-in user) is dropped only when the
   * store holds nothing else. Dropping a session signs nobody in: its user
   * starts a new, empty session.
   * @default 10_000
   */
  maxEntries?: number;
}

const KNOWN: (keyof MemoryStoreOptions)[] = ['maxEntries'];

/**
 * Keeps sessions in this process's memory: for development, tests and
 * single-process servers. Everything is lost on restart and nothing is shared
 * between processes. Records are copied in and out, so callers never alias
 * what the store holds. It starts no timer: expiry is checked on every read
 * and `clearExpired` removes what has expired.
 */
export function memoryStore(options?: MemoryStoreOptions): SessionStore {
  const given = checkOptions('memory', options, KNOWN);
  const maxEntries = positiveInteger('memory store: ', 'maxEntries', given.maxEntries ?? 10_000);
  const records = new Records(maxEntries);
  const locks = new LockTable();
  const guard = openGuard('memory');

  const live = (key: string, now = Date.now()): StoredSession | undefined => {
    const record = records.peek(key);
    return record !== undefined && record.expiresAt > now ? record : undefined;
  };

  const sync: SyncAccess = {
    get(key) {
      guard.check();
      const record = records.use(key);
      if (record === undefined) return undefined;
      if (record.expiresAt <= Date.now()) {
        records.delete(key);
        return undefined;
      }
      return copy(record);
    },

    update(key, record, expectedVersion) {
      guard.check();
      const current = live(key);
      if (current === undefined) return 'missing';
      if (current.version !== expectedVersion) return 'conflict';
      records.set(key, copy(record));
      return 'ok';
    },
  };

  return {
    name: 'memory',
    ...forwardingTo(sync),

    async create(key, record) {
      guard.check();
      if (live(key) !== undefined) return false;
      records.set(key, copy(record));
      return true;
    },

    async touch(key, expiresAt) {
      guard.check();
      const current = live(key);
      if (current !== undefined) records.set(key, { ...current, expiresAt });
    },

    async destroy(key) {
      guard.check();
      records.delete(key);
    },

    async clearExpired(now = Date.now(), opts) {
      guard.check();
      const expired = [...records.entries()].filter(([, record]) => record.expiresAt <= now);
      for (const [key] of expired) records.delete(key);
      locks.sweep();
      opts?.onProgress?.({ removed: expired.length, total: expired.length });
      return expired.length;
    },

    async count(now) {
      guard.check();
      let count = 0;
      for (const [, record] of records.entries()) if (record.expiresAt > now) count++;
      return count;
    },

    async listByOwner(owner) {
      guard.check();
      const now = Date.now();
      const out: OwnedRecord[] = [];
      for (const key of records.keysOf(owner)) {
        const record = live(key, now);
        if (record?.owner === owner) out.push({ key, record: copy(record) });
      }
      return out;
    },

    async destroyByOwner(owner, exceptKey) {
      guard.check();
      let removed = 0;
      for (const key of [...records.keysOf(owner)]) {
        if (key === exceptKey) continue;
        if (live(key) !== undefined) removed++;
        records.delete(key);
      }
      return removed;
    },

    async close() {
      if (!guard.close()) return;
      records.clear();
      locks.clear();
    },

    async lock(key, token, ttlMs) {
      guard.check();
      if (locks.size >= maxEntries) locks.sweep();
      return locks.take(key, token, ttlMs);
    },

    async unlock(key, token) {
      guard.check();
      locks.release(key, token);
    },
  };
}

/**
 * The records, in two least-recently-used lists — anonymous and owned — under
 * one bound, with an owner -> keys index kept in step. A Map keeps insertion
 * order, so re-inserting a key on use makes its first key the least recently
 * used.
 */
class Records {
  #anonymous = new Map<string, StoredSession>();
  #owned = new Map<string, StoredSession>();
  #owners = new Map<string, Set<string>>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  peek(key: string): StoredSession | undefined {
    return this.#owned.get(key) ?? this.#anonymous.get(key);
  }

  /** The record, marked as just used. */
  use(key: string): StoredSession | undefined {
    const record = this.peek(key);
    if (record !== undefined) {
      const list = this.#listOf(record);
      list.delete(key);
      list.set(key, record);
    }
    return record;
  }

  set(key: string, record: StoredSession): void {
    this.delete(key);
    this.#listOf(record).set(key, record);
    if (record.owner !== undefined) {
      const keys = this.#owners.get(record.owner) ?? new Set<string>();
      this.#owners.set(record.owner, keys.add(key));
    }
    // A flood of anonymous sessions (bots, crawlers) evicts its own kind
    // before it can push out a signed-in user.
    while (this.#anonymous.size + this.#owned.size > this.#max) {
      const list = this.#anonymous.size > 0 ? this.#anonymous : this.#owned;
      this.delete(list.keys().next().value!);
    }
  }

  delete(key: string): void {
    const record = this.peek(key);
    if (record === undefined) return;
    this.#listOf(record).delete(key);
    if (record.owner === undefined) return;
    const keys = this.#owners.get(record.owner);
    keys?.delete(key);
    if (keys?.size === 0) this.#owners.delete(record.owner);
  }

  keysOf(owner: string): ReadonlySet<string> {
    return this.#owners.get(owner) ?? new Set();
  }

  *entries(): IterableIterator<[string, StoredSession]> {
    yield* this.#anonymous;
    yield* this.#owned;
  }

  clear(): void {
    this.#anonymous.clear();
    this.#owned.clear();
    this.#owners.clear();
  }

  #listOf(record: StoredSession): Map<string, StoredSession> {
    return record.owner === undefined ? this.#anonymous : this.#owned;
  }
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
