import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { SessionStore } from '../../src/store.js';
import { cachedStore } from '../../src/stores/cached.js';
import { memoryStore } from '../../src/stores/memory.js';
import { migrate, postgresStore } from '../../src/stores/postgres.js';
import { sqliteStore } from '../../src/stores/sqlite.js';
import { adminDatabaseUrl, postgresUnreachable, serviceReady } from '../support/services.js';
import { describeStore, newKey, newRecord } from './conformance.js';

const dir = mkdtempSync(join(tmpdir(), 'store-test-cached-'));
const path = join(dir, 'sessions.db');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const quiet = { warn: () => {} };

type Method = Exclude<keyof SessionStore, 'name'>;
const METHODS: Method[] = [
  'get',
  'create',
  'update',
  'touch',
  'destroy',
  'clearExpired',
  'close',
  'lock',
  'unlock',
];

/** `inner` with the given methods (all by default) rejecting, as a cache server that went away. */
function failing(inner: SessionStore, broken: Method[] = METHODS): SessionStore {
  const out: Record<string, unknown> = { name: 'broken' };
  for (const method of METHODS) {
    const fn = inner[method] as ((...args: unknown[]) => Promise<unknown>) | undefined;
    if (fn === undefined) continue;
    out[method] = broken.includes(method)
      ? async () => {
          throw new Error(`cache down (${method})`);
        }
      : (...args: unknown[]) => fn.apply(inner, args);
  }
  return out as unknown as SessionStore;
}

describeStore(
  'cached (memory in front of sqlite)',
  () => cachedStore({ cache: memoryStore(), store: sqliteStore({ path }) }),
  {
    lock: true,
    owners: true,
    persistent: () => cachedStore({ cache: memoryStore(), store: sqliteStore({ path }) }),
  },
);

describeStore(
  'cached (failing cache in front of sqlite)',
  () =>
    cachedStore({
      cache: failing(memoryStore()),
      store: sqliteStore({ path: ':memory:' }),
      logger: quiet,
    }),
  { lock: true, owners: true },
);

describeStore(
  'cached (cache refusing writes in front of sqlite)',
  () =>
    cachedStore({
      cache: failing(memoryStore(), ['create', 'update', 'touch', 'destroy']),
      store: sqliteStore({ path: ':memory:' }),
      logger: quiet,
    }),
  { lock: true, owners: true },
);

