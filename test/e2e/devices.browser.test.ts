/**
 * Login, "Your devices" and "sign out everywhere else" in a real browser:
 * Debian's Chromium driven through playwright-core, two browser contexts
 * signed in as the same user against the app running as its own process.
 */
import { mkdir, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addFromCatalog,
  cartOn,
  haveChromium,
  launchChromium,
  logIn,
  newContext as newBrowserContext,
  requireChromium,
  tearDown,
} from './browser.js';
import { type AppProcess, freePort, ROOT, startServer } from './harness.js';

const SCREENSHOT = join(ROOT, 'test-results', 'devices.png');
/** Two real browsers' User-Agent strings, as a laptop and a phone send them. */
const DEVICE_A =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
const DEVICE_B =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1';
const NAME_A = 'Chrome on Linux';
const NAME_B = 'Safari on iOS';

requireChromium('login and devices in Chromium', 'devices browser tests');

describe.skipIf(!haveChromium)('login and devices in Chromium', () => {
  let dir: string;
  let app: AppProcess;
  let browser: Browser;
  let a: BrowserContext;
  let b: BrowserContext;
  let pageA: Page;
  let pageB: Page;

  const url = (path: string) => new URL(path, app.url).href;

  function newContext(userAgent?: string): Promise<BrowserContext> {
    return newBrowserContext(browser, userAgent !== undefined ? { userAgent } : {});
  }

  /** Item → quantity as the cart page shows it, after opening it. */
  async function cart(page: Page): Promise<Record<string, number>> {
    await page.goto(url('/cart/'));
    return cartOn(page);
  }

  /** Signs in as demo from the catalog's "Log in" link. */
  async function signIn(page: Page): Promise<void> {
    await logIn(page, app.url);
    expect(await page.locator('#signed-in').textContent()).toBe('Signed in as demo');
  }

  /** The devices page's rows: the device's name, its raw User-Agent (on hover) and whether it is this one. */
  async function devices(
    page: Page,
  ): Promise<{ name: string; userAgent: string; current: boolean }[]> {
    await page.goto(url('/devices'));
    return page.locator('tr.device').evaluateAll((rows) =>
      rows.map((row) => ({
        name: row.querySelector('.device-name .ua')?.textContent?.trim() ?? '',
        userAgent: row.querySelector('.device-name .ua')?.getAttribute('title') ?? '',
        current: row.classList.contains('current'),
      })),
    );
  }

  async function sessionCookie(context: BrowserContext): Promise<string | undefined> {
    return (await context.cookies(app.url)).find((c) => c.name === 'sessionid')?.value;
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'satchel-devices-browser-'));
    app = await startServer({
      PORT: String(await freePort()),
      SATCHEL_STORE: 'sqlite',
      SATCHEL_SQLITE_PATH: join(dir, 'sessions.db'),
    });
    browser = await launchChromium();
    a = await newContext(DEVICE_A);
    b = await newContext(DEVICE_B);
    pageA = await a.newPage();
    pageB = await b.newPage();
  }, 60_000);

  afterAll(() => tearDown(browser, dir), 30_000);

  it('signs the other browser out everywhere else: its next request is signed out, its cart gone', async () => {
    await signIn(pageA);
    await signIn(pageB);
    await addFromCatalog(pageB, app.url, 'Sticker pack');
    await addFromCatalog(pageA, app.url, 'Rubber duck');
    await addFromCatalog(pageA, app.url, 'Coffee mug');
    expect(await cart(pageB)).toEqual({ 'sticker-pack': 1 });

    const listed = await devices(pageA);
    expect(listed.sort((x, y) => x.name.localeCompare(y.name))).toEqual([
      { name: NAME_A, userAgent: DEVICE_A, current: true },
      { name: NAME_B, userAgent: DEVICE_B, current: false },
    ]);
    // The raw string is what a mouse pointer resting on the name shows.
    await pageA.locator('tr.current .ua').hover();
    expect(await pageA.locator('tr.current .ua').getAttribute('title')).toBe(DEVICE_A);
    expect(await pageA.locator('tr.current .this-device').textContent()).toBe('This device');
    await mkdir(join(ROOT, 'test-results'), { recursive: true });
    await pageA.screenshot({ path: SCREENSHOT, fullPage: true });

    await pageA.getByRole('button', { name: 'Sign out everywhere else' }).click();
    await pageA.waitForURL(url('/devices'));
    expect(await pageA.locator('.flash').textContent()).toBe('Signed out 1 other device');
    expect(await devices(pageA)).toEqual([{ name: NAME_A, userAgent: DEVICE_A, current: true }]);

    // B's very next request: signed out and told so, once; the cart went with the session.
    await pageB.goto(url('/cart/'));
    expect(await pageB.locator('.flash').allTextContents()).toEqual([
      'You were signed out on this device from another device.',
    ]);
    expect(await pageB.locator('#login-link').isVisible()).toBe(true);
    expect(await pageB.locator('#signed-in').count()).toBe(0);
    expect(await pageB.locator('.empty').textContent()).toBe('Your cart is empty.');
    expect(await pageB.locator('#cart-count').textContent()).toBe('0');
    await pageB.goto(url('/devices'));
    expect(pageB.url()).toBe(url('/login?next=%2Fdevices'));
    expect(await pageB.locator('.flash').count()).toBe(0);

    // A stays signed in, with its cart.
    expect(await cart(pageA)).toEqual({ 'rubber-duck': 1, 'coffee-mug': 1 });
    expect(await pageA.locator('#signed-in').textContent()).toBe('Signed in as demo');
  });

  it('signs out one other device from the list', async () => {
    await signIn(pageB);
    expect((await devices(pageA)).map((d) => d.name).sort()).toEqual([NAME_A, NAME_B]);
    await pageA.getByRole('button', { name: `Sign out this device: ${NAME_B}` }).click();
    await pageA.waitForURL(url('/devices'));
    expect(await pageA.locator('.flash').textContent()).toBe(`Signed out ${NAME_B}`);
    expect(await devices(pageA)).toEqual([{ name: NAME_A, userAgent: DEVICE_A, current: true }]);

    await pageB.reload();
    expect(await pageB.locator('.flash').textContent()).toBe(
      'You were signed out on this device from another device.',
    );
    expect(await pageB.locator('#login-link').isVisible()).toBe(true);
    expect(await pageA.locator('#signed-in').textContent()).toBe('Signed in as demo');
  });

  it('keeps the anonymous cart through login under a new session ID, and logout empties it', async () => {
    const c = await newContext();
    try {
      const page = await c.newPage();
      await addFromCatalog(page, app.url, 'Awesome item');
      const anonymous = await sessionCookie(c);
      expect(anonymous).toBeDefined();

      await signIn(page);
      expect(await page.locator('.flash').textContent()).toBe('Signed in as demo');
      expect(await page.locator('#cart-count').textContent()).toBe('1');
      const signedIn = await sessionCookie(c);
      expect(signedIn).toBeDefined();
      expect(signedIn).not.toBe(anonymous);
      expect(await cart(page)).toEqual({ 'awesome-item': 1 });

      await page.getByRole('button', { name: 'Log out' }).click();
      await page.waitForURL(url('/'));
      // Logging out here is not being signed out from elsewhere: no notice.
      expect(await page.locator('.flash').count()).toBe(0);
      expect(await page.locator('#login-link').isVisible()).toBe(true);
      expect(await page.locator('#cart-count').textContent()).toBe('0');
      expect(await sessionCookie(c)).not.toBe(signedIn);
      expect(await cart(page)).toEqual({});
    } finally {
      await c.close();
    }
  });
});
