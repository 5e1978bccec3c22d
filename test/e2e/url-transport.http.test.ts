/**
 * The shopping cart with SATCHEL_TRANSPORT=url (and header, and the default
 * cookie), over plain fetch: a client that never sends a cookie keeps its
 * cart through the IDs in its links, and no ID it did not get from the server
 * is ever adopted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateId } from '../../src/index.js';
import {
  type AppProcess,
  cartOf,
  freePort,
  spawnServer,
  startServer,
  stopAll,
  Visitor,
} from './harness.js';

const ID = /^[A-Za-z0-9_-]{43}$/;

afterAll(async () => {
  await stopAll();
});

/** A request that sends no cookie and follows no redirect, unless `init` adds a cookie. */
function send(base: string, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(new URL(path, base), {
    ...init,
    redirect: 'manual',
    signal: AbortSignal.timeout(10_000),
  });
}

async function page(
  base: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ res: Response; html: string }> {
  const res = await send(base, path, { headers });
  return { res, html: await res.text() };
}

function post(base: string, path: string, form: Record<string, string>): Promise<Response> {
  return send(base, path, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
}

/** Every link and form action of a page, as written (entities decoded). */
function links(html: string): string[] {
  return [...html.matchAll(/(?:href|action)="([^"]*)"/g)].map((m) =>
    m[1]!.replaceAll('&amp;', '&'),
  );
}

/** The `sessionid` each link carries (undefined for a link without one). */
function idsOf(html: string): (string | undefined)[] {
  return links(html).map(
    (link) => new URL(link, 'http://x.invalid').searchParams.get('sessionid') ?? undefined,
  );
}

/** The one ID all links of the page carry; fails when a link has none or another. */
function pageId(html: string): string {
  const ids = idsOf(html);
  expect(ids.length).toBeGreaterThan(0);
  const [first] = ids;
  expect(first).toMatch(ID);
  expect(ids.every((id) => id === first)).toBe(true);
  return first!;
}

/** The link or form action of a page leading to `path` (path only, query ignored). */
function linkTo(html: string, path: string): string {
  const found = links(html).find((link) => new URL(link, 'http://x.invalid').pathname === path);
  if (found === undefined) throw new Error(`no link to ${path} in the page`);
  return found;
}

function csrfOf(html: string): string {
  const token = /name="csrf" value="([^"]+)"/.exec(html)?.[1];
  if (token === undefined) throw new Error('no CSRF token in the page');
  return token;
}

function badge(html: string): number {
  return Number(/id="cart-count"[^>]*>(\d+)</.exec(html)?.[1]);
}

function transportText(html: string): string {
  const dd = /<dd id="session-transport">([\s\S]*?)<\/dd>/.exec(html)?.[1] ?? '';
  return dd
    .replace(/<[^>]+>/g, '')
    .replace(/\s+/g, ' ')
    .trim();
}

