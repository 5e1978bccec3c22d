/**
 * The importers end to end, through createSessions({ importers }) and the
 * node:http adapter, as an app moving to satchel runs them.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemoryStore, type Store } from 'express-session';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { withSessions } from '../../src/adapters/node.js';
import { storeKey } from '../../src/ids.js';
import { fromDjango } from '../../src/import/django.js';
import {
  type ExpressSessionImportOptions,
  fromExpressSession,
} from '../../src/import/express-session.js';
import type { LegacyImporter } from '../../src/import/types.js';
import { createSessions, type SessionStore, type Sessions } from '../../src/index.js';
import { memoryStore } from '../../src/stores/memory.js';
import { describeWithService } from '../support/services.js';
import { djangoMissing, startDjango } from './django/site.js';
import { DAY, legacyExpress, OLD_SECRET } from './express-app.js';

const DJANGO_KEY = 'django-insecure-satchel-manager-import-test-0123456789abcdef';

const closers: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
});

/** Logs in on the express-session site being replaced; returns the Cookie header. */
async function legacyLogin(store: Store, maxAge = DAY): Promise<string> {
  const app = await legacyExpress(store, { cookie: { maxAge } });
  try {
    return await app.login();
  } finally {
    await app.close();
  }
}

function listen(handler: Parameters<typeof createServer>[1]): Promise<Server> {
  return new Promise((resolve) => {
    const server = createServer(handler);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}
const urlOf = (server: Server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

let sessions: Sessions<any> | undefined;
let satchelStore: SessionStore;
let created: number;
afterEach(async () => {
  await sessions?.close();
  sessions = undefined;
});

/**
 * The satchel app: GET / answers the session's data as JSON, and counts the
 * visit with update() so concurrent requests can be checked for lost writes.
 */
async function satchelApp(importers: LegacyImporter[], cookieName?: string) {
  satchelStore = memoryStore();
  created = 0;
  const create = satchelStore.create.bind(satchelStore);
  satchelStore.create = async (key, record) => {
    const ok = await create(key, record);
    if (ok) created++;
    return ok;
  };
  sessions = createSessions({
    store: satchelStore,
    ...(cookieName ? { cookie: { name: cookieName } } : {}),
    // Until the manager knows the option, the cast keeps the test compiling.
    importers,
  } as Parameters<typeof createSessions>[0]);
  const s = sessions;
  const server = await listen(
    withSessions(s, async (req, res) => {
      req.session.update('visits', (n: number | undefined) => (n ?? 0) + 1);
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          user: req.session.get('user') ?? null,
          cart: req.session.get('cart') ?? null,
        }),
      );
    }),
  );
  closers.push(() => new Promise((resolve) => server.close(resolve)));
  const base = urlOf(server);
  return {
    async get(cookie: string | undefined) {
      const res = await fetch(`${base}/`, { headers: cookie ? { cookie } : {} });
      const body = (await res.json()) as { user: string | null; cart: string[] | null };
      return { status: res.status, body, setCookie: res.headers.getSetCookie() };
    },
  };
}

/** The value a browser keeps for `name` after these Set-Cookie headers (in order), or undefined if deleted/unset. */
function jarValue(setCookie: string[], name: string): string | undefined {
  let value: string | undefined;
  for (const header of setCookie) {
    const [pair] = header.split(';');
    if (pair!.slice(0, pair!.indexOf('=')) !== name) continue;
    value = /max-age=0(;|$)/i.test(header) ? undefined : pair!.slice(name.length + 1);
  }
  return value;
}
const deletes = (setCookie: string[], name: string) =>
  setCookie.some((h) => h.startsWith(`${name}=;`) && /max-age=0/i.test(h));

function expressImporter(store: Store, options: Partial<ExpressSessionImportOptions> = {}) {
  return fromExpressSession({
    secrets: OLD_SECRET,
    store: store as ExpressSessionImportOptions['store'],
    ...options,
  });
}
const legacyRecord = (store: Store, cookie: string) =>
  new Promise<unknown>((resolve) => {
    const value = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1));
    store.get(value.slice(2, value.lastIndexOf('.')), (_err, s) => resolve(s));
  });