describe('cached store', () => {
  it('serves reads and writes from the durable store when every cache call fails, and logs why', async () => {
    const durable = sqliteStore({ path: ':memory:' });
    const logger = { warn: vi.fn() };
    const store = cachedStore({ cache: failing(memoryStore()), store: durable, logger });
    const key = newKey();
    const record = newRecord();
    expect(await store.get(newKey())).toBeUndefined();
    expect(await store.create(key, record)).toBe(true);
    expect(await store.get(key)).toStrictEqual(record);
    const next = newRecord({ version: 2, data: 'next' });
    expect(await store.update(key, next, 1)).toBe('ok');
    expect(await durable.get(key)).toStrictEqual(next);
    await store.touch(key, next.expiresAt + 1_000);
    expect((await store.get(key))?.expiresAt).toBe(next.expiresAt + 1_000);
    expect(await store.lock?.(key, 'token', 1_000)).toBe(true);
    await store.destroy(key);
    expect(await durable.get(key)).toBeUndefined();
    expect(await store.get(key)).toBeUndefined();
    expect(await store.clearExpired()).toBe(0);
    await store.close();

    expect(logger.warn).toHaveBeenCalled();
    for (const [message, details] of logger.warn.mock.calls) {
      expect(message).toMatch(
        /^\[satchel\] \[cached\(sqlite\)\] cache \w+ failed; using sqlite alone$/,
      );
      expect(details).toMatchObject({ store: 'cached(sqlite)', cache: 'broken' });
      expect(details.error).toMatch(/^cache down/);
    }
    const ops = new Set(
      logger.warn.mock.calls.map(([message]) => /cache (\w+)/.exec(message)?.[1]),
    );
    expect([...ops].sort()).toEqual(['clearExpired', 'close', 'destroy', 'get', 'touch', 'write']);
  });

  it('serves a read after a write from the cache, without asking the durable store', async () => {
    const durable = sqliteStore({ path: ':memory:' });
    const store = cachedStore({ cache: memoryStore(), store: durable });
    const get = vi.spyOn(durable, 'get');
    const key = newKey();
    const record = newRecord();
    await store.create(key, record);
    expect(await store.get(key)).toStrictEqual(record);
    const next = newRecord({ version: 2, data: 'next' });
    await store.update(key, next, 1);
    expect(await store.get(key)).toStrictEqual(next);
    await store.touch(key, next.expiresAt + 1_000);
    expect(await store.get(key)).toStrictEqual({ ...next, expiresAt: next.expiresAt + 1_000 });
    expect(get).not.toHaveBeenCalled();
    await store.close();
  });

  it('fills the cache on a miss, so only the first read reaches the durable store', async () => {
    const durable = sqliteStore({ path: ':memory:' });
    const key = newKey();
    const record = newRecord();
    await durable.create(key, record);
    const store = cachedStore({ cache: memoryStore(), store: durable });
    const get = vi.spyOn(durable, 'get');
    for (let i = 0; i < 3; i++) expect(await store.get(key)).toStrictEqual(record);
    expect(get).toHaveBeenCalledTimes(1);
    await store.close();
  });

  it('reads the durable store after a failed compare-and-set, so the retry sees the truth', async () => {
    // Two processes, each with its own cache, over one database.
    const durable = sqliteStore({ path: ':memory:' });
    const a = cachedStore({ cache: memoryStore(), store: durable });
    const b = cachedStore({ cache: memoryStore(), store: durable });
    const key = newKey();
    await a.create(key, newRecord({ data: 'v1' }));
    expect((await b.get(key))?.data).toBe('v1');
    expect(await a.update(key, newRecord({ version: 2, data: 'v2 from a' }), 1)).toBe('ok');

    expect((await b.get(key))?.data).toBe('v1');
    expect(await b.update(key, newRecord({ version: 2, data: 'lost' }), 1)).toBe('conflict');
    const reloaded = await b.get(key);
    expect(reloaded).toMatchObject({ version: 2, data: 'v2 from a' });
    expect(await b.update(key, newRecord({ version: 3, data: 'v3 from b' }), 2)).toBe('ok');
    expect((await b.get(key))?.data).toBe('v3 from b');
    expect((await durable.get(key))?.data).toBe('v3 from b');
    await a.close();
    await b.close();
  });

  it('does not bring back a session destroyed while a slow read was filling the cache', async () => {
    const inner = sqliteStore({ path: ':memory:' });
    let gate: Promise<void> = Promise.resolve();
    const durable: SessionStore = {
      ...inner,
      name: 'slow',
      async get(key) {
        const record = await inner.get(key);
        await gate;
        return record;
      },
    };
    const cache = memoryStore();
    const store = cachedStore({ cache, store: durable });
    const key = newKey();
    await store.create(key, newRecord());
    await cache.destroy(key); // evicted

    let open!: () => void;
    gate = new Promise((resolve) => (open = resolve));
    const slowRead = store.get(key); // reads the record, then stalls before filling the cache
    await sleep(10);
    gate = Promise.resolve();
    await store.destroy(key);
    open();
    expect(await slowRead).toBeDefined();

    expect(await store.get(key)).toBeUndefined();
    expect(await store.update(key, newRecord({ version: 2 }), 1)).toBe('missing');
    expect(await store.get(key)).toBeUndefined();
    // A new session under the key replaces the tombstone.
    const fresh = newRecord({ data: 'fresh' });
    expect(await store.create(key, fresh)).toBe(true);
    expect(await store.get(key)).toStrictEqual(fresh);
    await store.close();
  });

  it('never lets a late cache write from another process replace a newer one', async () => {
    // Two processes sharing one cache and one database; A's cache write stalls.
    const durable = sqliteStore({ path: ':memory:' });
    const shared = memoryStore();
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const stalled: SessionStore = {
      ...shared,
      async update(key, record, expectedVersion) {
        await gate;
        return shared.update(key, record, expectedVersion);
      },
    };
    const a = cachedStore({ cache: stalled, store: durable });
    const b = cachedStore({ cache: shared, store: durable });
    const key = newKey();
    await b.create(key, newRecord({ data: 'v1' }));

    const late = a.update(key, newRecord({ version: 2, data: 'v2 from a' }), 1);
    await sleep(10);
    expect((await b.get(key))?.data).toBe('v1');
    expect(await b.update(key, newRecord({ version: 2, data: 'lost' }), 1)).toBe('conflict');
    const reloaded = await b.get(key);
    expect(reloaded?.data).toBe('v2 from a');
    const v3 = newRecord({ version: 3, data: 'v3 from b' });
    expect(await b.update(key, v3, 2)).toBe('ok');

    open();
    expect(await late).toBe('ok');
    expect(await b.get(key)).toStrictEqual(v3);
    expect(await a.get(key)).toStrictEqual(v3);
    await a.close();
    await b.close();
  });

  it('answers from the durable store again once a cached copy is older than cacheTtlMs', async () => {
    const durable = sqliteStore({ path: ':memory:' });
    const a = cachedStore({ cache: memoryStore(), store: durable, cacheTtlMs: 50 });
    const b = cachedStore({ cache: memoryStore(), store: durable, cacheTtlMs: 50 });
    const key = newKey();
    await a.create(key, newRecord({ data: 'v1' }));
    expect((await b.get(key))?.data).toBe('v1');
    await a.update(key, newRecord({ version: 2, data: 'v2' }), 1);
    expect((await b.get(key))?.data).toBe('v1');
    await sleep(80);
    expect((await b.get(key))?.data).toBe('v2');
    await a.close();
    await b.close();
  });

  describe('across processes, each with its own cache', () => {
    beforeEach(() => {
      vi.useFakeTimers({ toFake: ['Date'] });
    });
    afterEach(() => {
      vi.useRealTimers();
    });

    it('a revoke in one process is seen by another within the cache bound', async () => {
      // Two processes, each with its own cache, over one durable store; defaults only.
      const durable = memoryStore();
      const a = cachedStore({ cache: memoryStore(), store: durable, logger: quiet });
      const b = cachedStore({ cache: memoryStore(), store: durable, logger: quiet });
      const key = newKey();
      const other = newKey();
      await a.create(key, newRecord({ owner: 'victim' }));
      await a.create(other, newRecord({ owner: 'victim' }));
      expect(await b.get(key)).toBeDefined();
      expect(await b.get(other)).toBeDefined();

      // Process a: logout of one session, "sign out everywhere" for the rest.
      await a.destroy(key);
      expect(await a.destroyByOwner!('victim')).toBe(1);
      // Process b keeps serving its copies, touched on every request, but
      // the touches do not extend how long the copies answer.
      for (let second = 1; second <= 4; second++) {
        vi.advanceTimersByTime(1_000);
        await b.touch(key, Date.now() + 3_600_000);
        await b.touch(other, Date.now() + 3_600_000);
      }
      vi.advanceTimersByTime(1_000);
      expect(await b.get(key)).toBeUndefined();
      expect(await b.get(other)).toBeUndefined();
      await a.close();
      await b.close();
    });

    it('keeps cached copies as long as the session only when told cacheTtlMs: Infinity', async () => {
      const durable = memoryStore();
      const a = cachedStore({ cache: memoryStore(), store: durable });
      const b = cachedStore({ cache: memoryStore(), store: durable, cacheTtlMs: Infinity });
      const key = newKey();
      await a.create(key, newRecord());
      expect(await b.get(key)).toBeDefined();
      await a.destroy(key);
      vi.advanceTimersByTime(60_000);
      expect(await b.get(key)).toBeDefined();
      await a.close();
      await b.close();
    });
  });

  it('passes clearExpired progress through, and reports once when the durable store does not', async () => {
    const durable = memoryStore();
    const silent: SessionStore = {
      ...durable,
      name: 'silent',
      clearExpired: (now) => durable.clearExpired(now),
    };
    const now = Date.now();
    for (const store of [durable, silent]) {
      const cached = cachedStore({ cache: memoryStore(), store });
      await cached.create(newKey(), newRecord({ expiresAt: now - 1 }));
      const seen: Array<{ removed: number; total?: number }> = [];
      expect(await cached.clearExpired(now, { onProgress: (p) => seen.push(p) })).toBe(1);
      expect(seen).toEqual(store === durable ? [{ removed: 1, total: 1 }] : [{ removed: 1 }]);
    }
    await durable.close();
  });

  it('lists owners from the durable store, and ends their sessions in the cache too', async () => {
    // Two processes, each with its own cache, over one database.
    const durable = sqliteStore({ path: ':memory:' });
    const a = cachedStore({ cache: memoryStore(), store: durable });
    const cache = memoryStore();
    const b = cachedStore({ cache, store: durable });
    const [kept, ended, other] = [newKey(), newKey(), newKey()];
    await a.create(kept, newRecord({ owner: 'ann' }));
    await a.create(ended, newRecord({ owner: 'ann' }));
    await b.create(other, newRecord({ owner: 'bob' }));
    // b's cache holds ann's sessions; a's does not hold bob's.
    for (const key of [kept, ended]) expect(await b.get(key)).toBeDefined();
    expect((await a.listByOwner!('bob')).map((row) => row.key)).toEqual([other]);

    expect(await b.destroyByOwner!('ann', kept)).toBe(1);
    expect(await b.get(ended)).toBeUndefined();
    expect(await durable.get(ended)).toBeUndefined();
    // A tombstone, not a copy, answers for it in b's cache.
    expect(await cache.get(ended)).toMatchObject({ data: '', version: 2 ** 31 - 1 });
    expect(await b.get(kept)).toBeDefined();
    expect((await a.listByOwner!('ann')).map((row) => row.key)).toEqual([kept]);
    await a.close();
    await b.close();
  });

  it('keeps the owner inside cached copies, so the cache keeps no owner index of its own', async () => {
    const cache = memoryStore();
    const durable = sqliteStore({ path: ':memory:' });
    const get = vi.spyOn(durable, 'get');
    const store = cachedStore({ cache, store: durable, cacheTtlMs: 60_000 });
    const owners = ['ann', '', '12|3|x', 'ユーザー 😀'];
    for (const owner of owners) {
      const key = newKey();
      const record = newRecord({ owner, data: '7|1|looks like a head' });
      await store.create(key, record);
      expect(await store.get(key)).toStrictEqual(record);
      expect((await cache.get(key))?.owner).toBeUndefined();
      expect(await cache.listByOwner!(owner)).toEqual([]);
    }
    const { owner: _, ...anonymous } = newRecord();
    const key = newKey();
    await store.create(key, anonymous);
    expect(await store.get(key)).toStrictEqual(anonymous);
    expect(get).not.toHaveBeenCalled();

    // An entry it cannot read (an older format, say) is a miss, then replaced.
    const old = newKey();
    const record = newRecord();
    await durable.create(old, record);
    await cache.create(old, { ...record, data: `:${record.data}` });
    expect(await store.get(old)).toStrictEqual(record);
    expect(get).toHaveBeenCalledOnce();
    expect(await store.get(old)).toStrictEqual(record);
    expect(get).toHaveBeenCalledOnce();
    await store.close();
  });

  it('has no owner index when the durable store has none', async () => {
    const inner = sqliteStore({ path: ':memory:' });
    const { listByOwner: _list, destroyByOwner: _destroy, ...noIndex } = inner;
    const without = cachedStore({ cache: memoryStore(), store: noIndex });
    expect(without.listByOwner).toBeUndefined();
    expect(without.destroyByOwner).toBeUndefined();
    await without.close();
    await inner.close();
  });

  it('delegates locks to the durable store, and has none when it has none', async () => {
    const withLocks = cachedStore({
      cache: memoryStore(),
      store: sqliteStore({ path: ':memory:' }),
    });
    expect(withLocks.name).toBe('cached(sqlite)');
    expect(typeof withLocks.lock).toBe('function');
    await withLocks.close();

    const inner = sqliteStore({ path: ':memory:' });
    const { lock: _lock, unlock: _unlock, ...noLocks } = inner;
    const without = cachedStore({ cache: memoryStore(), store: noLocks });
    expect(without.lock).toBeUndefined();
    expect(without.unlock).toBeUndefined();
    await without.close();
  });

  it('closes both stores, and reports a failing cache close without failing', async () => {
    const cache = memoryStore();
    const durable = sqliteStore({ path: ':memory:' });
    const closeCache = vi.spyOn(cache, 'close');
    const closeDurable = vi.spyOn(durable, 'close');
    await cachedStore({ cache, store: durable }).close();
    expect(closeCache).toHaveBeenCalledOnce();
    expect(closeDurable).toHaveBeenCalledOnce();

    const logger = { warn: vi.fn() };
    const store = cachedStore({
      cache: failing(memoryStore()),
      store: sqliteStore({ path: ':memory:' }),
      logger,
    });
    await expect(store.close()).resolves.toBeUndefined();
    expect(logger.warn).toHaveBeenCalledOnce();
  });

  it('refuses bad options with exact messages', () => {
    const memory = memoryStore();
    expect(() => cachedStore({ cache: memory, store: memory })).toThrowError(
      '[satchel] cached store: cache and store must be two different stores',
    );
    expect(() => cachedStore({ store: memory } as never)).toThrowError(
      '[satchel] cached store: cache must be a session store, such as memoryStore()',
    );
    expect(() => cachedStore({ cache: memory } as never)).toThrowError(
      '[satchel] cached store: store must be a session store, such as postgresStore()',
    );
    for (const cacheTtlMs of [0, -5, 1.5, Number.NaN]) {
      expect(() => cachedStore({ cache: memory, store: memoryStore(), cacheTtlMs })).toThrowError(
        `[satchel] cached store: cacheTtlMs must be a positive integer; got ${cacheTtlMs}`,
      );
    }
    expect(() =>
      cachedStore({ cache: memory, store: memoryStore(), ttl: 5 } as never),
    ).toThrowError(
      '[satchel] cached store: unknown option "ttl": known options: cache, store, cacheTtlMs, logger',
    );
    expect(() =>
      cachedStore({ cache: memory, store: memoryStore(), cacheTTLMs: 5 } as never),
    ).toThrowError(
      '[satchel] cached store: unknown option "cacheTTLMs": did you mean "cacheTtlMs"?',
    );
  });
});

// The same against the real PostgreSQL, under the rule of postgres.test.ts:
// unreachable is a failure under CI=true and a skip that says why elsewhere.
const url = process.env.SATCHEL_DATABASE_URL || 'postgres://127.0.0.1:5432/postgres';
const adminUrl = adminDatabaseUrl(url);

if (serviceReady('cached (memory in front of postgres) store', await postgresUnreachable(url))) {
  const table = `satchel_cached_test_${process.pid}_${Date.now()}`;
  const migrated = migrate({ connectionString: url, table });
  migrated.catch(() => {});
  afterAll(async () => {
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      await admin.query(`DROP TABLE IF EXISTS "${table}", "${table}_locks"`);
    } finally {
      await admin.end();
    }
  });
  const open = () =>
    cachedStore({ cache: memoryStore(), store: postgresStore({ connectionString: url, table }) });

  describeStore(
    'cached (memory in front of postgres)',
    async () => {
      await migrated;
      return open();
    },
    { lock: true, owners: true, persistent: open },
  );
}
