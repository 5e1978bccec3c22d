/**
 * The shopping cart in a real browser: Debian's Chromium driven through
 * playwright-core against the app running as its own process.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  badgeOn,
  cartOn,
  haveChromium,
  launchChromium,
  newContext,
  requireChromium,
  tearDown,
} from './browser.js';
import { type AppProcess, freePort, ROOT, startServer } from './harness.js';

const SCREENSHOT = join(ROOT, 'test-results', 'cart.png');

requireChromium('shopping cart in Chromium', 'browser tests');

describe.skipIf(!haveChromium)('shopping cart in Chromium', () => {
  let dir: string;
  let env: Record<string, string>;
  let app: AppProcess;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;

  const cart = (p: Page = page) => cartOn(p);
  const badge = (p: Page = page) => badgeOn(p);

  const url = (path: string) => new URL(path, app.url).href;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'satchel-cart-browser-'));
    env = {
      PORT: String(await freePort()),
      SATCHEL_STORE: 'sqlite',
      SATCHEL_SQLITE_PATH: join(dir, 'sessions.db'),
    };
    app = await startServer(env);
    browser = await launchChromium();
    context = await newContext(browser);
    page = await context.newPage();
  }, 60_000);

  afterAll(() => tearDown(browser, dir), 30_000);

  it('adds items from the catalog and the tutorial route, and still shows them after a reload', async () => {
    await page.goto(url('/'));
    expect(await page.locator('article.product').count()).toBeGreaterThanOrEqual(3);
    expect(await badge()).toBe('0');

    await page.getByRole('button', { name: 'Add Rubber duck to cart' }).click();
    await page.waitForURL(url('/'));
    expect(await page.locator('.flash').textContent()).toBe('Added Rubber duck');
    expect(await badge()).toBe('1');

    await page.getByRole('button', { name: 'Add Awesome item to cart' }).click();
    await page.waitForURL(url('/'));
    await page.goto(url('/add_to_cart/awesome-item/'));
    expect(await page.locator('h1').textContent()).toBe('Your Shopping Cart');
    expect(await page.locator('.flash').textContent()).toBe('Added Awesome item');
    expect(await cart()).toEqual({ 'rubber-duck': 1, 'awesome-item': 2 });
    expect(await page.locator('li[data-item="awesome-item"] .qty').textContent()).toBe('x2');

    // Reloading the tutorial's GET route would add again (it is a GET that
    // changes state, kept as the tutorial has it); reload the cart page instead.
    await page.goto(url('/cart/'));
    await page.reload();
    expect(await cart()).toEqual({ 'rubber-duck': 1, 'awesome-item': 2 });
    expect(await badge()).toBe('3');
  });

  it('keeps the session ID in an HttpOnly, SameSite=Lax cookie, out of the page', async () => {
    const cookies = await context.cookies(app.url);
    const session = cookies.find((c) => c.name === 'sessionid');
    expect(session).toBeDefined();
    expect(session!.httpOnly).toBe(true);
    expect(session!.sameSite).toBe('Lax');
    expect(session!.path).toBe('/');
    expect(session!.expires).toBeGreaterThan(Date.now() / 1000);
    expect(await page.evaluate('document.cookie')).toBe('');
    expect(await page.content()).not.toContain(session!.value);
    expect(await page.locator('#session-store').textContent()).toContain('sqlite');
  });

  it('removes one item and clears the cart', async () => {
    await page.goto(url('/cart/'));
    await page.getByRole('button', { name: 'Remove one Awesome item' }).click();
    await page.waitForURL(url('/cart/'));
    expect(await page.locator('.flash').textContent()).toBe('Removed one Awesome item');
    expect(await cart()).toEqual({ 'rubber-duck': 1, 'awesome-item': 1 });

    await page.getByRole('button', { name: 'Clear cart' }).click();
    await page.waitForURL(url('/cart/'));
    expect(await cart()).toEqual({});
    expect(await page.locator('.empty').textContent()).toBe('Your cart is empty.');
    expect(await badge()).toBe('0');
  });

  it('gives a second browser context its own empty cart', async () => {
    await page.goto(url('/add_to_cart/coffee-mug/'));
    const other = await browser.newContext();
    try {
      const otherPage = await other.newPage();
      await otherPage.goto(url('/cart/'));
      expect(await cart(otherPage)).toEqual({});
      expect(await badge(otherPage)).toBe('0');
      await otherPage.goto(url('/add_to_cart/sticker-pack/'));
      expect(await cart(otherPage)).toEqual({ 'sticker-pack': 1 });
    } finally {
      await other.close();
    }
    await page.goto(url('/cart/'));
    expect(await cart()).toEqual({ 'coffee-mug': 1 });
  });

  it('keeps both items when two pages add at once', async () => {
    const first = await context.newPage();
    const second = await context.newPage();
    try {
      await Promise.all([
        first.goto(url('/add_to_cart/left-tab-item/')),
        second.goto(url('/add_to_cart/right-tab-item/')),
      ]);
      await page.goto(url('/cart/'));
      expect(await cart()).toEqual({ 'coffee-mug': 1, 'left-tab-item': 1, 'right-tab-item': 1 });
    } finally {
      await first.close();
      await second.close();
    }
  });

  it('still has the cart after the server restarts', async () => {
    await page.goto(url('/'));
    await page.getByRole('button', { name: 'Add Awesome item to cart' }).click();
    await page.waitForURL(url('/'));

    expect(await app.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    app = await startServer(env);

    await page.goto(url('/cart/'));
    expect(await cart()).toEqual({
      'coffee-mug': 1,
      'left-tab-item': 1,
      'right-tab-item': 1,
      'awesome-item': 1,
    });
    expect(await page.locator('#session-panel').textContent()).toContain('loaded from the store');

    await page.goto(url('/'));
    await page.getByRole('button', { name: 'Add Sticker pack to cart' }).click();
    await page.waitForURL(url('/'));
    await page.goto(url('/add_to_cart/awesome-item/'));
    await mkdir(join(ROOT, 'test-results'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
  });
});
