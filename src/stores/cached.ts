import { ConfigError } from '../errors.js';
import type { ClearExpiredOptions, SessionStore, StoredSession, UpdateResult } from '../store.js';
import {
  checkOptions,
  consoleLogger,
  type OpenGuard,
  openGuard,
  positiveInteger,
  type StoreLogger,
} from './kit.js';

/** Where the cached store reports cache failures; the manager's `logger` fits. */
export type CachedStoreLogger = StoreLogger;

export interface CachedStoreOptions {
  /**
   * The fast store in front, such as `redisStore()` or `memoryStore()`. It
   * may lose anything at any time: every write goes to `store` first, and any
   * error it throws is logged and answered from `store` instead. Processes
   * that share `store` may each have their own cache (a `memoryStore()`):
   * a logout or revocation in one process then reaches the others within
   * `cacheTtlMs`.
   * @default — required
   */
  cache: SessionStore;
  /**
   * The durable store behind, such as `postgresStore()` or `sqliteStore()`:
   * the truth. Compare-and-set runs here, so no update is lost whatever the
   * cache holds. Its errors fail the request as usual.
   * @default — required
   */
  store: SessionStore;
  /**
   * How long a cached copy may answer reads, counted from when it was read
   * from (or written to) the durable store; touches do not extend it. This
   * bounds how long a process whose cache is its own keeps serving a session
   * that another process has changed, logged out or revoked: with the
   * default, a revocation is seen everywhere within 5 seconds. Pass
   * `Infinity` only when every process shares one cache (one Redis), where a
   * destroy reaches every process at once.
   * @default 5_000
   */
  cacheTtlMs?: number;
  /**
   * Where cache failures are reported; each one is logged and then served
   * from the durable store.
   * @default console.warn
   */
  logger?: CachedStoreLogger;
}

const KNOWN: (keyof CachedStoreOptions)[] = ['cache', 'store', 'cacheTtlMs', 'logger'];

// How the cache stays behind the truth, never ahead of it, and never far:
// - it is written only after the durable store, with what the durable store
//   now holds (after a write) or returned (after a miss);
// - every cache write is a compare-and-set on the entry it replaces, and never
//   replaces a newer one: entries are ordered by (createdAt, version), so a
//   late write from a slow request or another process cannot undo a newer one;
// - a destroy leaves a tombstone for a while, so a read that fetched the
//   record just before the destroy cannot put it back;
// - after a failed compare-and-set or cache write, reads of that key go to the
//   durable store until a cache write succeeds;
// - a copy answers reads for cacheTtlMs after it was read from the durable
//   store, then the durable store is asked again, so a change made through
//   another process's cache is seen within that bound.
// A cached entry is the record with `data` prefixed by
// `<staleAfter>|<owner length>|<owner>`: the time its copy stops answering
// reads (empty: when the session expires), then the owner (an empty length:
// none). The owner travels in `data` rather than in `owner`, so a cache store
// with an owner index (Redis) never maintains one that nobody reads.
const TOMBSTONE_VERSION = 2 ** 31 - 1;
/** Longer than any durable read that could race with a destroy. */
const TOMBSTONE_MS = 60_000;
/** Compare-and-set rounds a cache write tries before giving up on the cache. */
const CACHE_ATTEMPTS = 3;
/** Bound on keys this process reads from the durable store until the cache is repaired. */
const MAX_SUSPECTS = 10_000;

/**
 * Any cache store in front of any durable store, as Django's `cached_db`:
 * reads are served from the cache and fall back to the durable store (filling
 * the cache); writes go to the durable store first, then to the cache. The
 * durable store stays the truth under concurrency: an update is the durable
 * store's compare-and-set, and after a failed one the next read of that key
 * goes to the durable store, so a retry never loops on a stale cached copy.
 * A failing cache is logged and never fails a request.
 *
 * A cached copy answers for at most `cacheTtlMs` (5 s by default) after it
 * was read from the durable store, and never past the session's `expiresAt`.
 * Locks and the owner index are the durable store's, when it has them.
 */
