import { createHmac } from 'node:crypto';
import { RedisStore } from 'connect-redis';
import type session from 'express-session';
import { MemoryStore, type Store } from 'express-session';
import { createClient } from 'redis';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, SatchelError } from '../../src/errors.js';
import {
  type ExpressSessionImportOptions,
  fromExpressSession,
} from '../../src/import/express-session.js';
import { readLegacySession } from '../../src/import/run.js';
import { describeWithService, REDIS_URL, redisUnreachable } from '../support/services.js';
import { DAY, legacyExpress, OLD_SECRET } from './express-app.js';

const closers: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const close of closers.reverse()) await close();
});

async function legacyApp(store: Store, options: Partial<session.SessionOptions> = {}) {
  const app = await legacyExpress(store, options);
  closers.push(app.close);
  return app;
}

function importer(store: Store, options: Partial<ExpressSessionImportOptions> = {}) {
  return fromExpressSession({
    secrets: OLD_SECRET,
    store: store as ExpressSessionImportOptions['store'],
    ...options,
  });
}

/** The session ID inside a connect.sid cookie (`connect.sid=s%3A<id>.<sig>`). */
function sidOf(cookie: string): string {
  const value = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1));
  return value.slice(2, value.lastIndexOf('.'));
}

function storeGet(store: Store, sid: string): Promise<unknown> {
  return new Promise((resolve, reject) =>
    store.get(sid, (err, s) => (err ? reject(err) : resolve(s))),
  );
}

/** Runs the same cases against every express-session store given. */
function describeImport(name: string, makeStore: () => Promise<Store>) {
  describe(`fromExpressSession with ${name}`, () => {
    it('imports the data express-session stored, without its cookie field', async () => {
      const store = await makeStore();
      const app = await legacyApp(store);
      const cookie = await app.login();
      const before = Date.now();
      const legacy = await readLegacySession([importer(store)], cookie, before);
      expect(legacy).toBeDefined();
      expect(legacy!.importer).toBe('express-session');
      expect(legacy!.data).toEqual({ user: 'alice', cart: ['apple', 'pear'] });
      // express-session's cookie.expires: about a day from the login.
      expect(legacy!.expiresAt).toBeGreaterThan(before + DAY - 60_000);
      expect(legacy!.expiresAt).toBeLessThanOrEqual(Date.now() + DAY);
    });

    it('derives the satchel ID from the legacy ID, the same in every process', async () => {
      const store = await makeStore();
      const cookie = await (await legacyApp(store)).login();
      const a = await readLegacySession([importer(store)], cookie, Date.now());
      const b = await readLegacySession([importer(store)], cookie, Date.now());
      const expected = createHmac('sha256', OLD_SECRET)
        .update(`satchel-import:express-session:${sidOf(cookie)}`)
        .digest('base64url');
      expect(a!.idSeed).toBe(expected);
      expect(b!.idSeed).toBe(expected);
      expect(a!.idSeed).toMatch(/^[A-Za-z0-9_-]{43}$/);
    });

    it('deletes the connect.sid cookie at the path express-session set it', async () => {
      const store = await makeStore();
      const cookie = await (
        await legacyApp(store, { cookie: { maxAge: DAY, path: '/shop' } })
      ).login('/shop/login');
      const legacy = await readLegacySession([importer(store)], cookie, Date.now());
      expect(legacy!.clearCookies).toHaveLength(1);
      expect(legacy!.clearCookies[0]).toMatch(/^connect\.sid=; /);
      expect(legacy!.clearCookies[0]).toContain('Max-Age=0');
      expect(legacy!.clearCookies[0]).toContain('Path=/shop');
    });

    it('verifies with every secret of the rotation list', async () => {
      const store = await makeStore();
      const cookie = await (await legacyApp(store)).login();
      const rotated = importer(store, { secrets: ['a newer secret', OLD_SECRET] });
      const legacy = await readLegacySession([rotated], cookie, Date.now());
      expect(legacy?.data).toMatchObject({ user: 'alice' });
    });

    it('imports nothing from a cookie with a forged signature (session theft by a guessed ID)', async () => {
      const store = await makeStore();
      const cookie = await (await legacyApp(store)).login();
      const sid = sidOf(cookie);
      const forged = createHmac('sha256', 'attacker secret').update(sid).digest('base64');
      const forgedCookie = `connect.sid=${encodeURIComponent(`s:${sid}.${forged.replace(/=+$/, '')}`)}`;
      expect(await readLegacySession([importer(store)], forgedCookie, Date.now())).toBeUndefined();
      // The signature flipped by one character.
      const flipped = cookie.endsWith('A') ? `${cookie.slice(0, -1)}B` : `${cookie.slice(0, -1)}A`;
      expect(await readLegacySession([importer(store)], flipped, Date.now())).toBeUndefined();
      // A bare, unsigned session ID, which express-session ignores too.
      const unsigned = `connect.sid=${sid}`;
      expect(await readLegacySession([importer(store)], unsigned, Date.now())).toBeUndefined();
      expect(await storeGet(store, sid), 'the legacy record is left alone').toBeDefined();
    });

    it('imports nothing when the importer does not know the signing secret', async () => {
      const store = await makeStore();
      const cookie = await (await legacyApp(store)).login();
      const other = importer(store, { secrets: 'some other secret' });
      expect(await readLegacySession([other], cookie, Date.now())).toBeUndefined();
    });

    it('imports nothing for a session express-session no longer has (logged out)', async () => {
      const store = await makeStore();
      const app = await legacyApp(store);
      const cookie = await app.login();
      await app.logout(cookie);
      expect(await readLegacySession([importer(store)], cookie, Date.now())).toBeUndefined();
    });

    it('imports nothing once the legacy cookie has expired', async () => {
      const store = await makeStore();
      const cookie = await (await legacyApp(store)).login();
      const later = Date.now() + DAY + 1_000;
      expect(await readLegacySession([importer(store)], cookie, later)).toBeUndefined();
    });

    it('removes the legacy record on finish(), so the old cookie cannot be replayed', async () => {
      const store = await makeStore();
      const cookie = await (await legacyApp(store)).login();
      const legacy = await readLegacySession([importer(store)], cookie, Date.now());
      await legacy!.finish();
      expect(await storeGet(store, sidOf(cookie))).toBeFalsy();
      expect(await readLegacySession([importer(store)], cookie, Date.now())).toBeUndefined();
    });

    it('keeps the legacy record with keepLegacy: true', async () => {
      const store = await makeStore();
      const cookie = await (await legacyApp(store)).login();
      const keep = importer(store, { keepLegacy: true });
      const legacy = await readLegacySession([keep], cookie, Date.now());
      await legacy!.finish();
      expect(await storeGet(store, sidOf(cookie))).toMatchObject({ user: 'alice' });
    });
  });
}