describe('shopping cart with SATCHEL_TRANSPORT=url, for clients without cookies', () => {
  let app: AppProcess;
  let base: string;

  beforeAll(async () => {
    app = await startServer({
      PORT: String(await freePort()),
      SATCHEL_STORE: 'memory',
      SATCHEL_TRANSPORT: 'url',
    });
    base = app.url;
  });

  afterAll(async () => {
    await app?.stop();
  });

  /** A cookie-less visitor with `items` in the cart (via the tutorial route); its ID. */
  async function visitorWith(...items: string[]): Promise<string> {
    let id: string | undefined;
    for (const item of items) {
      const path = `/add_to_cart/${item}/${id === undefined ? '' : `?sessionid=${id}`}`;
      const { res, html } = await page(base, path);
      expect(res.status).toBe(200);
      id = pageId(html);
    }
    return id!;
  }

  it('logs the transport at start-up', () => {
    expect(app.stdout()).toContain('Transport: url');
  });

  it('keeps the cart through the links, forms and redirects of the pages', async () => {
    const catalog = await page(base, '/');
    expect(catalog.res.status).toBe(200);
    expect(catalog.res.headers.get('referrer-policy')).toBe('no-referrer');
    expect(catalog.res.headers.get('cache-control')).toBe('private, no-store');
    // The cookie is offered; this client never sends it back.
    expect(catalog.res.headers.getSetCookie()).toHaveLength(1);
    const id = pageId(catalog.html);
    const csrf = csrfOf(catalog.html);
    expect(transportText(catalog.html)).toContain(
      'in use: this request came without the session cookie',
    );
    expect(catalog.html).toContain('id="url-warning"');

    const add = linkTo(catalog.html, '/cart/add');
    expect(add).toBe(`/cart/add?sessionid=${id}`);
    let res = await post(base, add, { csrf, item: 'rubber-duck', next: '/' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe(`/?sessionid=${id}`);
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    expect(res.headers.get('cache-control')).toBe('private, no-store');

    const after = await page(base, res.headers.get('location')!);
    expect(after.html).toContain('Added Rubber duck');
    expect(badge(after.html)).toBe(1);
    expect(pageId(after.html)).toBe(id);

    res = await post(base, linkTo(after.html, '/cart/add'), { csrf, item: 'coffee-mug' });
    expect(res.headers.get('location')).toBe(`/cart/?sessionid=${id}`);
    let cart = await page(base, res.headers.get('location')!);
    expect(cartOf(cart.html)).toEqual({ 'rubber-duck': 1, 'coffee-mug': 1 });

    // The tutorial's route, by the link the catalog shows.
    const tutorial = linkTo(after.html, '/add_to_cart/awesome-item/');
    expect(tutorial).toBe(`/add_to_cart/awesome-item/?sessionid=${id}`);
    cart = await page(base, tutorial);
    expect(cart.res.status).toBe(200);
    expect(cartOf(cart.html)).toEqual({ 'rubber-duck': 1, 'coffee-mug': 1, 'awesome-item': 1 });
    expect(pageId(cart.html)).toBe(id);

    // The cart page's forms: remove one, then clear.
    res = await post(base, linkTo(cart.html, '/cart/remove'), { csrf, item: 'coffee-mug' });
    expect(res.headers.get('location')).toBe(`/cart/?sessionid=${id}`);
    cart = await page(base, res.headers.get('location')!);
    expect(cartOf(cart.html)).toEqual({ 'rubber-duck': 1, 'awesome-item': 1 });
    res = await post(base, linkTo(cart.html, '/cart/clear'), { csrf });
    cart = await page(base, res.headers.get('location')!);
    expect(cartOf(cart.html)).toEqual({});
    expect(cart.html).toContain('Removed all 2 items from your cart');
    expect(cart.html).toContain('Your cart is empty.');

    // Without the ID in the URL there is nothing to find the session by.
    expect(badge((await page(base, '/')).html)).toBe(0);
  });

  it('checks the CSRF token of a form that carries the ID', async () => {
    const id = await visitorWith('rubber-duck');
    const other = pageId((await page(base, '/')).html);
    const otherToken = csrfOf((await page(base, `/?sessionid=${other}`)).html);
    const forms: Record<string, string>[] = [
      { item: 'coffee-mug' },
      { csrf: otherToken, item: 'coffee-mug' },
    ];
    for (const form of forms) {
      const res = await post(base, `/cart/add?sessionid=${id}`, form);
      expect(res.status).toBe(403);
      expect(await res.text()).toContain('Form expired');
    }
    expect(cartOf((await page(base, `/cart/?sessionid=${id}`)).html)).toEqual({ 'rubber-duck': 1 });
  });

  it('puts the ID in every link and form action of every page', async () => {
    const id = await visitorWith('rubber-duck');
    for (const [path, status] of [
      ['/', 200],
      ['/cart/', 200],
      ['/login', 200],
      ['/nope', 404],
      [`/add_to_cart/${'a'.repeat(101)}/`, 400],
    ] as const) {
      const { res, html } = await page(base, `${path}?sessionid=${id}`);
      expect(res.status, path).toBe(status);
      expect(pageId(html), path).toBe(id);
      expect(res.headers.get('referrer-policy'), path).toBe('no-referrer');
      expect(res.headers.get('cache-control'), path).toBe('private, no-store');
    }
  });

  it('carries the ID through the GET redirects too', async () => {
    const id = await visitorWith('rubber-duck');
    let res = await send(base, `/cart?sessionid=${id}`);
    expect(res.status).toBe(301);
    expect(res.headers.get('location')).toBe(`/cart/?sessionid=${id}`);
    expect(res.headers.get('cache-control')).toBe('private, no-store');
    res = await send(base, `/add_to_cart/sticker-pack?sessionid=${id}`);
    expect(res.status).toBe(301);
    expect(res.headers.get('location')).toBe(`/add_to_cart/sticker-pack/?sessionid=${id}`);
    res = await send(base, `/devices?sessionid=${id}`);
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe(`/login?next=%2Fdevices&sessionid=${id}`);
  });

  it('cycles the ID at login, so a link from before it is worthless, and ends it at logout', async () => {
    const id = await visitorWith('rubber-duck');
    const login = await page(base, `/login?next=%2Fdevices&sessionid=${id}`);
    const res = await post(base, linkTo(login.html, '/login'), {
      csrf: csrfOf(login.html),
      next: '/devices',
      username: 'demo',
      password: 'demo-password',
    });
    expect(res.status).toBe(303);
    const location = res.headers.get('location')!;
    const newId = /^\/devices\?sessionid=([A-Za-z0-9_-]{43})$/.exec(location)?.[1];
    expect(newId).toBeDefined();
    expect(newId).not.toBe(id);

    const devices = await page(base, location);
    expect(devices.res.status).toBe(200);
    expect(devices.html).toContain('Signed in as <strong>demo</strong>');
    expect(pageId(devices.html)).toBe(newId);
    expect(badge(devices.html)).toBe(1);

    // The ID from before the login: no session, no cart, not signed in.
    const old = await page(base, `/cart/?sessionid=${id}`);
    expect(cartOf(old.html)).toEqual({});
    expect(old.html).not.toContain('Signed in as');
    expect(old.html).not.toContain(id);

    const out = await post(base, linkTo(devices.html, '/logout'), { csrf: csrfOf(devices.html) });
    expect(out.status).toBe(303);
    expect(out.headers.get('location')).toBe('/');
    expect(cartOf((await page(base, `/cart/?sessionid=${newId}`)).html)).toEqual({});
  });

  it('never adopts a forged or malformed ?sessionid=, and never echoes it', async () => {
    const live = await visitorWith('rubber-duck');
    const forged = [
      generateId(),
      'A'.repeat(43),
      `${live.slice(0, 42)}${live.endsWith('A') ? 'B' : 'A'}`,
      `${live}x`,
      `${live} `,
      `${live.slice(0, 20)}.${live.slice(21)}`,
      '../../../../etc/passwd',
      `<script>alert(1)</script>`,
      'x'.repeat(4000),
    ];
    for (const value of forged) {
      const query = `?sessionid=${encodeURIComponent(value)}`;
      const cart = await page(base, `/cart/${query}`);
      expect(cart.res.status, value).toBe(200);
      expect(cartOf(cart.html), value).toEqual({});
      expect(cart.html, value).toContain('new (started by this request)');
      expect(cart.html, value).not.toContain(value.trim());
      expect(pageId(cart.html), value).not.toBe(value);

      // Adding with it starts a fresh session under a fresh ID...
      const added = await page(base, `/add_to_cart/coffee-mug/${query}`);
      expect(cartOf(added.html), value).toEqual({ 'coffee-mug': 1 });
      expect(added.html, value).not.toContain(value.trim());
      const fresh = pageId(added.html);
      expect([value, live]).not.toContain(fresh);
      // ...and the forged value still names nothing.
      expect(cartOf((await page(base, `/cart/${query}`)).html), value).toEqual({});
      expect(cartOf((await page(base, `/cart/?sessionid=${fresh}`)).html)).toEqual({
        'coffee-mug': 1,
      });
    }
    expect(cartOf((await page(base, `/cart/?sessionid=${live}`)).html)).toEqual({
      'rubber-duck': 1,
    });
  });

  it('ignores the URL when the request carries a session cookie', async () => {
    const viaUrl = await visitorWith('rubber-duck');
    const withCookie = new Visitor(base);
    // Its first page came without a cookie: links carry the ID, and the cookie is set.
    const first = await withCookie.page('/add_to_cart/coffee-mug/');
    expect(withCookie.cookie).toMatch(ID);
    expect(pageId(first.html)).toBe(withCookie.cookie);
    // From then on the cookie carries it: no ID in links, and the URL's is ignored.
    const res = await withCookie.request(`/cart/?sessionid=${viaUrl}`);
    const html = await res.text();
    expect(cartOf(html)).toEqual({ 'coffee-mug': 1 });
    expect(html).not.toContain(viaUrl);
    expect(idsOf(html).every((id) => id === undefined)).toBe(true);
    expect(transportText(html)).toContain('not needed: this browser sent the session cookie');
    expect(html).not.toContain('id="url-warning"');
    expect(res.headers.get('referrer-policy')).toBe('same-origin');
    expect(res.headers.get('cache-control')).toBe('no-store');

    // A cookie that names no session still wins over a live ID in the URL.
    for (const cookie of [`sessionid=${generateId()}`, 'sessionid=junk']) {
      const other = await page(base, `/cart/?sessionid=${viaUrl}`, { cookie });
      expect(cartOf(other.html), cookie).toEqual({});
      expect(other.html, cookie).not.toContain(viaUrl);
    }
    expect(cartOf((await page(base, `/cart/?sessionid=${viaUrl}`)).html)).toEqual({
      'rubber-duck': 1,
    });
  });

  it('gives visitors arriving at once each their own ID, never another one', async () => {
    const items = Array.from({ length: 20 }, (_, i) => `item-${i}`);
    const pages = await Promise.all(items.map((item) => page(base, `/add_to_cart/${item}/`)));
    const ids = pages.map(({ html }) => pageId(html));
    expect(new Set(ids).size).toBe(items.length);
    expect(pages.map(({ html }) => cartOf(html))).toEqual(items.map((item) => ({ [item]: 1 })));
    const again = await Promise.all(ids.map((id) => page(base, `/?sessionid=${id}`)));
    expect(again.map(({ html }) => pageId(html))).toEqual(ids);
    const carts = await Promise.all(ids.map((id) => page(base, `/cart/?sessionid=${id}`)));
    expect(carts.map(({ html }) => cartOf(html))).toEqual(items.map((item) => ({ [item]: 1 })));
  });
});

describe('shopping cart with the default cookie transport', () => {
  it('never reads a ?sessionid= and never puts one in a link', async () => {
    const app = await startServer({ PORT: String(await freePort()), SATCHEL_STORE: 'memory' });
    try {
      expect(app.stdout()).toContain('Transport: cookie');
      const visitor = new Visitor(app.url);
      await visitor.page('/add_to_cart/awesome-item/');
      const live = visitor.cookie!;
      expect(live).toMatch(ID);
      const csrf = await visitor.csrf('/cart/');

      const { res, html } = await page(app.url, `/cart/?sessionid=${live}`);
      expect(cartOf(html)).toEqual({});
      expect(html).not.toContain(live);
      expect(idsOf(html).every((id) => id === undefined)).toBe(true);
      expect(transportText(html)).toBe('cookie');
      expect(res.headers.get('referrer-policy')).toBe('same-origin');
      // A form posted with the ID in the URL and the right token finds no session.
      const posted = await post(app.url, `/cart/add?sessionid=${live}`, {
        csrf,
        item: 'coffee-mug',
      });
      expect(posted.status).toBe(403);
      expect(cartOf((await visitor.page('/cart/')).html)).toEqual({ 'awesome-item': 1 });
    } finally {
      await app.stop();
    }
  });
});

describe('shopping cart with SATCHEL_TRANSPORT=header', () => {
  it('round-trips the ID in Authorization and Session-Id, with no cookie, and ignores the URL', async () => {
    const app = await startServer({
      PORT: String(await freePort()),
      SATCHEL_STORE: 'memory',
      SATCHEL_TRANSPORT: 'header',
    });
    try {
      const first = await page(app.url, '/add_to_cart/awesome-item/');
      expect(first.res.headers.getSetCookie()).toEqual([]);
      const id = first.res.headers.get('session-id')!;
      expect(id).toMatch(ID);
      expect(first.html).not.toContain(id);
      expect(transportText(first.html)).toBe(
        'header: Authorization: Session &lt;id&gt; in, Session-Id out',
      );
      expect(idsOf(first.html).every((link) => link === undefined)).toBe(true);

      const auth = { authorization: `Session ${id}` };
      const second = await page(app.url, '/add_to_cart/rubber-duck/', auth);
      expect(cartOf(second.html)).toEqual({ 'awesome-item': 1, 'rubber-duck': 1 });
      expect(second.res.headers.get('vary')).toContain('Authorization');
      const res = await send(app.url, '/cart/add', {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ csrf: csrfOf(second.html), item: 'coffee-mug' }).toString(),
      });
      expect(res.status).toBe(303);
      expect(res.headers.get('location')).toBe('/cart/');

      // Neither the URL nor a cookie carries the session here; a forged header starts afresh.
      const attempts: Record<string, string>[] = [
        {},
        { cookie: `sessionid=${id}` },
        { authorization: `Session ${generateId()}` },
      ];
      for (const headers of attempts) {
        const other = await page(app.url, `/cart/?sessionid=${id}`, headers);
        expect(cartOf(other.html), JSON.stringify(headers)).toEqual({});
      }
      expect(cartOf((await page(app.url, '/cart/', auth)).html)).toEqual({
        'awesome-item': 1,
        'rubber-duck': 1,
        'coffee-mug': 1,
      });
    } finally {
      await app.stop();
    }
  });
});

describe('starting the server with SATCHEL_TRANSPORT', () => {
  it('exits 2 naming the choices when SATCHEL_TRANSPORT is unknown', async () => {
    const run = spawnServer({
      SATCHEL_STORE: 'memory',
      SATCHEL_TRANSPORT: 'carrier-pigeon',
      PORT: '0',
    });
    expect(await run.exited).toEqual({ code: 2, signal: null });
    expect(run.err().trim()).toBe(
      'shopping-cart: unknown SATCHEL_TRANSPORT "carrier-pigeon"; expected one of: cookie, url, header',
    );
  });

  it('exits 2 when the URL transport is asked of the cookie store', async () => {
    const run = spawnServer({
      SATCHEL_STORE: 'cookie',
      SATCHEL_SECRET: 'x'.repeat(32),
      SATCHEL_TRANSPORT: 'url',
      PORT: '0',
    });
    expect(await run.exited).toEqual({ code: 2, signal: null });
    expect(run.err().trim()).toBe(
      'shopping-cart: SATCHEL_TRANSPORT=url needs a server-side store; SATCHEL_STORE=cookie keeps the whole session in the cookie, which does not belong in URLs',
    );
  });
});
