/**
 * SATCHEL_TRANSPORT=url in a real browser: Debian's Chromium, driven through
 * playwright-core like cart.browser.test.ts, with "Block all cookies" set in
 * its profile (the content setting a user picks in chrome://settings/cookies).
 * Such a browser keeps its cart through the session ID in its links.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  badgeOn as badge,
  cartOn as cart,
  haveChromium,
  LAUNCH,
  launchChromium,
  requireChromium,
  tearDown,
  VIEWPORT,
  withTimeouts,
} from './browser.js';
import { type AppProcess, freePort, ROOT, startServer } from './harness.js';

const SCREENSHOT = join(ROOT, 'test-results', 'url-transport.png');
const ID = /^[A-Za-z0-9_-]{43}$/;

requireChromium('URL transport in Chromium', 'URL transport browser tests');

/** What a cookie-refusing browser sent and was sent, request by request. */
interface Exchange {
  url: string;
  method: string;
  cookie: string | undefined;
  referer: string | undefined;
  status: number;
  setCookie: boolean;
  referrerPolicy: string | undefined;
  cacheControl: string | undefined;
}

interface CookielessBrowser {
  context: BrowserContext;
  page: Page;
  /** The exchanges so far with the app, once their headers are in. */
  exchanges(): Promise<Exchange[]>;
}