export function cachedStore(options: CachedStoreOptions): SessionStore {
  const { cache, store, cacheTtlMs, logger } = resolveOptions(options);
  const name = `cached(${store.name})`;
  const guard = openGuard(name);
  const keeper = cacheKeeper(name, cache, store, cacheTtlMs, logger);

  const cached: SessionStore = {
    name,

    async get(key) {
      guard.check();
      const suspected = keeper.suspects.has(key);
      let found: StoredSession | undefined;
      if (!suspected) {
        try {
          found = await cache.get(key);
        } catch (err) {
          keeper.warn('get', err);
        }
      }
      // A tombstone: destroyed a moment ago. Read the truth, and fill nothing.
      if (found?.version === TOMBSTONE_VERSION) return store.get(key);
      if (found !== undefined) {
        const hit = unwrap(found, Date.now());
        if (hit !== undefined) return hit;
      }
      const readAt = Date.now();
      const record = await store.get(key);
      if (record !== undefined) {
        const expected = found === undefined ? 'empty' : found.version;
        await keeper.write('write', key, () => keeper.put(key, record, readAt, expected));
      } else if (suspected || found !== undefined) {
        // The cache may hold a copy the durable store no longer has.
        await keeper.write('destroy', key, () => keeper.bury(key));
      }
      return record;
    },

    async create(key, record) {
      guard.check();
      const writtenAt = Date.now();
      if (!(await store.create(key, record))) return false;
      // A new record under this key: whatever the cache still holds for it
      // (an expired session, a tombstone) is older.
      await keeper.write('write', key, () => keeper.put(key, record, writtenAt, 'empty', true));
      return true;
    },

    async update(key, record, expectedVersion): Promise<UpdateResult> {
      guard.check();
      const writtenAt = Date.now();
      const result = await store.update(key, record, expectedVersion);
      if (result === 'ok') {
        await keeper.write('write', key, () => keeper.put(key, record, writtenAt, expectedVersion));
      } else {
        // The caller worked from a stale copy, perhaps the cache's: its reload
        // must read the truth.
        keeper.suspect(key);
        if (result === 'missing') await keeper.write('destroy', key, () => keeper.bury(key));
      }
      return result;
    },

    async touch(key, expiresAt) {
      guard.check();
      await store.touch(key, expiresAt);
      // The cached copy keeps its version, so a concurrent update still wins,
      // and its staleAfter, so a touch never keeps a revoked copy alive.
      try {
        await cache.touch(key, expiresAt);
      } catch (err) {
        keeper.warn('touch', err);
        keeper.suspect(key);
      }
    },

    async destroy(key) {
      guard.check();
      await store.destroy(key);
      await keeper.write('destroy', key, () => keeper.bury(key));
    },

    async clearExpired(now = Date.now(), opts?: ClearExpiredOptions) {
      guard.check();
      // Passed through, and a final report when the durable store gave none.
      let reported = false;
      const onProgress = opts?.onProgress;
      const removed = await store.clearExpired(
        now,
        onProgress === undefined
          ? opts
          : {
              ...opts,
              onProgress: (progress) => {
                reported = true;
                onProgress(progress);
              },
            },
      );
      if (onProgress !== undefined && !reported) onProgress({ removed });
      try {
        await cache.clearExpired(now);
      } catch (err) {
        keeper.warn('clearExpired', err);
      }
      return removed;
    },

    async close() {
      if (!guard.close()) return;
      keeper.suspects.clear();
      const [cacheClosed, storeClosed] = await Promise.allSettled([cache.close(), store.close()]);
      if (cacheClosed.status === 'rejected') keeper.warn('close', cacheClosed.reason);
      if (storeClosed.status === 'rejected') throw storeClosed.reason;
    },
  };
  delegate(cached, store, guard);
  return cached;
}

function resolveOptions(options: CachedStoreOptions) {
  if (options === undefined) {
    throw new ConfigError(
      'cached store: pass { cache, store }, such as { cache: memoryStore(), store: postgresStore(…) }',
    );
  }
  const given = checkOptions('cached', options, KNOWN);
  const { cache, store } = given;
  if (!isStore(cache)) {
    throw new ConfigError('cached store: cache must be a session store, such as memoryStore()');
  }
  if (!isStore(store)) {
    throw new ConfigError('cached store: store must be a session store, such as postgresStore()');
  }
  if (cache === store) {
    throw new ConfigError('cached store: cache and store must be two different stores');
  }
  const ttl = given.cacheTtlMs ?? 5_000;
  const cacheTtlMs =
    ttl === Number.POSITIVE_INFINITY ? ttl : positiveInteger('cached store: ', 'cacheTtlMs', ttl);
  return { cache, store, cacheTtlMs, logger: given.logger ?? consoleLogger };
}

/**
 * The cache side: entries, compare-and-set writes that never replace a newer
 * entry, tombstones, and the keys whose cached copy may be stale.
 */
