import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import {
  createSessions,
  type Session,
  type SessionStore,
  type Sessions,
  storeKey,
} from '../../src/index.js';
import { fileStore } from '../../src/stores/file.js';
import { memoryStore } from '../../src/stores/memory.js';
import { sqliteStore } from '../../src/stores/sqlite.js';
import { Browser } from '../helpers.js';
import { asyncOnly } from '../support/sync-access.js';

/** What a route answers, independent of the framework. */
export interface Reply {
  status: number;
  body: string;
  location?: string;
  /** Headers the app sets itself (lower-case names). */
  headers?: Record<string, string>;
}

/**
 * The scenario app every adapter serves. Each adapter test maps it onto its
 * framework's routing in a few lines, so the same cases run on all of them.
 */
export async function scenario(session: Session<any>, url: URL): Promise<Reply> {
  const q = (name: string) => url.searchParams.get(name) ?? '';
  switch (url.pathname) {
    case '/get':
      return { status: 200, body: JSON.stringify(session.get(q('key')) ?? null) };
    case '/set':
      session.set(q('key'), q('value'));
      return { status: 200, body: 'ok' };
    case '/add': {
      const cart = session.update('cart', (c: string[] | undefined) => [...(c ?? []), q('item')]);
      return { status: 200, body: JSON.stringify(cart) };
    }
    case '/cycle':
      session.cycleKey();
      return { status: 200, body: 'ok' };
    case '/flush':
      session.flush();
      return { status: 200, body: 'ok' };
    case '/flash':
      if (q('msg')) session.flash('msg', q('msg'));
      return { status: 200, body: JSON.stringify(session.getFlash('msg') ?? null) };
    case '/fail':
      session.set('failed', 'yes');
      return { status: 500, body: 'boom' };
    case '/redirect':
      session.set('redirected', 'yes');
      return { status: 302, body: '', location: '/get?key=redirected' };
    case '/noop':
      return { status: 200, body: 'static' };
    case '/public':
      if (q('write') !== 'no') session.set('visited', 'yes');
      return { status: 200, body: 'ok', headers: { 'cache-control': q('cc') } };
    case '/logout-fails':
      session.flush();
      return { status: 500, body: 'boom' };
    default:
      return { status: 404, body: 'not found' };
  }
}

/** Starts a real server for the adapter on a random port; resolves to its base URL. */
export type StartServer = (sessions: Sessions<any>) => Promise<Server>;

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'satchel-matrix-'));
  dirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const stores: [string, () => SessionStore][] = [
  ['memory', () => memoryStore()],
  ['sqlite', () => sqliteStore({ path: join(tempDir(), 'sessions.db') })],
  ['file', () => fileStore({ dir: tempDir() })],
];

