/**
 * The threats SECURITY.md lists that no other test names: each case is named
 * after what it stops. SECURITY.md maps every item of the checklist to its
 * tests, here and elsewhere.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import {
  createSessions,
  generateId,
  richSerializer,
  type Sessions,
  type SessionStore,
  storeKey,
} from '../src/index.js';
import { Signer } from '../src/ids.js';
import { cookieStore } from '../src/stores/cookie.js';
import { fileStore } from '../src/stores/file.js';
import { memoryStore } from '../src/stores/memory.js';
import { sqliteStore } from '../src/stores/sqlite.js';
import { exchange, fakeRequest } from './helpers.js';
import { type App, routes, startApp } from './stress/lib/app.js';
import { gate } from './stress/lib/env.js';
import { describeUnavailable } from './stress/lib/skip.js';
import { Browser, Client } from './stress/lib/http.js';
import {
  POSTGRES_PORT,
  postgresKit,
  REDIS_PORT,
  redisKit,
  type StoreKit,
  storeFileExists,
  tempDir,
} from './stress/lib/stores.js';

// Watch the CSPRNG and the constant-time compare without changing them.
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  return {
    ...actual,
    default: actual,
    randomBytes: vi.fn(actual.randomBytes),
    timingSafeEqual: vi.fn(actual.timingSafeEqual),
  };
});

const quiet = { warn: () => {}, error: () => {} };
const redis = await gate('redis', storeFileExists('redis'), { name: 'Redis', port: REDIS_PORT });
const postgres = await gate('postgres', storeFileExists('postgres'), {
  name: 'PostgreSQL',
  port: POSTGRES_PORT,
});
// A missing service fails under CI and is skipped, saying why, elsewhere.
describeUnavailable('Redis store keys', redis);
describeUnavailable('PostgreSQL store keys', postgres);
const cleanups: (() => unknown)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** A node:http app with the stress routes, closed after the file. */
async function serve(sessions: Sessions<any>, extra = {}): Promise<{ app: App; client: Client }> {
  const app = await startApp(sessions, routes(extra));
  const client = new Client(app.base, 16);
  cleanups.push(
    () => client.close(),
    () => app.close(),
    () => sessions.close(),
  );
  return { app, client };
}