describeImport('MemoryStore', async () => new MemoryStore());

const redisDown = await redisUnreachable();
describeWithService('fromExpressSession with connect-redis', redisDown, () => {
  const prefix = `satchel-import-test:${process.pid}:${Date.now()}:`;
  let client: ReturnType<typeof createClient> | undefined;
  const connected = async () => {
    if (!client) {
      client = createClient({ url: REDIS_URL });
      client.on('error', () => {});
      await client.connect();
      const c = client;
      closers.push(async () => {
        for await (const keys of c.scanIterator({ MATCH: `${prefix}*` })) {
          if (keys.length > 0) await c.del(keys);
        }
        await c.close();
      });
    }
    return client;
  };
  describeImport(
    'connect-redis 9',
    async () => new RedisStore({ client: await connected(), prefix }),
  );

  it('answers StoreUnavailableError when Redis cannot be reached', async () => {
    const store = new RedisStore({ client: await connected(), prefix });
    const cookie = await (await legacyApp(store)).login();
    const closed = createClient({ url: REDIS_URL });
    closed.on('error', () => {});
    const deadStore = new RedisStore({ client: closed, prefix });
    const error = await readLegacySession([importer(deadStore)], cookie, Date.now()).catch(
      (e: unknown) => e,
    );
    expect(SatchelError.is(error) && error.code).toBe('ERR_SATCHEL_STORE_UNAVAILABLE');
    expect(String((error as Error).message)).toMatch(
      /^\[satchel\] \[express-session\] reading a legacy session failed/,
    );
  });
});

describe('fromExpressSession against a store that never answers', () => {
  it('gives up after timeout with StoreUnavailableError instead of holding the request', async () => {
    const store = new MemoryStore();
    const cookie = await (await legacyApp(store)).login();
    const silent = { get() {}, destroy() {} };
    const started = Date.now();
    const error = await readLegacySession(
      [fromExpressSession({ secrets: OLD_SECRET, store: silent, timeout: 100 })],
      cookie,
      Date.now(),
    ).catch((e: unknown) => e);
    expect(SatchelError.is(error) && error.code).toBe('ERR_SATCHEL_STORE_UNAVAILABLE');
    expect((error as Error).message).toContain('took over 100 ms');
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe('fromExpressSession options', () => {
  const store = new MemoryStore() as unknown as ExpressSessionImportOptions['store'];
  it('refuses express-session option names with advice', () => {
    expect(() =>
      fromExpressSession({ secret: OLD_SECRET, store } as unknown as ExpressSessionImportOptions),
    ).toThrow(/unknown option "secret": use secrets/);
  });
  it('refuses a missing store and an empty secret list', () => {
    expect(() =>
      fromExpressSession({ secrets: OLD_SECRET } as ExpressSessionImportOptions),
    ).toThrow(ConfigError);
    expect(() => fromExpressSession({ secrets: [], store })).toThrow(
      /secrets must be a string or a non-empty array/,
    );
  });
});