/** The adapter matrix (h3's describeMatrix): one body of cases, run once per adapter. */
export function describeAdapter(name: string, start: StartServer): void {
  describe(`${name} adapter`, () => {
    let server: Server | undefined;
    let sessions: Sessions<any> | undefined;

    let errors: unknown[][] = [];
    const logger = { warn: () => {}, error: (...args: unknown[]) => void errors.push(args) };

    async function boot(store: SessionStore = memoryStore(), options = {}): Promise<Browser> {
      errors = [];
      sessions = createSessions({ store, logger, ...options });
      server = await start(sessions);
      return new Browser(await listen(server));
    }

    afterEach(async () => {
      await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
      await sessions?.close();
      server = undefined;
      sessions = undefined;
    });

    it('creates a session, reads it back and sends Vary: Cookie', async () => {
      const browser = await boot();
      const set = await browser.fetch('/set?key=name&value=ann', { method: 'POST' });
      expect(set.status).toBe(200);
      expect(set.headers.get('set-cookie')).toMatch(
        /^sessionid=[\w-]{43}; Max-Age=1209600; Path=\/; Expires=[^;]+; HttpOnly; SameSite=Lax$/,
      );
      expect(set.headers.get('vary')).toBe('Cookie');
      const get = await browser.fetch('/get?key=name');
      expect(await get.json()).toBe('ann');
    });

    it("marks a response that sets a session cookie private, so no shared cache keeps one visitor's cookie for the next", async () => {
      const browser = await boot();
      const none = await browser.fetch('/public?cc=');
      expect(none.headers.get('set-cookie')).toMatch(/^sessionid=/);
      expect(none.headers.get('cache-control')).toBe('private');
      const fresh = new Browser(browser.base);
      const own = await fresh.fetch('/public?cc=max-age%3D60');
      expect(own.headers.get('cache-control')).toBe('private, max-age=60');
      const shared = new Browser(browser.base);
      const pub = await shared.fetch('/public?cc=public%2C%20max-age%3D60');
      expect(pub.headers.get('cache-control')).toBe('private, max-age=60');
      // A response that carries no cookie keeps the app's header as it is.
      const again = await shared.fetch('/public?cc=public%2C%20max-age%3D60&write=no');
      expect(again.headers.get('set-cookie')).toBeNull();
      expect(again.headers.get('cache-control')).toBe('public, max-age=60');
    });

    it('logs out even when the logout request ends in a 5xx (a stolen cookie stops working)', async () => {
      const browser = await boot();
      await browser.fetch('/set?key=user&value=ann', { method: 'POST' });
      const stolen = browser.cookie;
      const res = await browser.fetch('/logout-fails', { method: 'POST' });
      expect(res.status).toBe(500);
      const thief = new Browser(browser.base);
      thief.cookie = stolen;
      expect(await (await thief.fetch('/get?key=user')).json()).toBeNull();
    });

    it('sends no cookie and no Vary for a request that never used the session', async () => {
      const browser = await boot();
      const res = await browser.fetch('/noop');
      expect(await res.text()).toBe('static');
      expect(res.headers.get('set-cookie')).toBeNull();
      expect(res.headers.get('vary')).toBeNull();
    });

    it('commits before a redirect reaches the client', async () => {
      const browser = await boot();
      const res = await browser.fetch('/redirect');
      expect(res.status).toBe(302);
      expect(res.headers.get('set-cookie')).toMatch(/^sessionid=/);
      expect(await (await browser.fetch('/get?key=redirected')).json()).toBe('yes');
    });

    it('saves nothing and sets no cookie on a 5xx response', async () => {
      const browser = await boot();
      const res = await browser.fetch('/fail', { method: 'POST' });
      expect(res.status).toBe(500);
      expect(res.headers.get('set-cookie')).toBeNull();
      await browser.fetch('/set?key=a&value=1', { method: 'POST' });
      await browser.fetch('/fail', { method: 'POST' });
      expect(await (await browser.fetch('/get?key=failed')).json()).toBeNull();
    });

    it('rotates the ID on cycleKey keeping the data, and deletes the cookie on flush', async () => {
      const store = memoryStore();
      const browser = await boot(store);
      await browser.fetch('/add?item=a', { method: 'POST' });
      const before = browser.cookie!;
      await browser.fetch('/cycle', { method: 'POST' });
      expect(browser.cookie).not.toBe(before);
      expect(await store.get(storeKey(before))).toBeUndefined();
      expect(await (await browser.fetch('/get?key=cart')).json()).toEqual(['a']);
      const flushed = await browser.fetch('/flush', { method: 'POST' });
      expect(flushed.headers.get('set-cookie')).toMatch(
        /^sessionid=; Max-Age=0; Path=\/; Expires=Thu, 01 Jan 1970/,
      );
      expect(browser.cookie).toBeUndefined();
    });

    it('shows a flash message on the next request only', async () => {
      const browser = await boot();
      await browser.fetch('/set?key=a&value=1', { method: 'POST' });
      await browser.fetch('/flash?msg=Added%20awesome-item', { method: 'POST' });
      expect(await (await browser.fetch('/flash')).json()).toBe('Added awesome-item');
      expect(await (await browser.fetch('/flash')).json()).toBeNull();
    });

    it('expires a session after the idle timeout: the old cookie finds nothing', async () => {
      const browser = await boot(memoryStore(), { idleTimeout: 1 });
      const set = await browser.fetch('/set?key=a&value=1', { method: 'POST' });
      expect(set.headers.get('set-cookie')).toMatch(/; Max-Age=1;/);
      expect(await (await browser.fetch('/get?key=a')).json()).toBe('1');
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      expect(await (await browser.fetch('/get?key=a')).json()).toBeNull();
    });

    it('does not adopt a forged session ID', async () => {
      const browser = await boot();
      browser.cookie = 'A'.repeat(43);
      const res = await browser.fetch('/set?key=a&value=1', { method: 'POST' });
      expect(res.status).toBe(200);
      expect(browser.cookie).not.toBe('A'.repeat(43));
    });

    // The memory store answers at once; wrapped, it is awaited as Redis or PostgreSQL would be.
    for (const [kind, wrap] of [
      ['synchronous', (store: SessionStore) => store],
      ['asynchronous', asyncOnly],
    ] as const) {
      it(`answers 503 with a plain message when the store is down, and stays up (${kind} store)`, async () => {
        const store = memoryStore();
        const browser = await boot(wrap(store));
        await browser.fetch('/set?key=a&value=1', { method: 'POST' });
        // The memory store's get and update call their synchronous twins, which the core may also call.
        const spy = vi.spyOn(store.sync!, 'get').mockImplementation(() => {
          throw new Error('connect ECONNREFUSED');
        });
        const down = await browser.fetch('/get?key=a');
        expect(down.status).toBe(503);
        expect(down.headers.get('content-type')).toMatch(/^text\/plain/);
        expect(await down.text()).toBe(
          'Service Unavailable: the session store cannot be reached; please try again shortly.\n',
        );
        // One failed request, one log line.
        expect(errors).toEqual([
          [
            '[satchel] [memory] get failed: connect ECONNREFUSED',
            expect.objectContaining({ code: 'ERR_SATCHEL_STORE_UNAVAILABLE' }),
          ],
        ]);
        spy.mockRestore();
        const update = vi.spyOn(store.sync!, 'update').mockImplementation(() => {
          throw new Error('disk full');
        });
        const failedSave = await browser.fetch('/set?key=a&value=2', { method: 'POST' });
        expect(failedSave.status).toBe(503);
        expect(errors).toHaveLength(2);
        update.mockRestore();
        expect(await (await browser.fetch('/get?key=a')).json()).toBe('1');
      });

      it(`answers 400 when another request logged the session out mid-request (${kind} store)`, async () => {
        const store = memoryStore();
        const browser = await boot(wrap(store));
        await browser.fetch('/add?item=a', { method: 'POST' });
        vi.spyOn(store.sync!, 'update').mockReturnValueOnce('missing');
        const res = await browser.fetch('/add?item=b', { method: 'POST' });
        expect(res.status).toBe(400);
        expect(await res.text()).toMatch(/deleted before the request completed/);
      });
    }

    for (const [storeName, makeStore] of stores) {
      it(`keeps all 200 items when 200 requests add to one cart at once (${storeName} store)`, async () => {
        const browser = await boot(makeStore());
        await browser.fetch('/add?item=first', { method: 'POST' });
        const responses = await Promise.all(
          Array.from({ length: 200 }, (_, i) =>
            browser.fetch(`/add?item=item-${i}`, { method: 'POST' }),
          ),
        );
        expect(responses.map((r) => r.status).filter((s) => s !== 200)).toEqual([]);
        const cart = (await (await browser.fetch('/get?key=cart')).json()) as string[];
        expect(cart).toHaveLength(201);
        expect(new Set(cart).size).toBe(201);
      });

      it(`keeps every key when 100 requests set different keys at once (${storeName} store)`, async () => {
        const browser = await boot(makeStore());
        await browser.fetch('/set?key=seed&value=0', { method: 'POST' });
        await Promise.all(
          Array.from({ length: 100 }, (_, i) =>
            browser.fetch(`/set?key=k${i}&value=${i}`, { method: 'POST' }),
          ),
        );
        for (const i of [0, 37, 99])
          expect(await (await browser.fetch(`/get?key=k${i}`)).json()).toBe(String(i));
        expect(await (await browser.fetch('/get?key=seed')).json()).toBe('0');
      });
    }
  });
}