function cacheKeeper(
  name: string,
  cache: SessionStore,
  store: SessionStore,
  cacheTtlMs: number,
  logger: CachedStoreLogger,
) {
  const warn = (op: string, err: unknown): void => {
    logger.warn(`[satchel] [${name}] cache ${op} failed; using ${store.name} alone`, {
      store: name,
      cache: cache.name,
      error: err instanceof Error ? err.message : String(err),
    });
  };

  // Keys whose cached copy may be stale: after a failed compare-and-set, or a
  // cache write that failed. Their reads go to the durable store until a
  // cache write for them succeeds.
  const suspects = new Set<string>();
  const suspect = (key: string): void => {
    suspects.delete(key);
    suspects.add(key);
    if (suspects.size > MAX_SUSPECTS) suspects.delete(suspects.values().next().value!);
  };

  /** Runs a cache write; a failure is logged and leaves the key suspect. */
  const write = async (op: string, key: string, run: () => Promise<boolean>) => {
    try {
      if (await run()) suspects.delete(key);
      else suspect(key);
    } catch (err) {
      warn(op, err);
      suspect(key);
    }
  };

  /** The cache entry for `record`, read from the durable store at `since`. */
  const entry = (record: StoredSession, since: number): StoredSession => {
    const staleAfter = Number.isFinite(cacheTtlMs) ? String(since + cacheTtlMs) : '';
    const owner = record.owner === undefined ? '|' : `${record.owner.length}|${record.owner}`;
    return {
      data: `${staleAfter}|${owner}${record.data}`,
      version: record.version,
      expiresAt: record.expiresAt,
      createdAt: record.createdAt,
    };
  };

  /**
   * Makes the cache hold `record` unless it holds something newer (or, except
   * for a fresh create, a tombstone). `expected` is the version the cache most
   * likely holds, tried first: 'empty' after a miss or a create, a version
   * after an update. Resolves false when it gave up.
   */
  const put = async (
    key: string,
    record: StoredSession,
    since: number,
    expected: 'empty' | number,
    overTombstone = false,
  ): Promise<boolean> => {
    const value = entry(record, since);
    if (expected === 'empty') {
      if (await cache.create(key, value)) return true;
    } else if ((await cache.update(key, value, expected)) === 'ok') {
      return true;
    }
    for (let attempt = 0; attempt < CACHE_ATTEMPTS; attempt++) {
      const current = await cache.get(key);
      if (current === undefined) {
        if (await cache.create(key, value)) return true;
        continue;
      }
      if (current.version === TOMBSTONE_VERSION ? !overTombstone : !olderOrSame(current, record)) {
        return true;
      }
      if ((await cache.update(key, value, current.version)) === 'ok') return true;
    }
    return false;
  };

  /** Replaces whatever the cache holds for `key` with a tombstone. */
  const bury = async (key: string): Promise<boolean> => {
    const now = Date.now();
    const tombstone: StoredSession = {
      data: '',
      version: TOMBSTONE_VERSION,
      expiresAt: now + TOMBSTONE_MS,
      createdAt: now,
    };
    for (let attempt = 0; attempt < CACHE_ATTEMPTS; attempt++) {
      if (await cache.create(key, tombstone)) return true;
      const current = await cache.get(key);
      if (current === undefined) continue;
      if (current.version === TOMBSTONE_VERSION) return true;
      if ((await cache.update(key, tombstone, current.version)) === 'ok') return true;
    }
    return false;
  };

  return { warn, suspects, suspect, write, put, bury };
}

/** The durable store's owner index and locks, when it has them; the cache never answers them. */
function delegate(cached: SessionStore, store: SessionStore, guard: OpenGuard): void {
  // Ending an owner's sessions lists them in the durable store and then ends
  // each through `destroy`, so each cached copy is replaced by a tombstone; a
  // session the owner gains after the listing is not ended.
  if (store.listByOwner !== undefined && store.destroyByOwner !== undefined) {
    const { listByOwner } = store;
    cached.listByOwner = async (owner) => {
      guard.check();
      return listByOwner.call(store, owner);
    };
    cached.destroyByOwner = async (owner, exceptKey) => {
      guard.check();
      const keys = (await listByOwner.call(store, owner))
        .map(({ key }) => key)
        .filter((key) => key !== exceptKey);
      await Promise.all(keys.map((key) => cached.destroy(key)));
      return keys.length;
    };
  }

  if (store.lock !== undefined && store.unlock !== undefined) {
    const { lock, unlock } = store;
    cached.lock = async (key, token, ttlMs) => {
      guard.check();
      return lock.call(store, key, token, ttlMs);
    };
    cached.unlock = async (key, token) => {
      guard.check();
      return unlock.call(store, key, token);
    };
  }
}

const ENTRY_HEAD = /^(\d*)\|(\d*)\|/;

/** The record in a cache entry, or undefined when the entry is stale or unreadable. */
function unwrap(found: StoredSession, now: number): StoredSession | undefined {
  const head = ENTRY_HEAD.exec(found.data);
  if (head === null) return undefined;
  const [whole, staleText = '', ownerLength = ''] = head;
  const staleAfter = staleText === '' ? Number.POSITIVE_INFINITY : Number(staleText);
  if (!(now < staleAfter) || found.expiresAt <= now) return undefined;
  const ownerEnd = whole.length + (ownerLength === '' ? 0 : Number(ownerLength));
  if (ownerEnd > found.data.length) return undefined;
  const record: StoredSession = {
    data: found.data.slice(ownerEnd),
    version: found.version,
    expiresAt: found.expiresAt,
    createdAt: found.createdAt,
  };
  if (ownerLength !== '') record.owner = found.data.slice(whole.length, ownerEnd);
  return record;
}

/** True when `cached` is the same session as `record` at an older or equal version, or an older session. */
function olderOrSame(cached: StoredSession, record: StoredSession): boolean {
  if (cached.createdAt !== record.createdAt) return cached.createdAt < record.createdAt;
  return cached.version <= record.version;
}

function isStore(value: unknown): value is SessionStore {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as SessionStore).get === 'function' &&
    typeof (value as SessionStore).update === 'function'
  );
}
