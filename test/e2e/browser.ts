/**
 * Debian's Chromium for the browser suites, driven through playwright-core:
 * where it is, how it is launched, the rule for a missing one, and helpers
 * that read the shopping-cart pages.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import {
  type Browser,
  type BrowserContext,
  type BrowserContextOptions,
  chromium,
  type Page,
} from 'playwright-core';
import { describe, it } from 'vitest';
import { stopAll } from './harness.js';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const haveChromium = existsSync(CHROMIUM);

/** What every launch of Chromium shares: the executable, the flags and the timeout. */
export const LAUNCH = {
  executablePath: CHROMIUM,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ],
  timeout: 30_000,
};

export const VIEWPORT = { width: 1200, height: 800 };

/**
 * When Chromium is missing: under CI=true one failing case in a suite `name`,
 * elsewhere a printed reason saying `what` is skipped. The suites themselves
 * use `describe.skipIf(!haveChromium)`.
 */
export function requireChromium(name: string, what: string): void {
  if (!haveChromium && process.env.CI === 'true') {
    describe(name, () => {
      it('needs Chromium on CI', () => {
        throw new Error(`${CHROMIUM} is missing; install it with: apt-get install -y chromium`);
      });
    });
  } else if (!haveChromium) {
    console.warn(
      `[e2e] skipping the ${what}: ${CHROMIUM} is missing (apt-get install -y chromium)`,
    );
  }
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch(LAUNCH);
}

/** The suites' default timeouts on `context`. */
export function withTimeouts<T extends BrowserContext>(context: T): T {
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(15_000);
  return context;
}

/** A new context of `browser` at VIEWPORT with the suites' timeouts. */
export async function newContext(
  browser: Browser,
  options: BrowserContextOptions = {},
): Promise<BrowserContext> {
  return withTimeouts(await browser.newContext({ viewport: VIEWPORT, ...options }));
}

/** Item → quantity as the cart page shows it. */
export async function cartOn(page: Page): Promise<Record<string, number>> {
  const lines = await page
    .locator('ul.cart li')
    .evaluateAll((items) =>
      items.map((li) => [
        li.getAttribute('data-item') ?? '',
        li.querySelector('.qty')?.textContent ?? '',
      ]),
    );
  return Object.fromEntries(lines.map(([item, qty]) => [item, Number(qty!.replace('x', ''))]));
}

/** The cart badge's count as text. */
export async function badgeOn(page: Page): Promise<string> {
  return (await page.locator('#cart-count').textContent()) ?? '';
}

/** Opens the catalog at `base` and presses "Add <name> to cart"; back on the catalog after. */
export async function addFromCatalog(page: Page, base: string, name: string): Promise<void> {
  const catalog = new URL('/', base).href;
  await page.goto(catalog);
  await page.getByRole('button', { name: `Add ${name} to cart` }).click();
  await page.waitForURL(catalog);
}

/** Follows the catalog's "Log in" link and signs in as demo / demo-password; on the catalog after. */
export async function logIn(page: Page, base: string): Promise<void> {
  const catalog = new URL('/', base).href;
  await page.goto(catalog);
  await page.locator('#login-link').click();
  await page.waitForURL(new URL('/login', base).href);
  await page.getByLabel('Username').fill('demo');
  await page.getByLabel('Password').fill('demo-password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(catalog);
}

/** For afterAll: closes `browser`, stops every app started and removes `dir`. */
export async function tearDown(
  browser: Browser | undefined,
  dir: string | undefined,
): Promise<void> {
  await browser?.close();
  await stopAll();
  if (dir) await rm(dir, { recursive: true, force: true });
}