describe.skipIf(!haveChromium)('URL transport in Chromium', () => {
  let dir: string;
  let app: AppProcess;
  let browser: Browser;
  const cookieless: CookielessBrowser[] = [];

  const url = (path: string) => new URL(path, app.url).href;

  /**
   * A Chromium whose profile blocks all cookies: it is offered the session
   * cookie on every response and never stores or sends it. Its own process,
   * as a profile's content settings belong to a persistent context.
   */
  async function launchCookieless(): Promise<CookielessBrowser> {
    const profile = await mkdtemp(join(dir, 'profile-'));
    await mkdir(join(profile, 'Default'));
    await writeFile(
      join(profile, 'Default', 'Preferences'),
      JSON.stringify({ profile: { default_content_setting_values: { cookies: 2 } } }),
    );
    const context = withTimeouts(
      await chromium.launchPersistentContext(profile, { ...LAUNCH, viewport: VIEWPORT }),
    );
    const seen: Promise<Exchange>[] = [];
    context.on('response', (response) => {
      const request = response.request();
      seen.push(
        Promise.all([request.allHeaders(), response.allHeaders()]).then(([sent, received]) => ({
          url: request.url(),
          method: request.method(),
          cookie: sent.cookie,
          referer: sent.referer,
          status: response.status(),
          setCookie: received['set-cookie'] !== undefined,
          referrerPolicy: received['referrer-policy'],
          cacheControl: received['cache-control'],
        })),
      );
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const exchanges = async () =>
      (await Promise.all(seen)).filter((e) => e.url.startsWith(app.url));
    const launched = { context, page, exchanges };
    cookieless.push(launched);
    return launched;
  }

  /** The session ID in the address bar. */
  function idInAddressBar(p: Page): string | null {
    return new URL(p.url()).searchParams.get('sessionid');
  }

  /** Every link and form action of the page, resolved. */
  async function linksOf(p: Page): Promise<string[]> {
    const hrefs = await p.locator('a[href]').evaluateAll((as) => as.map((a) => (a as any).href));
    const actions = await p.locator('form').evaluateAll((fs) => fs.map((f) => (f as any).action));
    return [...hrefs, ...actions] as string[];
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'satchel-url-browser-'));
    app = await startServer({
      PORT: String(await freePort()),
      SATCHEL_STORE: 'sqlite',
      SATCHEL_SQLITE_PATH: join(dir, 'sessions.db'),
      SATCHEL_TRANSPORT: 'url',
    });
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    for (const { context } of cookieless) await context.close().catch(() => {});
    await tearDown(browser, dir);
  }, 30_000);

  it('keeps the cart of a browser that blocks cookies, by the ID in its URLs', async () => {
    const { context, page, exchanges } = await launchCookieless();
    await page.goto(url('/'));
    const id = idInAddressBar(page);
    // The first page came from a URL without an ID; its links carry the new one.
    expect(id).toBeNull();
    const links = await linksOf(page);
    expect(links.length).toBeGreaterThan(5);
    const ids = new Set(links.map((link) => new URL(link).searchParams.get('sessionid')));
    expect(ids.size).toBe(1);
    const [sessionId] = ids;
    expect(sessionId).toMatch(ID);
    expect(await badge(page)).toBe('0');
    expect(await page.locator('#session-transport').textContent()).toContain(
      'in use: this request came without the session cookie',
    );

    // Two adds through the CSRF-protected POST forms.
    await page.getByRole('button', { name: 'Add Rubber duck to cart' }).click();
    await page.waitForURL(url(`/?sessionid=${sessionId}`));
    expect(await page.locator('.flash').textContent()).toBe('Added Rubber duck');
    expect(await badge(page)).toBe('1');
    await page.getByRole('button', { name: 'Add Coffee mug to cart' }).click();
    await page.waitForURL(url(`/?sessionid=${sessionId}`));
    expect(await badge(page)).toBe('2');

    // One through the tutorial's route, by the catalog's link.
    await page.getByRole('link', { name: '/add_to_cart/awesome-item/' }).click();
    await page.waitForURL(url(`/add_to_cart/awesome-item/?sessionid=${sessionId}`));
    expect(await page.locator('h1').textContent()).toBe('Your Shopping Cart');
    expect(await page.locator('.flash').textContent()).toBe('Added Awesome item');
    const expected = { 'rubber-duck': 1, 'coffee-mug': 1, 'awesome-item': 1 };
    expect(await cart(page)).toEqual(expected);

    // Navigate by the page's links and reload: the cart stays.
    await page.getByRole('link', { name: 'Catalog' }).click();
    await page.waitForURL(url(`/?sessionid=${sessionId}`));
    expect(await badge(page)).toBe('3');
    await page.locator('a.cart-link').click();
    await page.waitForURL(url(`/cart/?sessionid=${sessionId}`));
    await page.reload();
    expect(idInAddressBar(page)).toBe(sessionId);
    expect(await cart(page)).toEqual(expected);
    expect(await badge(page)).toBe('3');
    await page.getByRole('link', { name: 'Keep shopping' }).click();
    await page.waitForURL(url(`/?sessionid=${sessionId}`));
    expect(await badge(page)).toBe('3');

    // The browser really refused the cookie it was offered on every response.
    expect(await context.cookies()).toEqual([]);
    const pages = await exchanges();
    expect(pages.length).toBeGreaterThanOrEqual(8);
    expect(pages.some((e) => e.setCookie)).toBe(true);
    expect(pages.filter((e) => e.cookie !== undefined)).toEqual([]);
    // Every response carried the ID in its URL or links: no Referer, no caching.
    for (const e of pages) {
      expect(e.referrerPolicy, e.url).toBe('no-referrer');
      expect(e.cacheControl, e.url).toBe('private, no-store');
      expect(e.referer, e.url).toBeUndefined();
    }
    expect(pages.filter((e) => e.method === 'POST')).toHaveLength(2);

    await mkdir(join(ROOT, 'test-results'), { recursive: true });
    await page.locator('a.cart-link').click();
    await page.waitForURL(url(`/cart/?sessionid=${sessionId}`));
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
  });

  it('removes one item and clears the cart with the forms of a URL-carried session', async () => {
    const { page } = cookieless[0]!;
    const sessionId = idInAddressBar(page);
    expect(sessionId).toMatch(ID);
    await page.getByRole('button', { name: 'Remove one Coffee mug' }).click();
    await page.waitForURL(url(`/cart/?sessionid=${sessionId}`));
    expect(await page.locator('.flash').textContent()).toBe('Removed one Coffee mug');
    expect(await cart(page)).toEqual({ 'rubber-duck': 1, 'awesome-item': 1 });
  });

  it('gives a second cookie-blocking browser its own empty cart', async () => {
    const first = cookieless[0]!;
    const firstId = idInAddressBar(first.page);
    const { context, page } = await launchCookieless();
    await page.goto(url('/cart/'));
    expect(await cart(page)).toEqual({});
    expect(await badge(page)).toBe('0');
    await page.getByRole('link', { name: 'Browse the catalog' }).click();
    await page.waitForURL(/\?sessionid=/);
    const secondId = idInAddressBar(page);
    expect(secondId).toMatch(ID);
    expect(secondId).not.toBe(firstId);
    await page.getByRole('button', { name: 'Add Sticker pack to cart' }).click();
    await page.waitForURL(url(`/?sessionid=${secondId}`));
    await page.locator('a.cart-link').click();
    await page.waitForURL(url(`/cart/?sessionid=${secondId}`));
    expect(await cart(page)).toEqual({ 'sticker-pack': 1 });
    expect(await page.content()).not.toContain(firstId);
    expect(await context.cookies()).toEqual([]);

    // The first browser's cart is untouched.
    await first.page.reload();
    expect(await cart(first.page)).toEqual({ 'rubber-duck': 1, 'awesome-item': 1 });
  });

  it('leaves the links of a browser that accepts cookies alone once it has the cookie', async () => {
    const context = await browser.newContext({ viewport: VIEWPORT });
    try {
      context.setDefaultTimeout(10_000);
      const page = await context.newPage();
      await page.goto(url('/'));
      const cookies = await context.cookies(app.url);
      const session = cookies.find((c) => c.name === 'sessionid');
      expect(session?.value).toMatch(ID);
      expect(session!.httpOnly).toBe(true);

      await page.getByRole('button', { name: 'Add Rubber duck to cart' }).click();
      // The ID lives in the cookie now: the redirect and every link carry none.
      await page.waitForURL(url('/'));
      expect(await badge(page)).toBe('1');
      const links = await linksOf(page);
      expect(links.length).toBeGreaterThan(5);
      expect(links.filter((link) => link.includes('sessionid='))).toEqual([]);
      expect(await page.content()).not.toContain(session!.value);
      expect(await page.locator('#session-transport').textContent()).toContain(
        'not needed: this browser sent the session cookie',
      );
      const response = await page.reload();
      expect(response?.headers()['referrer-policy']).toBe('same-origin');
      expect(response?.headers()['cache-control']).toBe('no-store');

      await page.locator('a.cart-link').click();
      await page.waitForURL(url('/cart/'));
      expect(await cart(page)).toEqual({ 'rubber-duck': 1 });
    } finally {
      await context.close();
    }
  });
});
