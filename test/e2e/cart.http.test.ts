import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
    expect(html).toContain('Added awesome-item');
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
    expect(page.html).toContain('Added sticker-pack');
    expect(page.html).toContain('$28.00');
    // A flash message shows once.
    expect((await visitor.page('/cart/')).html).not.toContain('Added sticker-pack');

    res = await visitor.post('/cart/remove', { csrf, item: 'coffee-mug' });
    expect(res.status).toBe(303);
    page = await visitor.page('/cart/');
    expect(cartOf(page.html)).toEqual({ 'coffee-mug': 1, 'sticker-pack': 1 });
    expect(page.html).toContain('Removed one coffee-mug');

    res = await visitor.post('/cart/clear', { csrf, next: 'https://evil.example/' });
    expect(res.headers.get('location')).toBe('/cart/');
    page = await visitor.page('/cart/');
    expect(cartOf(page.html)).toEqual({});
    expect(page.html).toContain('Your cart is empty');
  });

  it('keeps every item when many requests add to one cart at once', async () => {
    const visitor = new Visitor(app.url);
    await visitor.csrf();
    const items = Array.from({ length: 12 }, (_, i) => `item-${i}`);
    const pages = await Promise.all(items.map((item) => visitor.page(`/add_to_cart/${item}/`)));
    expect(pages.map((p) => p.status)).toEqual(items.map(() => 200));
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
