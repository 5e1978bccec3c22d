/**
 * The shopping cart on a phone (390 px wide, an iPhone 12 to 15) and on a
 * desktop (1280 px), in Debian's Chromium through playwright-core: layout
 * facts measured in the page, screenshots saved under test-results/ for a
 * person to look at, and the cart's controls (+1, Remove one, Clear cart).
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
  newContext,
  requireChromium,
  tearDown,
} from './browser.js';
import { type AppProcess, freePort, ROOT, startServer } from './harness.js';

const RESULTS = join(ROOT, 'test-results');

const VIEWPORTS = [
  { label: 'phone', width: 390, height: 844 },
  { label: 'desktop', width: 1280, height: 800 },
] as const;

/** A custom item without spaces, as long as the demo allows: it must wrap, not overflow. */
const LONG_ITEM = 'x'.repeat(100);

requireChromium('the demo on a phone and a desktop', 'phone layout browser tests');

interface Box {
  text: string;
  height: number;
  lineHeight: number;
  left: number;
  right: number;
}

/** Layout facts of the page as rendered. */
async function layout(page: Page): Promise<{
  scrollWidth: number;
  innerWidth: number;
  names: Box[];
  buttons: Box[];
}> {
  // A string, as the tests are type-checked without the DOM library.
  return page.evaluate(`(() => {
    const box = (el) => {
      const rect = el.getBoundingClientRect();
      return {
        text: (el.textContent ?? '').trim(),
        height: rect.height,
        lineHeight: Number.parseFloat(getComputedStyle(el).lineHeight),
        left: rect.left,
        right: rect.right,
      };
    };
    return {
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
      names: [...document.querySelectorAll('ul.cart .name')].map(box),
      buttons: [...document.querySelectorAll('main button')].map(box),
    };
  })()`);
}

describe.skipIf(!haveChromium)('the demo on a phone and a desktop', () => {
  let dir: string;
  let app: AppProcess;
  let browser: Browser;

  const url = (path: string) => new URL(path, app.url).href;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'satchel-phone-browser-'));
    app = await startServer({
      PORT: String(await freePort()),
      SATCHEL_STORE: 'sqlite',
      SATCHEL_SQLITE_PATH: join(dir, 'sessions.db'),
    });
    browser = await launchChromium();
    await mkdir(RESULTS, { recursive: true });
  }, 60_000);

  afterAll(() => tearDown(browser, dir), 30_000);

  for (const viewport of VIEWPORTS) {
    describe(`${viewport.width} px wide (${viewport.label})`, () => {
      let context: BrowserContext;
      let page: Page;

      beforeAll(async () => {
        context = await newContext(browser, {
          viewport: { width: viewport.width, height: viewport.height },
        });
        page = await context.newPage();
      });

      afterAll(() => context.close());

      it('shows each item name on one line, the controls inside the screen, nothing scrolling sideways', async () => {
        await addFromCatalog(page, app.url, 'Awesome item');
        await addFromCatalog(page, app.url, 'Rubber duck');
        await addFromCatalog(page, app.url, 'Sticker pack');
        await page.goto(url(`/add_to_cart/${LONG_ITEM}/`));
        await page.goto(url('/cart/'));
        const facts = await layout(page);
        await page.screenshot({
          path: join(RESULTS, `cart-${viewport.width}.png`),
          fullPage: true,
        });

        expect(facts.scrollWidth).toBeLessThanOrEqual(facts.innerWidth);
        const names = facts.names.filter((n) => !n.text.startsWith('x'));
        expect(names.map((n) => n.text)).toEqual([
          'Awesome item awesome-item',
          'Rubber duck rubber-duck',
          'Sticker pack sticker-pack',
        ]);
        for (const name of names) {
          // One line: less than two line heights tall.
          expect(name.height, name.text).toBeLessThan(2 * name.lineHeight);
        }
        // The long name wraps, within the screen, and is not one letter per line either.
        const long = facts.names.find((n) => n.text.startsWith('x'))!;
        expect(long.right).toBeLessThanOrEqual(facts.innerWidth);
        expect(long.right - long.left).toBeGreaterThan(200);
        for (const button of facts.buttons) {
          expect(button.left, button.text).toBeGreaterThanOrEqual(0);
          expect(button.right, button.text).toBeLessThanOrEqual(facts.innerWidth);
          expect(button.height, button.text).toBeLessThan(2 * button.lineHeight + 16);
        }

        await page.goto(url('/'));
        const catalog = await layout(page);
        await page.screenshot({
          path: join(RESULTS, `catalog-${viewport.width}.png`),
          fullPage: true,
        });
        expect(catalog.scrollWidth).toBeLessThanOrEqual(catalog.innerWidth);
      });

      it('adds one more with +1 beside "Remove one", naming the product in the message', async () => {
        await page.goto(url('/cart/'));
        const line = page.locator('li[data-item="rubber-duck"]');
        const plus = line.getByRole('button', { name: 'Add one more Rubber duck' });
        const minus = line.getByRole('button', { name: 'Remove one Rubber duck' });
        expect(await plus.textContent()).toBe('+1');
        // Beside each other: the same row, +1 right after "Remove one".
        const [plusBox, minusBox] = [await plus.boundingBox(), await minus.boundingBox()];
        expect(Math.abs(plusBox!.y - minusBox!.y)).toBeLessThan(2);
        expect(plusBox!.x).toBeGreaterThan(minusBox!.x + minusBox!.width);
        expect(plusBox!.x - (minusBox!.x + minusBox!.width)).toBeLessThan(24);

        await plus.click();
        await page.waitForURL(url('/cart/'));
        expect(await page.locator('.flash').textContent()).toBe('Added Rubber duck');
        expect((await cartOn(page))['rubber-duck']).toBe(2);

        await page
          .locator('li[data-item="rubber-duck"]')
          .getByRole('button', { name: 'Remove one Rubber duck' })
          .click();
        await page.waitForURL(url('/cart/'));
        expect(await page.locator('.flash').textContent()).toBe('Removed one Rubber duck');
        expect((await cartOn(page))['rubber-duck']).toBe(1);
      });

      it('says once, not twice, that the cart is empty after clearing it', async () => {
        await page.goto(url('/cart/'));
        await page.getByRole('button', { name: 'Clear cart' }).click();
        await page.waitForURL(url('/cart/'));
        expect(await page.locator('.flash').textContent()).toBe(
          'Removed all 4 items from your cart',
        );
        // biome-ignore lint/performance/useDomNodeTextContent: what the visitor reads is the rendered text.
        const main = (await page.locator('main').innerText()).toLowerCase();
        expect(main.match(/empty/g)).toHaveLength(1);
        expect(await page.locator('.empty').textContent()).toBe('Your cart is empty.');
        await page.screenshot({
          path: join(RESULTS, `cart-empty-${viewport.width}.png`),
          fullPage: true,
        });
      });

      it('lays out the devices page without scrolling sideways', async () => {
        await logIn(page, app.url);
        const other = await newContext(browser);
        try {
          await logIn(await other.newPage(), app.url);
          await page.goto(url('/devices'));
          expect(await page.locator('tr.device').count()).toBeGreaterThanOrEqual(2);
          const facts = await layout(page);
          await page.screenshot({
            path: join(RESULTS, `devices-${viewport.width}.png`),
            fullPage: true,
          });
          expect(facts.scrollWidth).toBeLessThanOrEqual(facts.innerWidth);
          for (const button of facts.buttons) {
            expect(button.right, button.text).toBeLessThanOrEqual(facts.innerWidth);
          }
        } finally {
          await other.close();
        }
      });
    });
  }
});