describe('session IDs', () => {
  it('draws every session ID from the CSPRNG: 256 bits from crypto.randomBytes', () => {
    vi.mocked(randomBytes).mockClear();
    const id = generateId();
    expect(randomBytes).toHaveBeenCalledTimes(1);
    expect(vi.mocked(randomBytes).mock.calls[0]).toEqual([32]);
    expect(Buffer.from(id, 'base64url')).toHaveLength(32);
  });

  it('repeats no ID and shows no bias over 100,000 IDs (a guessable ID is a stolen session)', () => {
    const seen = new Set<string>();
    const counts = new Map<string, number>();
    for (let i = 0; i < 100_000; i++) {
      const id = generateId();
      seen.add(id);
      // The first 42 characters carry 6 random bits each.
      for (const c of id.slice(0, 42)) counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    expect(seen.size).toBe(100_000);
    expect(counts.size).toBe(64);
    // Chi-square over 64 symbols (63 degrees of freedom): 120 is far past p = 0.0001.
    const expected = (100_000 * 42) / 64;
    let chi = 0;
    for (const n of counts.values()) chi += (n - expected) ** 2 / expected;
    expect(chi).toBeLessThan(120);
  });

  it('does not adopt a session ID planted by an attacker (session fixation, strict mode)', async () => {
    const { client } = await serve(createSessions({ store: memoryStore(), logger: quiet }));
    const victim = new Browser(client);
    // The attacker planted a well-formed ID of their choosing (a sibling subdomain, an XSS, a link).
    const planted = generateId();
    victim.cookie = planted;
    await victim.fetch('/set?key=user&value=victim', { method: 'POST' });
    expect(victim.cookie).not.toBe(planted);
    const attacker = new Browser(client);
    attacker.cookie = planted;
    expect(JSON.parse((await attacker.fetch('/get?key=user')).body)).toBeNull();
  });

  it("does not let an attacker's own valid session follow the victim through login (cycleKey)", async () => {
    const { client } = await serve(createSessions({ store: memoryStore(), logger: quiet }), {
      '/login': (req: any, res: any) => {
        req.session.cycleKey();
        req.session.set('user', 'victim');
        res.end('ok');
      },
    });
    const attacker = new Browser(client);
    await attacker.fetch('/set?key=theme&value=dark', { method: 'POST' });
    const planted = attacker.cookie!;
    const victim = new Browser(client);
    victim.cookie = planted;
    await victim.fetch('/login', { method: 'POST' });
    expect(victim.cookie).not.toBe(planted);
    expect(JSON.parse((await attacker.fetch('/get?key=user')).body)).toBeNull();
    expect(JSON.parse((await victim.fetch('/get?key=user')).body)).toBe('victim');
  });

  it('treats an empty session ID (sessionid=, "Session ", ?sessionid=) as none and never looks it up (CVE-2015-3982)', async () => {
    for (const transport of ['cookie', { type: 'header' }, { type: 'url' }] as const) {
      const store = memoryStore();
      const get = vi.spyOn(store.sync!, 'get');
      const sessions = createSessions({ store, transport, logger: quiet });
      for (const [headers, url] of [
        [{ cookie: 'sessionid=' }, '/'],
        [{ cookie: 'sessionid=""' }, '/'],
        [{ cookie: 'sessionid= ; other=1' }, '/'],
        [{ authorization: 'Session ' }, '/'],
        [{ authorization: 'Session' }, '/'],
        [{}, '/?sessionid='],
        [{}, '/?sessionid=&sessionid=x'],
      ] as [Record<string, string>, string][]) {
        const session = await sessions.load({ ...fakeRequest(headers.cookie, headers), url });
        expect(session.isNew).toBe(true);
        session.flush();
        await sessions.commit(session, 200);
      }
      expect(get).not.toHaveBeenCalled();
      expect(await store.get(storeKey(''))).toBeUndefined();
      await sessions.close();
    }
  });
});

describe('store keys', () => {
  async function noRawId(kit: StoreKit, scan: (id: string, key: string) => Promise<string>) {
    const store = await kit.open();
    const sessions = createSessions({ store, logger: quiet });
    try {
      const { value } = await exchange(sessions, undefined, (s) => s.set('cart', ['apple']));
      const raw = await scan(value!, storeKey(value!));
      expect(raw).toContain(storeKey(value!));
      expect(raw).not.toContain(value!);
    } finally {
      await sessions.close();
      await kit.cleanup();
    }
  }

  it('keeps no raw session ID in the SQLite file or the file-store folder, only its SHA-256 (Rack CVE-2019-16782)', async () => {
    const dir = tempDir('security');
    cleanups.push(() =>
      import('node:fs').then((fs) => fs.rmSync(dir, { recursive: true, force: true })),
    );
    const path = join(dir, 'sessions.db');
    await noRawId(
      { name: 'sqlite', open: async () => sqliteStore({ path }), cleanup: async () => {} },
      async () =>
        readdirSync(dir)
          .map((name) => readFileSync(join(dir, name)).toString('latin1'))
          .join('\n'),
    );
    const folder = join(dir, 'files');
    await noRawId(
      { name: 'file', open: async () => fileStore({ dir: folder }), cleanup: async () => {} },
      async () =>
        readdirSync(folder)
          .map((name) => `${name}\n${readFileSync(join(folder, name), 'latin1')}`)
          .join('\n'),
    );
  });

  it.runIf(redis.run)(
    'keeps no raw session ID in Redis, only its SHA-256 under the prefix (Rack CVE-2019-16782)',
    async () => {
      const kit = await redisKit();
      const { Redis } = await import('ioredis');
      const client = new Redis({ host: '127.0.0.1', port: REDIS_PORT });
      try {
        await noRawId(kit, async () => {
          const prefix = kit.spec!.kind === 'redis' ? kit.spec!.prefix : '';
          const keys = await client.keys(`${prefix}*`);
          expect(keys.length).toBeGreaterThan(0);
          expect(keys.every((k) => k.startsWith(prefix))).toBe(true);
          const values = await Promise.all(keys.map((k) => client.hgetall(k)));
          return JSON.stringify([keys, values]);
        });
      } finally {
        client.disconnect();
      }
    },
  );

  it.runIf(postgres.run)(
    'keeps no raw session ID in PostgreSQL, only its SHA-256 (Rack CVE-2019-16782)',
    async () => {
      const kit = await postgresKit();
      const pg = (await import('pg')).default;
      const spec = kit.spec as { url: string; table: string };
      const pool = new pg.Pool({ connectionString: spec.url, max: 1 });
      try {
        await noRawId(kit, async () => {
          const { rows } = await pool.query(`SELECT * FROM "${spec.table}"`);
          return JSON.stringify(rows);
        });
      } finally {
        await pool.end();
      }
    },
  );

  it('namespaces stores: two apps sharing one folder or database never see each other’s sessions', async () => {
    const dir = tempDir('security-ns');
    cleanups.push(() =>
      import('node:fs').then((fs) => fs.rmSync(dir, { recursive: true, force: true })),
    );
    const pairs: [SessionStore, SessionStore][] = [
      [fileStore({ dir, prefix: 'shop-' }), fileStore({ dir, prefix: 'admin-' })],
      [
        sqliteStore({ path: join(dir, 'db.sqlite'), table: 'shop' }),
        sqliteStore({ path: join(dir, 'db.sqlite'), table: 'admin' }),
      ],
    ];
    for (const [shopStore, adminStore] of pairs) {
      const shop = createSessions({ store: shopStore, logger: quiet });
      const admin = createSessions({ store: adminStore, logger: quiet });
      const { value } = await exchange(shop, undefined, (s) => s.set('user', 'customer'));
      await exchange(admin, value, (s) => {
        expect(s.isNew).toBe(true);
        expect(s.get('user')).toBeUndefined();
      });
      await shop.close();
      await admin.close();
    }
  });
});

describe('records', () => {
  it('lets no flood of cookie-less or forged-cookie requests write a record (Django CVE-2015-5143)', async () => {
    const dir = tempDir('security-flood');
    cleanups.push(() =>
      import('node:fs').then((fs) => fs.rmSync(dir, { recursive: true, force: true })),
    );
    const path = join(dir, 'sessions.db');
    const store = sqliteStore({ path });
    const { client } = await serve(createSessions({ store, logger: quiet }), {
      '/page': (req: any, res: any) => {
        // A page that reads: the user, a flash message, the test cookie.
        req.session.get('user');
        req.session.getFlash('message');
        req.session.testCookieWorked();
        res.end('page');
      },
    });
    const replies = await Promise.all(
      Array.from({ length: 500 }, (_, i) =>
        client.request(i % 3 === 2 ? '/flush' : '/page', {
          method: i % 3 === 2 ? 'POST' : 'GET',
          cookie: i % 2 === 0 ? `sessionid=${generateId()}` : undefined,
        }),
      ),
    );
    expect(replies.every((r) => r.status === 200)).toBe(true);
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(path, { readonly: true });
    try {
      expect(db.prepare('SELECT count(*) AS n FROM satchel_sessions').get()).toEqual({ n: 0 });
    } finally {
      db.close();
    }
  });

  it('writes no empty record when an anonymous visitor logs out (Django CVE-2015-5963/5964)', async () => {
    const store = memoryStore();
    const create = vi.spyOn(store, 'create');
    const update = vi.spyOn(store.sync!, 'update');
    const sessions = createSessions({ store, logger: quiet });
    for (const cookie of [undefined, generateId()]) {
      const r = await exchange(sessions, cookie, (s) => {
        s.flush();
        s.cycleKey();
      });
      expect(r.value).toBeUndefined();
    }
    expect(create).not.toHaveBeenCalled();
    expect(update).not.toHaveBeenCalled();
    await sessions.close();
  });

  it('enforces the absolute timeout on load even when the store kept the record alive', async () => {
    const store = memoryStore();
    const sessions = createSessions({ store, absoluteTimeout: 3_600, logger: quiet });
    const id = generateId();
    const now = Date.now();
    await store.create(storeKey(id), {
      data: JSON.stringify({ user: 'victim' }),
      version: 1,
      createdAt: now - 3_601_000,
      expiresAt: now + 86_400_000,
    });
    await exchange(sessions, id, (s) => expect(s.get('user')).toBeUndefined());
    await sessions.close();
  });
});

describe('the file store and hostile IDs', () => {
  it('touches no file outside its folder whatever the cookie says (Django CVE-2011-0698)', async () => {
    const dir = tempDir('security-traversal');
    cleanups.push(() =>
      import('node:fs').then((fs) => fs.rmSync(dir, { recursive: true, force: true })),
    );
    const folder = join(dir, 'sessions');
    const { client } = await serve(
      createSessions({ store: fileStore({ dir: folder }), logger: quiet }),
    );
    for (const value of [
      '../../../../etc/passwd',
      '..%2F..%2Fvictim',
      '%2e%2e%2f%2e%2e%2fvictim',
      '....//....//victim',
      '..\\..\\victim',
      '/etc/passwd',
      `${'A'.repeat(42)}/`,
      `../${generateId()}`,
      '%00',
    ]) {
      const reply = await client.request('/set?key=a&value=1', {
        method: 'POST',
        cookie: `sessionid=${value}`,
      });
      expect(reply.status).toBe(200);
    }
    expect(readdirSync(dir)).toEqual(['sessions']);
    for (const name of readdirSync(folder)) expect(name).toMatch(/^satchel-[A-Za-z0-9_-]{43}$/);
  });
});

describe('responses', () => {
  it('sends Vary: Cookie with the app’s own Vary on a page that only read the session (CVE-2014-1418)', async () => {
    const sessions = createSessions({ store: memoryStore(), logger: quiet });
    const { client } = await serve(sessions, {
      '/cached-page': (req: any, res: any) => {
        res.setHeader('vary', 'Accept-Encoding');
        res.end(`hello ${req.session.get('user') ?? 'guest'}`);
      },
    });
    const browser = new Browser(client);
    await browser.fetch('/set?key=user&value=ann', { method: 'POST' });
    const page = await browser.fetch('/cached-page');
    expect(page.setCookie).toEqual([]);
    expect(page.headers.vary).toBe('Accept-Encoding, Cookie');
    const anonymous = await client.request('/cached-page');
    expect(anonymous.headers.vary).toBe('Accept-Encoding, Cookie');
  });

  it('sends a __Host- cookie with Secure and Path=/ and without Domain', async () => {
    const sessions = createSessions({
      store: memoryStore(),
      cookie: { name: '__Host-sid', secure: true },
    });
    const session = await sessions.load(fakeRequest());
    session.set('a', 1);
    const { headers } = await sessions.commit(session, 200);
    const cookie = headers.find(([name]) => name === 'set-cookie')![1];
    expect(cookie).toMatch(/^__Host-sid=[\w-]{43}; /);
    expect(cookie).toContain('; Secure');
    expect(cookie).toContain('; Path=/;');
    expect(cookie).not.toMatch(/Domain=/i);
    await sessions.close();
  });

  it('rejects attribute injection through every cookie option at creation (cookie CVE-2024-47764)', () => {
    for (const cookie of [
      { name: 'sid; Domain=evil.example' },
      { name: 'sid=x' },
      { name: 'sid\r\nSet-Cookie: evil=1' },
      { domain: 'shop.example; Path=/admin' },
      { domain: 'shop.example\r\nX: y' },
      { path: '/; Domain=evil.example' },
      { path: '/\u0000' },
      { path: '/x\r\nSet-Cookie: evil=1' },
    ]) {
      expect(
        () => createSessions({ store: memoryStore(), cookie }),
        JSON.stringify(cookie),
      ).toThrow();
    }
  });
});

describe('signatures', () => {
  it('compares signatures in constant time with every key, matching or not (cookie-signature)', () => {
    const signer = new Signer(['k1'.repeat(16), 'k2'.repeat(16), 'k3'.repeat(16)]);
    const id = generateId();
    const signed = signer.sign(id);
    const calls = () => vi.mocked(timingSafeEqual).mock.calls.length;
    const before = calls();
    expect(signer.unsign(signed)).toBe(id);
    expect(calls() - before).toBe(3);
    const forged = `${id}.${'A'.repeat(43)}`;
    expect(signer.unsign(forged)).toBeUndefined();
    expect(calls() - before).toBe(6);
  });

  it('rejects a signed ID with anything after it (cookie-signature trailing data)', () => {
    const signer = new Signer(['k'.repeat(32)]);
    const signed = signer.sign(generateId());
    for (const tail of ['x', '.', '.x', '=', ' ', '\u0000', signed]) {
      expect(signer.unsign(`${signed}${tail}`)).toBeUndefined();
    }
  });
});

describe('sealed cookies (cookie store)', () => {
  afterEach(() => vi.useRealTimers());

  it('opens a cookie replayed after logout only until the expiry sealed inside, and never once its key is rotated out (fastify secure-session CVE-2024-31999)', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const secrets = ['a'.repeat(32)];
    const sessions = createSessions({ store: cookieStore({ secrets }), idleTimeout: 600 });
    const login = await exchange(sessions, undefined, (s) => s.set('user', 'ann'));
    const logout = await exchange(sessions, login.value, (s) => s.flush());
    expect(logout.value).toBeUndefined();
    // The documented limit: a copy of the old cookie still opens until its sealed expiry...
    await exchange(sessions, login.value, (s) => expect(s.get('user')).toBe('ann'));
    // ...and not a moment after it.
    vi.advanceTimersByTime(601_000);
    await exchange(sessions, login.value, (s) => expect(s.get('user')).toBeUndefined());
    // Rotating the key out revokes every cookie sealed with it at once.
    vi.useRealTimers();
    const fresh = await exchange(sessions, undefined, (s) => s.set('user', 'bob'));
    const rotated = createSessions({ store: cookieStore({ secrets: ['b'.repeat(32)] }) });
    await exchange(rotated, fresh.value, (s) => expect(s.get('user')).toBeUndefined());
  });
});