describe('createSessions({ importers }) with express-session', () => {
  it('moves a logged-in user to satchel: satchel cookie set, legacy cookie deleted, legacy record removed', async () => {
    const legacy = new MemoryStore();
    const cookie = await legacyLogin(legacy);
    const app = await satchelApp([expressImporter(legacy)]);

    const first = await app.get(cookie);
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ user: 'alice', cart: ['apple', 'pear'] });
    const id = jarValue(first.setCookie, 'sessionid');
    expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(deletes(first.setCookie, 'connect.sid')).toBe(true);
    expect(await legacyRecord(legacy, cookie)).toBeUndefined();
    expect(await satchelStore.get(storeKey(id!))).toBeDefined();

    // The browser now sends only the satchel cookie, and the data is there.
    const second = await app.get(`sessionid=${id}`);
    expect(second.body).toEqual({ user: 'alice', cart: ['apple', 'pear'] });
    expect(created).toBe(1);
  });

  it('leaves the legacy record in place with keepLegacy: true', async () => {
    const legacy = new MemoryStore();
    const cookie = await legacyLogin(legacy);
    const app = await satchelApp([expressImporter(legacy, { keepLegacy: true })]);
    const first = await app.get(cookie);
    expect(first.body.user).toBe('alice');
    expect(await legacyRecord(legacy, cookie)).toMatchObject({ user: 'alice' });
  });

  it('imports nothing from a forged connect.sid (no session theft through the importer)', async () => {
    const legacy = new MemoryStore();
    const cookie = await legacyLogin(legacy);
    const forged = cookie.replace(/.(?=$)/, (c) => (c === 'A' ? 'B' : 'A'));
    const app = await satchelApp([expressImporter(legacy)]);
    const res = await app.get(forged);
    expect(res.body).toEqual({ user: null, cart: null });
    expect(await legacyRecord(legacy, cookie), 'the real record is untouched').toMatchObject({
      user: 'alice',
    });
  });

  it('imports nothing from an expired express-session cookie', async () => {
    const legacy = new MemoryStore();
    const cookie = await legacyLogin(legacy, 300);
    await sleep(400);
    const app = await satchelApp([expressImporter(legacy)]);
    const res = await app.get(cookie);
    expect(res.body).toEqual({ user: null, cart: null });
  });

  it('imports once when ten first requests arrive at the same time', async () => {
    const legacy = new MemoryStore();
    const cookie = await legacyLogin(legacy);
    const app = await satchelApp([expressImporter(legacy)]);
    const results = await Promise.all(Array.from({ length: 10 }, () => app.get(cookie)));
    for (const r of results) expect(r.body).toEqual({ user: 'alice', cart: ['apple', 'pear'] });
    const ids = new Set(results.map((r) => jarValue(r.setCookie, 'sessionid')));
    expect(ids.size, 'every response names the same satchel session').toBe(1);
    expect(created, 'one satchel session was created').toBe(1);
    const [id] = [...ids];
    expect(await satchelStore.count!(Date.now())).toBe(1);
    // No visit was lost: the ten updates all landed on the one session.
    const stored = await sessions!.load({
      header: (name) => (name === 'cookie' ? `sessionid=${id}` : undefined),
      encrypted: false,
    });
    expect(stored.get('visits')).toBe(10);
  });

  it('prefers a live satchel session over a legacy cookie sent alongside it', async () => {
    const legacy = new MemoryStore();
    const cookie = await legacyLogin(legacy);
    const app = await satchelApp([expressImporter(legacy)]);
    const fresh = await app.get(undefined);
    const id = jarValue(fresh.setCookie, 'sessionid');
    expect(id).toBeDefined();
    const both = await app.get(`sessionid=${id}; ${cookie}`);
    expect(both.body).toEqual({ user: null, cart: null });
    expect(await legacyRecord(legacy, cookie)).toMatchObject({ user: 'alice' });
  });
});

describeWithService('createSessions({ importers }) with Django', await djangoMissing(), () => {
  it("imports a Django session whose cookie shares satchel's name (sessionid)", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'satchel-django-files-'));
    closers.push(async () => rmSync(dir, { recursive: true, force: true }));
    const site = await startDjango({
      DJANGO_SECRET_KEY: DJANGO_KEY,
      DJANGO_SESSION_ENGINE: 'file',
      DJANGO_SESSION_FILE_PATH: dir,
    });
    closers.push(() => site.stop());
    const key = await site.login();
    const django = fromDjango({ secretKey: DJANGO_KEY, store: { type: 'file', dir } });
    const app = await satchelApp([django]);

    const first = await app.get(`sessionid=${key}`);
    expect(first.body).toEqual({ user: 'alice', cart: ['item-0', 'item-1'] });
    // The browser ends up holding satchel's ID under the shared name, not a deleted cookie.
    const id = jarValue(first.setCookie, 'sessionid');
    expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(readdirSync(dir).filter((f) => f.includes(key))).toEqual([]);
    expect(await site.whoami(key)).toBeNull();

    const second = await app.get(`sessionid=${id}`);
    expect(second.body.user).toBe('alice');
  });
});
