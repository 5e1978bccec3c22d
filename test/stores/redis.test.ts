import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { SessionStore } from '../../src/store.js';
import { redisStore } from '../../src/stores/redis.js';
import {
  type RedisServer,
  redisServerMissing,
  startRedisServer,
} from '../support/redis-cluster.js';
import { describeWithService, redisUnreachable } from '../support/services.js';
import { describeStore, newKey, newRecord } from './conformance.js';

const URL = 'redis://127.0.0.1:6379';
const RUN = `satchel-test:${process.pid}:${Date.now()}`;
const HOUR = 3_600_000;
const MARGIN = 60_000;

const down = await redisUnreachable(URL);

const noServer = await redisServerMissing();
if (!down && noServer && process.env.CI !== 'true') {
  console.warn(`[satchel] skipping the redis outage tests: ${noServer}`);
}

// Every client the tests open, closed after the last test.
const closers: (() => Promise<unknown>)[] = [];

function ioredisClient(url = URL): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  closers.push(() => client.quit().catch(() => client.disconnect()));
  return client;
}

async function nodeRedisClient() {
  const client = createClient({ url: URL });
  client.on('error', () => {});
  await client.connect();
  closers.push(() => client.close());
  return client;
}

/** The two keys of `owner`'s index under `prefix`: members by expiry, and their versions. */
function ownerKeys(prefix: string, owner: string): [string, string] {
  const tag = `${prefix}owner:{${createHash('sha256').update(owner).digest('base64url')}}`;
  return [tag, `${tag}:versions`];
}

async function keysUnder(client: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1_000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys.sort();
}

function deadPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 1));
    });
  });
}

/** Collects unhandled rejections, uncaught exceptions and ioredis's console complaints. */
function watchUnhandled() {
  const seen: unknown[] = [];
  const onError = (err: unknown) => seen.push(err);
  process.on('unhandledRejection', onError);
  process.on('uncaughtException', onError);
  const consoleError = vi.spyOn(console, 'error');
  return {
    seen,
    consoleError,
    stop() {
      process.off('unhandledRejection', onError);
      process.off('uncaughtException', onError);
      consoleError.mockRestore();
    },
  };
}