describe('stored data', () => {
  it('never runs code, calls a constructor or pollutes a prototype while loading', async () => {
    let constructed = 0;
    class Money {
      constructor(readonly cents: number) {
        constructed++;
      }
    }
    const serializer = richSerializer({ Money: { type: Money } });
    const text = serializer.stringify({ price: new Money(5) });
    constructed = 0;
    const loaded = serializer.parse(text) as { price: Money };
    expect(loaded.price).toBeInstanceOf(Money);
    expect(constructed).toBe(0);
    for (const evil of [
      '{"x":{"$t":"Class","n":"Function","v":"return process.exit(1)"}}',
      '{"x":{"$t":"Class","n":"constructor","v":{}}}',
      '{"x":{"$t":"Class","n":"__proto__","v":{}}}',
      '{"__proto__":{"polluted":1},"x":{"$t":"Object","v":{"__proto__":{"polluted":1}}}}',
      '{"constructor":{"prototype":{"polluted":1}}}',
    ]) {
      try {
        serializer.parse(evil);
      } catch {
        // Unknown classes read as corrupt; that is the point.
      }
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.keys(Object.prototype)).toEqual([]);
  });
});

describe('logs', () => {
  it('never logs a raw session ID or cookie value, whatever goes wrong', async () => {
    const lines: unknown[][] = [];
    const logger = {
      warn: (...args: unknown[]) => void lines.push(args),
      error: (...args: unknown[]) => void lines.push(args),
    };
    const store = memoryStore();
    const sessions = createSessions({
      store,
      logger,
      secrets: 's'.repeat(32),
      lock: true,
      lockTimeout: 50,
      maxRetries: 1,
      maxPayloadBytes: 1_000,
    });
    const { client } = await serve(sessions, {
      '/big': (req: any, res: any) => {
        req.session.set('big', 'x'.repeat(2_000));
        res.end('big');
      },
      '/throw': () => {
        throw new Error('handler failed');
      },
    });
    const browser = new Browser(client);
    await browser.fetch('/set?key=a&value=1', { method: 'POST' });
    const value = browser.cookie!;
    const id = value.split('.')[0]!;
    const key = storeKey(id);

    // Too large, a handler that throws, an outage, a conflict, a logout race, a lock timeout, corrupt data.
    await browser.fetch('/big', { method: 'POST' });
    await browser.fetch('/throw', { method: 'POST' });
    // The memory store's get and update call their synchronous twins, which the core may also call.
    const down = vi.spyOn(store.sync!, 'get').mockImplementationOnce(() => {
      throw new Error(`lookup of ${key} failed`);
    });
    await browser.fetch('/get?key=a');
    down.mockRestore();
    const conflict = vi.spyOn(store.sync!, 'update').mockReturnValueOnce('conflict');
    await browser.fetch('/set?key=a&value=2', { method: 'POST' });
    conflict.mockRestore();
    const gone = vi.spyOn(store.sync!, 'update').mockReturnValueOnce('missing');
    await browser.fetch('/set?key=a&value=3', { method: 'POST' });
    gone.mockRestore();
    const held = await sessions.load(fakeRequest(`sessionid=${value}`));
    await browser.fetch('/get?key=a');
    await sessions.abandon(held);
    const record = (await store.get(key))!;
    await store.update(
      key,
      { ...record, data: '{corrupt', version: record.version + 1 },
      record.version,
    );
    await browser.fetch('/get?key=a');

    const codes = lines.map(([, details]) => (details as { code?: string } | undefined)?.code);
    expect(codes).toEqual(
      expect.arrayContaining([
        'ERR_SATCHEL_PAYLOAD_TOO_LARGE',
        'ERR_SATCHEL_STORE_UNAVAILABLE',
        'ERR_SATCHEL_CONFLICT',
        'ERR_SATCHEL_SESSION_INTERRUPTED',
        'ERR_SATCHEL_LOCK_TIMEOUT',
      ]),
    );
    const text = lines
      .map((args) =>
        args
          .map((a) =>
            a instanceof Error
              ? `${a.stack}`
              : JSON.stringify(a, (_, v) =>
                  v instanceof Error ? `${v.stack} ${String(v.cause)}` : v,
                ),
          )
          .join(' '),
      )
      .join('\n');
    expect(text.length).toBeGreaterThan(0);
    expect(text).not.toContain(id);
    expect(text).not.toContain(value);
  });
});

describe('URL transport links', () => {
  // Only relative links get the ID: an absolute link may lead to another site
  // (or be a javascript: URL) and would carry the session away.
  it('never adds the session ID to a link to another site (URL transport)', async () => {
    const sessions = createSessions({ store: memoryStore(), transport: { type: 'url' } });
    const session = await sessions.load(fakeRequest());
    session.set('user', 'ann');
    for (const link of ['https://evil.example/', 'http://other.example/x', 'javascript:alert(1)']) {
      expect(session.encodeUrl(link)).toBe(link);
    }
    // A protocol-relative link is another site too, not a path here.
    expect(session.encodeUrl('//cdn.example/lib.js')).toBe('//cdn.example/lib.js');
    await sessions.close();
  });
});
