import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer as createHttpServer, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSessions, type SessionStore } from '../../src/index.js';
import { memoryStore } from '../../src/stores/memory.js';
import { sqliteStore } from '../../src/stores/sqlite.js';
import {
  type AppProcess,
  cartOf,
  freePort,
  spawnServer,
  startServer,
  stopAll,
  Visitor,
} from './harness.js';

let dir: string;

/** The visible text of a page's <main>, tags removed. */
function mainText(html: string): string {
  const main = /<main>([\s\S]*?)<\/main>/.exec(html)?.[1] ?? '';
  return main.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ');
}

/** Live sessions in the SQLite file at `path`, counted by the library as `satchel sessions count` does. */
async function sessionsIn(path: string): Promise<number> {
  const sessions = createSessions({ store: sqliteStore({ path }) });
  try {
    return await sessions.count();
  } finally {
    await sessions.close();
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'satchel-cart-http-'));
});

afterAll(async () => {
  await stopAll();
  await rm(dir, { recursive: true, force: true });
});

describe('shopping cart over HTTP (sqlite store)', () => {
  let app: AppProcess;

  beforeAll(async () => {
    app = await startServer({
      PORT: String(await freePort()),
      SATCHEL_STORE: 'sqlite',
      SATCHEL_SQLITE_PATH: join(dir, 'sessions.db'),
    });
  });

  afterAll(async () => {
    await app?.stop();
  });

  it('adds through the tutorial route and renders the cart page', async () => {
    const visitor = new Visitor(app.url);
    await visitor.page('/add_to_cart/awesome-item/');
    const { status, html } = await visitor.page('/add_to_cart/awesome-item/');
    expect(status).toBe(200);
    expect(html).toContain('<h1>Your Shopping Cart</h1>');
    expect(cartOf(html)).toEqual({ 'awesome-item': 2 });
    expect(html).toContain('Added Awesome item');
    expect(html).toMatch(/id="cart-count"[^>]*>2</);
  });

  it('escapes item names when rendering them', async () => {
    const visitor = new Visitor(app.url);
    const item = '<script>alert("x")</script>';
    const { status, html } = await visitor.page(`/add_to_cart/${encodeURIComponent(item)}/`);
    expect(status).toBe(200);
    expect(html).not.toContain('<script>');
    expect(html).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;');
    expect(cartOf(html)).toEqual({ [item]: 1 });
  });

  it('rejects item names longer than 100 characters with 400', async () => {
    const visitor = new Visitor(app.url);
    expect((await visitor.page(`/add_to_cart/${'a'.repeat(101)}/`)).status).toBe(400);
    const { html } = await visitor.page(`/add_to_cart/${'a'.repeat(100)}/`);
    expect(cartOf(html)).toEqual({ ['a'.repeat(100)]: 1 });
  });

  it('redirects the route without its trailing slash, as Django does', async () => {
    const res = await new Visitor(app.url).request('/add_to_cart/awesome-item');
    expect(res.status).toBe(301);
    expect(res.headers.get('location')).toBe('/add_to_cart/awesome-item/');
  });

  it('answers 403 to a POST without the CSRF token or with a wrong one, and changes nothing', async () => {
    const visitor = new Visitor(app.url);
    const token = await visitor.csrf();
    await visitor.post('/cart/add', { csrf: token, item: 'rubber-duck' });

    const forms: Record<string, string>[] = [
      { item: 'coffee-mug' },
      { csrf: '', item: 'coffee-mug' },
      { csrf: `${token.startsWith('A') ? 'B' : 'A'}${token.slice(1)}`, item: 'coffee-mug' },
      { csrf: `${token}x`, item: 'coffee-mug' },
    ];
    for (const form of forms) {
      const res = await visitor.post('/cart/add', form);
      expect(res.status, JSON.stringify({ form, token })).toBe(403);
      expect(await res.text()).toContain('Form expired');
    }
    expect((await visitor.post('/cart/clear', {})).status).toBe(403);
    expect((await visitor.post('/cart/remove', { item: 'rubber-duck' })).status).toBe(403);

    expect(cartOf((await visitor.page('/cart/')).html)).toEqual({ 'rubber-duck': 1 });
  });

  it('does not accept a token from another session', async () => {
    const alice = new Visitor(app.url);
    const mallory = new Visitor(app.url);
    await alice.csrf();
    const res = await alice.post('/cart/add', { csrf: await mallory.csrf(), item: 'coffee-mug' });
    expect(res.status).toBe(403);
  });

  it('adds, removes one and clears with POST, redirect-after-POST and flash messages', async () => {
    const visitor = new Visitor(app.url);
    const csrf = await visitor.csrf();

    let res = await visitor.post('/cart/add', { csrf, item: 'coffee-mug', next: '/' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/');
    await visitor.post('/cart/add', { csrf, item: 'coffee-mug' });
    res = await visitor.post('/cart/add', { csrf, item: 'sticker-pack' });
    expect(res.headers.get('location')).toBe('/cart/');

    let page = await visitor.page('/cart/');
    expect(cartOf(page.html)).toEqual({ 'coffee-mug': 2, 'sticker-pack': 1 });
    expect(page.html).toContain('Added Sticker pack');
    expect(page.html).toContain('$28.00');
    // A flash message shows once.
    expect((await visitor.page('/cart/')).html).not.toContain('Added Sticker pack');

    res = await visitor.post('/cart/remove', { csrf, item: 'coffee-mug' });
    expect(res.status).toBe(303);
    page = await visitor.page('/cart/');
    expect(cartOf(page.html)).toEqual({ 'coffee-mug': 1, 'sticker-pack': 1 });
    expect(page.html).toContain('Removed one Coffee mug');

    res = await visitor.post('/cart/clear', { csrf, next: 'https://evil.example/' });
    expect(res.headers.get('location')).toBe('/cart/');
    page = await visitor.page('/cart/');
    expect(cartOf(page.html)).toEqual({});
    expect(page.html).toContain('Removed all 2 items from your cart');
    // One sentence says the cart is empty, not a message and the page both.
    expect(mainText(page.html).match(/empty/gi)).toHaveLength(1);
    expect(page.html).toContain('Your cart is empty.');
  });

  it('keeps every item when many requests add to one cart at once', async () => {
    const visitor = new Visitor(app.url);
    // The first add starts the session the concurrent ones share.
    await visitor.page('/add_to_cart/first/');
    const items = ['first', ...Array.from({ length: 12 }, (_, i) => `item-${i}`)];
    const pages = await Promise.all(
      items.slice(1).map((item) => visitor.page(`/add_to_cart/${item}/`)),
    );
    expect(pages.map((p) => p.status)).toEqual(items.slice(1).map(() => 200));
    const cart = cartOf((await visitor.page('/cart/')).html);
    expect(Object.keys(cart).sort()).toEqual([...items].sort());
  });

  it('shows the session panel without the session ID', async () => {
    const visitor = new Visitor(app.url);
    const { html } = await visitor.page('/add_to_cart/awesome-item/');
    expect(visitor.cookie).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(html).not.toContain(visitor.cookie);
    expect(html).toMatch(/id="session-store">sqlite \(/);
    expect(html).toContain('persistent (until it expires)');
    expect(html).toMatch(/<time datetime="\d{4}-\d\d-\d\dT/);
  });

  it('answers unknown pages with 404', async () => {
    expect((await new Visitor(app.url).page('/nope')).status).toBe(404);
  });
});

describe('CSRF protection without a session (double-submit cookie)', () => {
  let app: AppProcess;
  let db: string;

  beforeAll(async () => {
    db = join(dir, 'csrf.db');
    app = await startServer({
      PORT: String(await freePort()),
      SATCHEL_STORE: 'sqlite',
      SATCHEL_SQLITE_PATH: db,
    });
  });

  afterAll(async () => {
    await app?.stop();
  });

  it('anonymous browsing stores no session, so a crawler cannot fill the store', async () => {
    const before = await sessionsIn(db);
    const paths = ['/', '/login', '/cart/', '/cart', '/login?next=%2Fdevices', '/nope', '/devices'];
    // Bots without cookies, and one visitor that keeps them.
    for (let i = 0; i < 20; i++) {
      const responses = await Promise.all(paths.map((path) => new Visitor(app.url).request(path)));
      for (const res of responses) {
        await res.arrayBuffer();
        expect(res.headers.getSetCookie().join()).not.toContain('sessionid=');
      }
    }
    const browsing = new Visitor(app.url);
    for (const path of paths) await browsing.page(path);
    expect((await browsing.page('/')).html).toContain(
      'id="session-state">none yet: browsing stores nothing',
    );
    expect(browsing.cookie).toBeUndefined();
    expect(browsing.jar.get('csrftoken')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await sessionsIn(db)).toBe(before);

    // The first change to the cart is what starts a session.
    await browsing.post('/cart/add', { csrf: await browsing.csrf(), item: 'rubber-duck' });
    expect(browsing.cookie).toBeDefined();
    expect(await sessionsIn(db)).toBe(before + 1);
  });

  it('sets the csrftoken cookie HttpOnly, SameSite=Lax, and masks the token anew in every response', async () => {
    const visitor = new Visitor(app.url);
    const res = await visitor.request('/');
    const [cookie] = res.headers.getSetCookie();
    expect(cookie).toMatch(
      /^csrftoken=[A-Za-z0-9_-]{43}; Max-Age=\d+; Path=\/; Expires=.+; HttpOnly; SameSite=Lax$/,
    );
    const secret = /^csrftoken=([^;]+)/.exec(cookie!)![1]!;
    await res.arrayBuffer();
    // One token per page, a new one on every page, all for the same secret (BREACH).
    const tokens = [await visitor.csrf('/'), await visitor.csrf('/login'), await visitor.csrf('/')];
    expect(new Set(tokens).size).toBe(3);
    expect(visitor.jar.get('csrftoken')).toBe(secret);
    for (const token of tokens) {
      expect(token).toMatch(/^[A-Za-z0-9_-]{86}$/);
      expect(token).not.toContain(secret);
      const posted = await visitor.post('/cart/add', { csrf: token, item: 'rubber-duck' });
      expect(posted.status).toBe(303);
    }
    expect(cartOf((await visitor.page('/cart/')).html)).toEqual({ 'rubber-duck': 3 });
  });

  it('refuses a token whose cookie is missing or belongs to another visitor', async () => {
    const alice = new Visitor(app.url);
    const mallory = new Visitor(app.url);
    const aliceToken = await alice.csrf();
    const malloryToken = await mallory.csrf();

    // Mallory's own token against Alice's cookie: the double submit does not match.
    let res = await alice.post('/cart/add', { csrf: malloryToken, item: 'coffee-mug' });
    expect(res.status).toBe(403);
    expect(await res.text()).toContain('did not match');

    // Alice's token without her cookie (what a forged cross-site form would carry).
    const cookieless = new Visitor(app.url);
    res = await cookieless.post('/cart/add', { csrf: aliceToken, item: 'coffee-mug' });
    expect(res.status).toBe(403);
    const page = await res.text();
    expect(page).toContain('Form expired');
    expect(page).toContain('did not send this shop&#39;s security cookie');
    expect(cookieless.cookie).toBeUndefined();

    // A planted cookie value of the attacker's choosing with a token made for it.
    const planted = new Visitor(app.url);
    planted.jar.set('csrftoken', 'A'.repeat(43));
    res = await planted.post('/cart/add', { csrf: malloryToken, item: 'coffee-mug' });
    expect(res.status).toBe(403);
  });

  it('refuses a form posted from another site even with a valid token (Origin check)', async () => {
    const visitor = new Visitor(app.url);
    const csrf = await visitor.csrf();
    for (const origin of ['https://evil.example', 'null', `http://127.0.0.1.evil.example`]) {
      const res = await visitor.request('/cart/add', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin },
        body: new URLSearchParams({ csrf, item: 'coffee-mug' }).toString(),
      });
      expect(res.status, origin).toBe(403);
      expect(await res.text()).toContain('Form from another site');
    }
    // Its own origin passes.
    const res = await visitor.request('/cart/add', {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        origin: new URL(app.url).origin,
      },
      body: new URLSearchParams({ csrf, item: 'coffee-mug' }).toString(),
    });
    expect(res.status).toBe(303);
    expect(cartOf((await visitor.page('/cart/')).html)).toEqual({ 'coffee-mug': 1 });
  });

  it('accepts the token in an X-CSRFToken header, as Django does', async () => {
    const visitor = new Visitor(app.url);
    const res = await visitor.request('/cart/add', {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'x-csrftoken': await visitor.csrf(),
      },
      body: new URLSearchParams({ item: 'sticker-pack' }).toString(),
    });
    expect(res.status).toBe(303);
    expect(cartOf((await visitor.page('/cart/')).html)).toEqual({ 'sticker-pack': 1 });
  });

  it('rotates the secret at login, so a token from before it is refused', async () => {
    const visitor = new Visitor(app.url);
    const before = await visitor.csrf('/login');
    const secret = visitor.jar.get('csrftoken');
    const res = await visitor.post('/login', {
      csrf: before,
      username: 'demo',
      password: 'demo-password',
      next: '/',
    });
    expect(res.status).toBe(303);
    expect(visitor.jar.get('csrftoken')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(visitor.jar.get('csrftoken')).not.toBe(secret);
    expect((await visitor.post('/cart/add', { csrf: before, item: 'rubber-duck' })).status).toBe(
      403,
    );
    const after = await visitor.csrf('/cart/');
    expect((await visitor.post('/cart/add', { csrf: after, item: 'rubber-duck' })).status).toBe(
      303,
    );
  });
});

/**
 * The demo app, imported by a path TypeScript does not follow: it declares its
 * own SessionData (a module augmentation), which would otherwise type every
 * other test's sessions as the demo's cart.
 */
interface DemoApp {
  createApp(options: {
    store: SessionStore;
    users?: ReadonlyMap<string, string>;
    logError?: (message: string, details: Record<string, unknown>) => void;
  }): { app: RequestListener; close(): Promise<void> };
}
async function demoApp(): Promise<DemoApp['createApp']> {
  const href = new URL('../../examples/shopping-cart/app.ts', import.meta.url).href;
  return ((await import(href)) as DemoApp).createApp;
}

describe('error pages', () => {
  it('answers an unexpected error with a generic 500 page, the details in the log only', async () => {
    const logged: [string, Record<string, unknown>][] = [];
    // A password hash the scrypt call refuses (N is not a number): the login handler throws.
    const createApp = await demoApp();
    const { app, close } = createApp({
      store: memoryStore(),
      users: new Map([
        [
          'demo',
          'scrypt$secret-internal-detail$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAA',
        ],
      ]),
      logError: (message, details) => logged.push([message, details]),
    });
    const server = createHttpServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const visitor = new Visitor(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      const res = await visitor.post('/login', {
        csrf: await visitor.csrf('/login'),
        username: 'demo',
        password: 'demo-password',
      });
      expect(res.status).toBe(500);
      expect(res.headers.get('cache-control')).toBe('no-store');
      const html = await res.text();
      expect(html).toContain('<h1>Something went wrong</h1>');
      expect(html).toContain('Something went wrong on our side. Please try again in a moment.');
      expect(html).not.toMatch(/secret-internal-detail|scrypt|RangeError|TypeError|\n\s+at /);
      expect(logged).toHaveLength(1);
      expect(logged[0]![0]).toBe('POST /login failed');
      expect(logged[0]![1].error).toBeInstanceOf(Error);
    } finally {
      await new Promise((resolve) => server.close(resolve));
      await close();
    }
  });

  it('the error page does not reveal the store address, and the log has it', async () => {
    // A Redis URL where nothing listens: every store call fails.
    const deadPort = await freePort();
    const app = await startServer({
      PORT: '0',
      SATCHEL_STORE: 'redis',
      SATCHEL_REDIS_URL: `redis://127.0.0.1:${deadPort}`,
    });
    try {
      const address = `127.0.0.1:${deadPort}`;
      const visitor = new Visitor(app.url);
      // Browsing needs no store at all now.
      expect((await visitor.page('/')).status).toBe(200);
      // A change fails inside the handler (saving), and a session cookie fails
      // at load, in the adapter: both answer 503 with a generic message.
      const failures = [
        await visitor.page('/add_to_cart/awesome-item/'),
        await visitor
          .post('/cart/add', { csrf: await visitor.csrf(), item: 'rubber-duck' })
          .then(async (res) => ({ status: res.status, html: await res.text() })),
        await (async () => {
          const returning = new Visitor(app.url);
          returning.cookie = 'A'.repeat(43);
          return returning.page('/cart/');
        })(),
      ];
      for (const { status, html } of failures) {
        expect(status).toBe(503);
        expect(html).toContain('the session store cannot be reached; please try again shortly.');
        expect(html).not.toContain(address);
        expect(html).not.toContain(String(deadPort));
        expect(html).not.toMatch(/ECONNREFUSED|redis/i);
      }
      expect(failures[0]!.html).toContain('<h1>Briefly unavailable</h1>');
      // The details are in the server's log, for the operator.
      await expect.poll(() => app.stderr()).toContain(`ECONNREFUSED ${address}`);
      expect(app.stderr()).toContain('GET /add_to_cart/awesome-item/ failed');
      expect(app.stderr()).toContain('ERR_SATCHEL_STORE_UNAVAILABLE');
    } finally {
      await app.stop();
    }
  });
});

describe('shopping cart on the file store', () => {
  it('keeps the cart across a server restart', async () => {
    const env = {
      PORT: String(await freePort()),
      SATCHEL_STORE: 'file',
      SATCHEL_FILE_PATH: join(dir, 'files'),
    };
    let app = await startServer(env);
    const visitor = new Visitor(app.url);
    const csrf = await visitor.csrf();
    await visitor.post('/cart/add', { csrf, item: 'rubber-duck' });
    await visitor.page('/add_to_cart/awesome-item/');
    expect((await visitor.page('/cart/')).html).toMatch(/id="session-store">file \(/);

    // A crash, not a clean shutdown: what was answered must be on disk.
    await app.stop('SIGKILL');
    app = await startServer(env);
    visitor.base = app.url;
    expect(cartOf((await visitor.page('/cart/')).html)).toEqual({
      'rubber-duck': 1,
      'awesome-item': 1,
    });
    await app.stop();
  });
});

describe('starting the server', () => {
  it('exits 1 with a one-line message when the port is taken', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const run = spawnServer({
        HOST: '127.0.0.1',
        PORT: String(port),
        SATCHEL_STORE: 'memory',
      });
      expect(await run.exited).toEqual({ code: 1, signal: null });
      expect(run.err().trim()).toBe(
        `shopping-cart: 127.0.0.1:${port} is already in use; stop the other server or choose another PORT`,
      );
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it('exits 2 naming the choices when SATCHEL_STORE is unknown', async () => {
    const run = spawnServer({ SATCHEL_STORE: 'mongo', PORT: '0' });
    expect(await run.exited).toEqual({ code: 2, signal: null });
    expect(run.err().trim()).toBe(
      'shopping-cart: unknown SATCHEL_STORE "mongo"; expected one of: sqlite, file, memory, redis, postgres, cached, cookie',
    );
  });

  it('listens on PORT=0 and logs the URL and the store', async () => {
    const app = await startServer({ PORT: '0', SATCHEL_STORE: 'memory' });
    expect(app.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(app.stdout()).toContain('Sessions: memory');
    expect(await app.stop('SIGINT')).toEqual({ code: 0, signal: null });
  });
});