describeWithService('redis', down, () => {
  afterAll(async () => {
    const cleaner = new Redis(URL);
    try {
      const keys = await keysUnder(cleaner, `${RUN}:`);
      for (let i = 0; i < keys.length; i += 500) await cleaner.unlink(...keys.slice(i, i + 500));
    } finally {
      await cleaner.quit();
    }
    await Promise.all(closers.map((close) => close()));
  });

  const ioPrefix = `${RUN}:ioredis:`;
  describeStore(
    'redis (ioredis)',
    () => redisStore({ client: ioredisClient(), prefix: ioPrefix }),
    {
      lock: true,
      owners: true,
      persistent: () => redisStore({ client: ioredisClient(), prefix: ioPrefix }),
    },
  );

  const nodePrefix = `${RUN}:node-redis:`;
  describeStore(
    'redis (node-redis)',
    async () => redisStore({ client: await nodeRedisClient(), prefix: nodePrefix }),
    {
      lock: true,
      owners: true,
      persistent: async () => redisStore({ client: await nodeRedisClient(), prefix: nodePrefix }),
    },
  );

  describe('redis store', () => {
    // Opened on first use, so that a skipped suite opens nothing.
    let rawClient: Redis | undefined;
    const rawRedis = () => {
      rawClient ??= ioredisClient();
      return rawClient;
    };

    it('keeps a session in one hash under the prefix and hash tag, its lock beside it, its owner’s index, and nothing else', async () => {
      const raw = rawRedis();
      const prefix = `${RUN}:layout:`;
      const store = redisStore({ client: raw, prefix });
      const key = newKey();
      const record = newRecord({ version: 3 });
      await store.create(key, record);
      await store.lock?.(key, 'token-1', 10_000);

      const [members, versions] = ownerKeys(prefix, record.owner!);
      expect(await keysUnder(raw, prefix)).toEqual(
        [`${prefix}{${key}}`, `${prefix}{${key}}:lock`, members, versions].sort(),
      );
      expect(await raw.zrange(members, 0, -1, 'WITHSCORES')).toEqual([
        key,
        String(record.expiresAt),
      ]);
      expect(await raw.hgetall(versions)).toEqual({ [key]: '3' });
      expect(await raw.type(`${prefix}{${key}}`)).toBe('hash');
      expect(await raw.hgetall(`${prefix}{${key}}`)).toEqual({
        data: record.data,
        version: '3',
        expiresAt: String(record.expiresAt),
        createdAt: String(record.createdAt),
        owner: record.owner,
      });
      expect(await raw.get(`${prefix}{${key}}:lock`)).toBe('token-1');

      // No owner field, and no index, is left behind by an update that drops the owner.
      const { owner: _, ...anonymous } = newRecord({ version: 4 });
      expect(await store.update(key, anonymous, 3)).toBe('ok');
      expect(Object.keys(await raw.hgetall(`${prefix}{${key}}`)).sort()).toEqual([
        'createdAt',
        'data',
        'expiresAt',
        'version',
      ]);
      expect(await keysUnder(raw, prefix)).toEqual([`${prefix}{${key}}`, `${prefix}{${key}}:lock`]);
      await store.update(key, newRecord({ version: 5 }), 4);
      await store.unlock?.(key, 'token-1');
      await store.destroy(key);
      expect(await keysUnder(raw, prefix)).toEqual([]);
      await store.close();
    });

    it('expires records natively, a minute past expiresAt, and locks after their ttl', async () => {
      const raw = rawRedis();
      const prefix = `${RUN}:ttl:`;
      const store = redisStore({ client: raw, prefix });
      const key = newKey();
      const pttl = async (expiresAt: number) => {
        const ttl = await raw.pttl(`${prefix}{${key}}`);
        // Redis's clock and ours, a round trip apart.
        expect(Math.abs(ttl - (expiresAt + MARGIN - Date.now()))).toBeLessThan(1_000);
      };

      const created = Date.now() + 10 * 60_000;
      await store.create(key, newRecord({ expiresAt: created }));
      await pttl(created);

      const touched = Date.now() + HOUR;
      await store.touch(key, touched);
      await pttl(touched);

      const updated = Date.now() + 5 * 60_000;
      await store.update(key, newRecord({ version: 2, expiresAt: updated }), 1);
      await pttl(updated);

      await store.lock?.(key, 'token', 7_000);
      const lockTtl = await raw.pttl(`${prefix}{${key}}:lock`);
      expect(lockTtl).toBeGreaterThan(5_000);
      expect(lockTtl).toBeLessThanOrEqual(7_000);
      await store.close();
    });

    it('counts and removes only records that expired within the margin when called without a time', async () => {
      const raw = rawRedis();
      const prefix = `${RUN}:clear:`;
      const store = redisStore({ client: raw, prefix });
      const live = newKey();
      await store.create(live, newRecord());
      await store.create(newKey(), newRecord({ expiresAt: Date.now() - 10 }));
      await store.lock?.(live, 'token', 10_000);
      expect(await store.clearExpired()).toBe(1);
      expect(await keysUnder(raw, prefix)).toEqual(
        [`${prefix}{${live}}`, `${prefix}{${live}}:lock`, ...ownerKeys(prefix, 'user-42')].sort(),
      );
      // Cleared ahead of the clock: the index forgets what it removed.
      expect(await store.clearExpired(Date.now() + 2 * HOUR)).toBe(1);
      expect(await keysUnder(raw, prefix)).toEqual([`${prefix}{${live}}:lock`]);
      await store.close();
    });

    describe('owner index', () => {
      let n = 0;
      const fresh = () => {
        const prefix = `${RUN}:owners-${++n}:`;
        return { prefix, store: redisStore({ client: rawRedis(), prefix }) };
      };
      const listed = async (store: SessionStore, owner: string) =>
        (await store.listByOwner!(owner)).map((row) => row.key).sort();

      it('expires both index keys a minute after the latest expiry they hold, never sooner', async () => {
        const raw = rawRedis();
        const { prefix, store } = fresh();
        const keys = ownerKeys(prefix, 'ann');
        const ttlNear = async (expiresAt: number) => {
          for (const key of keys) {
            const ttl = await raw.pttl(key);
            expect(Math.abs(ttl - (expiresAt + MARGIN - Date.now()))).toBeLessThan(1_000);
          }
        };
        const [a, b] = [newKey(), newKey()];
        const first = Date.now() + 10 * 60_000;
        await store.create(a, newRecord({ owner: 'ann', expiresAt: first }));
        await ttlNear(first);
        // A shorter session does not shorten the index.
        await store.create(b, newRecord({ owner: 'ann', expiresAt: Date.now() + 60_000 }));
        await ttlNear(first);
        // Touch and update extend it.
        const touched = Date.now() + HOUR;
        await store.touch(b, touched);
        await ttlNear(touched);
        expect(await raw.zscore(keys[0], b)).toBe(String(touched));
        const updated = Date.now() + 2 * HOUR;
        await store.update(a, newRecord({ owner: 'ann', version: 2, expiresAt: updated }), 1);
        await ttlNear(updated);
        expect(await raw.hget(keys[1], a)).toBe('2');
        await store.close();
      });

      it('works for owners with braces, spaces, unicode and NUL, each in a key of its own', async () => {
        const raw = rawRedis();
        const { prefix, store } = fresh();
        const owners = [
          '{user}',
          '}{',
          'a b  c',
          'ユーザー 😀',
          'nul \u0000 inside',
          `owner:{${'x'}}`,
          '',
          '*?[',
        ];
        const keyOf = new Map<string, string>();
        for (const owner of owners) {
          const key = newKey();
          keyOf.set(owner, key);
          await store.create(key, newRecord({ owner }));
        }
        for (const owner of owners) {
          const rows = await store.listByOwner!(owner);
          expect(rows.map((row) => row.key)).toEqual([keyOf.get(owner)]);
          expect(rows[0]?.record.owner).toBe(owner);
        }
        const indexKeys = (await keysUnder(raw, `${prefix}owner:`)).sort();
        expect(indexKeys).toEqual(owners.flatMap((owner) => ownerKeys(prefix, owner)).sort());
        for (const key of indexKeys)
          expect(key).toMatch(/^[^{}]*\{[A-Za-z0-9_-]{43}\}(:versions)?$/);
        expect(await store.destroyByOwner!('{user}')).toBe(1);
        expect(await store.listByOwner!('{user}')).toEqual([]);
        expect(await listed(store, '}{')).toEqual([keyOf.get('}{')]);
        await store.close();
      });

      it('drops a member whose session expired, natively or not, from the index when listing', async () => {
        const raw = rawRedis();
        const { prefix, store } = fresh();
        const [gone, expired, live] = [newKey(), newKey(), newKey()];
        await store.create(gone, newRecord({ owner: 'ann', expiresAt: Date.now() + 100 }));
        await store.create(expired, newRecord({ owner: 'ann', expiresAt: Date.now() + 100 }));
        await store.create(live, newRecord({ owner: 'ann' }));
        await sleep(150);
        // What Redis does by itself a minute after expiresAt.
        await raw.unlink(`${prefix}{${gone}}`);
        const [members, versions] = ownerKeys(prefix, 'ann');
        expect((await raw.zrange(members, 0, -1)).sort()).toEqual([gone, expired, live].sort());

        expect(await listed(store, 'ann')).toEqual([live]);
        expect(await raw.zrange(members, 0, -1)).toEqual([live]);
        expect(Object.keys(await raw.hgetall(versions))).toEqual([live]);
        await store.close();
      });

      it('removes members whose latest expiry is a minute past in passing, on any index write', async () => {
        const raw = rawRedis();
        const { prefix, store } = fresh();
        const [members, versions] = ownerKeys(prefix, 'ann');
        // Left by sessions that expired long ago and were never listed.
        const stale = Array.from({ length: 5 }, newKey);
        for (const key of stale) {
          await raw.zadd(members, Date.now() - 2 * MARGIN, key);
          await raw.hset(versions, key, '1');
        }
        const key = newKey();
        await store.create(key, newRecord({ owner: 'ann' }));
        expect(await raw.zrange(members, 0, -1)).toEqual([key]);
        expect(Object.keys(await raw.hgetall(versions))).toEqual([key]);
        await store.close();
      });

      it('moves a session between owners on update, and forgets it on destroy', async () => {
        const raw = rawRedis();
        const { prefix, store } = fresh();
        const key = newKey();
        await store.create(key, newRecord({ owner: 'ann' }));
        await store.update(key, newRecord({ owner: 'bob', version: 2 }), 1);
        expect(await keysUnder(raw, `${prefix}owner:`)).toEqual(ownerKeys(prefix, 'bob').sort());
        await store.destroy(key);
        expect(await keysUnder(raw, prefix)).toEqual([]);
        await store.close();
      });

      it('never lets a removal undo the index entry of a write still on its way', async () => {
        const raw = rawRedis();
        const { prefix, store } = fresh();
        const [members, versions] = ownerKeys(prefix, 'ann');
        const expiresAt = Date.now() + HOUR;

        // A create that has indexed its key and not yet written the record.
        const creating = newKey();
        await raw.zadd(members, expiresAt, creating);
        await raw.hset(versions, creating, '1');
        // An update from bob to ann (version 3) in the same state.
        const moving = newKey();
        await store.create(moving, newRecord({ owner: 'bob', version: 1 }));
        await store.update(moving, newRecord({ owner: 'bob', version: 2 }), 1);
        await raw.zadd(members, expiresAt, moving);
        await raw.hset(versions, moving, '3');

        expect(await store.listByOwner!('ann')).toEqual([]);
        expect((await raw.zrange(members, 0, -1)).sort()).toEqual([creating, moving].sort());

        // The writes land: both are listed.
        await store.create(creating, newRecord({ owner: 'ann', expiresAt }));
        await store.update(moving, newRecord({ owner: 'ann', version: 3, expiresAt }), 2);
        expect(await listed(store, 'ann')).toEqual([creating, moving].sort());
        expect(await listed(store, 'bob')).toEqual([]);
        await store.close();
      });

      it('indexes under the owner it finds when a touch races with a change of owner', async () => {
        const raw = rawRedis();
        const { prefix, store } = fresh();
        const key = newKey();
        await store.create(key, newRecord({ owner: 'ann' }));
        // Another process changes the owner behind this store's back, without indexing.
        await raw.hset(`${prefix}{${key}}`, 'owner', 'carol');
        const later = Date.now() + 3 * HOUR;
        await store.touch(key, later);
        expect(await listed(store, 'carol')).toEqual([key]);
        expect(await raw.zscore(ownerKeys(prefix, 'carol')[0], key)).toBe(String(later));
        expect(await store.listByOwner!('ann')).toEqual([]);
        expect(await raw.exists(...ownerKeys(prefix, 'ann'))).toBe(0);
        await store.close();
      });

      it('destroys only the sessions the owner still holds, and counts them', async () => {
        const raw = rawRedis();
        const { prefix, store } = fresh();
        const [kept, ended, moved] = [newKey(), newKey(), newKey()];
        for (const key of [kept, ended, moved])
          await store.create(key, newRecord({ owner: 'ann' }));
        // Moved to bob behind the index's back: the listing finds it under
        // ann, but it is no longer ann's to end.
        await raw.hset(`${prefix}{${moved}}`, 'owner', 'bob');
        expect(await store.destroyByOwner!('ann', kept)).toBe(1);
        expect(await store.get(ended)).toBeUndefined();
        expect(await store.get(moved)).toMatchObject({ owner: 'bob' });
        expect(await listed(store, 'ann')).toEqual([kept]);
        expect(await raw.zrange(ownerKeys(prefix, 'ann')[0], 0, -1)).toEqual([kept]);
        await store.close();
      });
    });

    it('rejects with StoreUnavailableError within two seconds when nothing listens, and raises no unhandled error', async () => {
      const port = await deadPort();
      const watch = watchUnhandled();
      const store = redisStore({ url: `redis://127.0.0.1:${port}`, prefix: `${RUN}:dead:` });
      try {
        const started = Date.now();
        const calls = [
          store.get(newKey()),
          store.update(newKey(), newRecord({ version: 2 }), 1),
          store.create(newKey(), newRecord()),
          store.lock!(newKey(), 'token', 1_000),
        ];
        for (const call of calls) {
          await expect(call).rejects.toMatchObject({
            code: 'ERR_SATCHEL_STORE_UNAVAILABLE',
            store: 'redis',
            message: expect.stringMatching(/^\[satchel\] \[redis\] \w+ failed: .*ECONNREFUSED/),
          });
        }
        expect(Date.now() - started).toBeLessThan(2_000);

        // Later calls, made while ioredis keeps reconnecting, fail as fast.
        await sleep(1_200);
        const again = Date.now();
        await expect(store.get(newKey())).rejects.toMatchObject({ store: 'redis' });
        expect(Date.now() - again).toBeLessThan(2_000);
        expect(watch.seen).toEqual([]);
        expect(watch.consoleError).not.toHaveBeenCalled();
      } finally {
        await store.close();
        watch.stop();
      }
    });

    it('quits the client it created from a url on close, and leaves a given client open', async () => {
      const raw = rawRedis();
      const name = `satchel-close-${process.pid}-${Date.now()}`;
      const owned = redisStore({ url: `${URL}?connectionName=${name}`, prefix: `${RUN}:close:` });
      const connected = async () => String(await raw.client('LIST')).includes(`name=${name} `);
      await owned.get(newKey());
      expect(await connected()).toBe(true);
      await owned.close();
      for (let i = 0; i < 40 && (await connected()); i++) await sleep(50);
      expect(await connected()).toBe(false);

      const given = ioredisClient();
      const store = redisStore({ client: given, prefix: `${RUN}:close:` });
      await store.get(newKey());
      await store.close();
      expect(await given.ping()).toBe('PONG');
      await expect(store.get(newKey())).rejects.toMatchObject({
        code: 'ERR_SATCHEL_STORE_UNAVAILABLE',
        message: '[satchel] [redis] the store is closed',
      });
    });

    it('refuses options it cannot use, with exact messages', () => {
      const raw = rawRedis();
      expect(() => redisStore({})).toThrowError('[satchel] redis store: pass a client or a url');
      expect(() => redisStore({ client: raw, url: URL })).toThrowError(
        '[satchel] redis store: pass either client or url, not both',
      );
      expect(() => redisStore({ url: '' })).toThrowError(
        '[satchel] redis store: url must be a non-empty string',
      );
      for (const prefix of ['app{1}:', 'a}b']) {
        expect(() => redisStore({ client: raw, prefix })).toThrowError(
          `[satchel] redis store: prefix must be a string without { or }, which would change the Cluster hash tag; got ${JSON.stringify(prefix)}`,
        );
      }
      expect(() => redisStore({ client: {} as Redis })).toThrowError(
        '[satchel] redis store: client must be an ioredis Redis or Cluster, or a node-redis v5 client or cluster',
      );
      const prefixed = new Redis(URL, { keyPrefix: 'app:', lazyConnect: true });
      expect(() => redisStore({ client: prefixed })).toThrowError(
        '[satchel] redis store: the ioredis client has a keyPrefix, which SCAN does not apply; use the store prefix option instead',
      );
      prefixed.disconnect();
    });

    it('refuses an unknown option key with a did-you-mean', () => {
      const raw = rawRedis();
      expect(() => redisStore({ client: raw, prefx: 'app:' } as never)).toThrowError(
        '[satchel] redis store: unknown option "prefx": did you mean "prefix"?',
      );
      expect(() => redisStore({ host: '127.0.0.1' } as never)).toThrowError(
        '[satchel] redis store: unknown option "host": pass a url such as redis://127.0.0.1:6379, or a connected client',
      );
    });

    it('reports clearExpired progress, ending with the count it returns', async () => {
      const store = redisStore({ client: ioredisClient(), prefix: `${RUN}:progress:` });
      const now = Date.now();
      for (let i = 0; i < 3; i++) {
        await store.create(newKey(), newRecord({ expiresAt: now + 60_000, owner: undefined }));
      }
      const seen: number[] = [];
      const removed = await store.clearExpired(now + 120_000, {
        onProgress: ({ removed }) => seen.push(removed),
      });
      expect(removed).toBe(3);
      expect(seen.at(-1)).toBe(3);
      await store.close();
    });

    // Under CI a missing redis-server fails startRedisServer below rather than skipping.
    const withOwnServer =
      noServer !== undefined && process.env.CI !== 'true' ? describe.skip : describe;
    withOwnServer('with a redis-server of its own', () => {
      let server: RedisServer;
      beforeAll(async () => {
        server = await startRedisServer();
      });
      afterAll(async () => {
        await server?.dispose();
      });

      it('answers StoreUnavailableError while Redis is down and serves again once it is back', async () => {
        const watch = watchUnhandled();
        const store = redisStore({ url: server.url });
        try {
          const key = newKey();
          expect(await store.create(key, newRecord())).toBe(true);

          await server.stop();
          const started = Date.now();
          await expect(store.get(key)).rejects.toMatchObject({
            code: 'ERR_SATCHEL_STORE_UNAVAILABLE',
            status: 503,
          });
          await expect(store.update(key, newRecord({ version: 2 }), 1)).rejects.toMatchObject({
            code: 'ERR_SATCHEL_STORE_UNAVAILABLE',
          });
          expect(Date.now() - started).toBeLessThan(3_000);

          // Back, empty (no persistence) and with no scripts cached.
          await server.restart();
          const deadline = Date.now() + 5_000;
          let back = false;
          while (!back && Date.now() < deadline) {
            back = await store.get(key).then(
              () => true,
              () => false,
            );
            if (!back) await sleep(100);
          }
          expect(back).toBe(true);
          expect(await store.create(key, newRecord())).toBe(true);
          expect(await store.update(key, newRecord({ version: 2 }), 1)).toBe('ok');
          expect(watch.seen).toEqual([]);
          expect(watch.consoleError).not.toHaveBeenCalled();
        } finally {
          await store.close();
          watch.stop();
        }
      });

      it('loads its scripts again after Redis forgets them', async () => {
        const client = ioredisClient(server.url);
        const store = redisStore({ client });
        const key = newKey();
        await store.create(key, newRecord());
        await client.script('FLUSH');
        expect(await store.update(key, newRecord({ version: 2 }), 1)).toBe('ok');
        await client.script('FLUSH');
        expect(await store.lock?.(key, 'token', 1_000)).toBe(true);
        await store.close();
      });
    });
  });
});
