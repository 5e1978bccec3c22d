/**
 * The shopping cart from the Django session tutorial, grown up: a catalog,
 * quantities, remove and clear, flash messages, CSRF-protected POST forms and
 * a panel showing what the session looks like from the server.
 *
 * Inside this repository the library is imported from its sources; in your
 * own app import from 'satchel' and 'satchel/express' instead.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import express, { type NextFunction, type Request, type Response } from 'express';
import nunjucks from 'nunjucks';
import { session } from '../../src/adapters/express.js';
import {
  type CookieStore,
  createSessions,
  SatchelError,
  type Session,
  type Sessions,
  type SessionsOptions,
  type SessionStore,
} from '../../src/index.js';

// The session's shape, declared once for the whole app; req.session.get('cart')
// is then a string[]. In your app: `declare module 'satchel' { ... }`. Here the
// module that declares SessionData is named by its path, as the package is not built.
declare module '../../src/session.js' {
  interface SessionData {
    /** Item names in the order they were added, as in the tutorial; repeats are quantities. */
    cart: string[];
    /** The CSRF token every POST form must echo back. */
    csrf: string;
  }
}

export interface Product {
  /** The item name kept in the cart and used in /add_to_cart/<item>/. */
  slug: string;
  name: string;
  /** In cents. */
  price: number;
  blurb: string;
  color: string;
}

export const PRODUCTS: readonly Product[] = [
  {
    slug: 'awesome-item',
    name: 'Awesome item',
    price: 1999,
    blurb: 'The one from the tutorial. Does awesome things.',
    color: '#6c5ce7',
  },
  {
    slug: 'rubber-duck',
    name: 'Rubber duck',
    price: 499,
    blurb: 'Listens to your bugs without judging.',
    color: '#f9ca24',
  },
  {
    slug: 'coffee-mug',
    name: 'Coffee mug',
    price: 1250,
    blurb: 'Holds 350 ml of focus.',
    color: '#e17055',
  },
  {
    slug: 'sticker-pack',
    name: 'Sticker pack',
    price: 300,
    blurb: 'Twelve stickers for your laptop lid.',
    color: '#00b894',
  },
];

const bySlug = new Map(PRODUCTS.map((p) => [p.slug, p]));

/** Longest item name accepted, in UTF-16 code units. */
export const MAX_ITEM_LENGTH = 100;
/** Most items one cart holds by default, so a script cannot grow a session without bound. */
export const MAX_CART_ITEMS = 200;

interface Message {
  level: 'success' | 'info' | 'error';
  text: string;
}

export interface CartAppOptions {
  /** Where sessions are kept: a server-side store, or the cookie store. */
  store: SessionStore | CookieStore;
  /**
   * How the session panel names the store, e.g. `sqlite (./satchel-sessions.db)`.
   * @default store.name
   */
  storeDescription?: string;
  /** Any other createSessions options (expiry, cookie, secrets). */
  sessions?: Omit<SessionsOptions, 'store'>;
  /**
   * Most items one cart holds; further adds say the cart is full.
   * @default MAX_CART_ITEMS (200)
   */
  maxCartItems?: number;
}

export interface CartApp {
  app: express.Express;
  sessions: Sessions;
  /** Closes the session store. Stop the HTTP server first. */
  close(): Promise<void>;
}

/** `item` when it is an acceptable item name, else undefined. */
export function validItem(item: unknown): string | undefined {
  if (typeof item !== 'string') return undefined;
  if (item.length > MAX_ITEM_LENGTH || item.trim() === '') return undefined;
  if (/\p{Cc}/u.test(item)) return undefined;
  return item;
}

// Updaters may run again on newer data when another request saved first, so
// they are pure functions of the value they are given.
const addItem =
  (item: string, max: number) =>
  (cart: string[] | undefined): string[] => {
    const current = cart ?? [];
    return current.length >= max ? current : [...current, item];
  };

const removeOne =
  (item: string) =>
  (cart: string[] | undefined): string[] => {
    const current = [...(cart ?? [])];
    const index = current.lastIndexOf(item);
    if (index !== -1) current.splice(index, 1);
    return current;
  };

/** One line per distinct item, in the order each was first added. */
function cartLines(cart: readonly string[]) {
  const counts = new Map<string, number>();
  for (const item of cart) counts.set(item, (counts.get(item) ?? 0) + 1);
  return [...counts].map(([item, quantity]) => {
    const product = bySlug.get(item);
    return {
      item,
      name: product?.name ?? item,
      quantity,
      price: product?.price,
      subtotal: product === undefined ? undefined : product.price * quantity,
    };
  });
}

function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Constant-time comparison of the submitted token with the session's. */
function csrfOk(session: Session, submitted: unknown): boolean {
  const expected = session.get('csrf');
  if (typeof expected !== 'string' || typeof submitted !== 'string') return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(submitted);
  return a.length === b.length && timingSafeEqual(a, b);
}

function formatMoney(cents: number): string {
  return `$${(cents / 100).toFixed(2)}`;
}

function fromNow(date: Date): string {
  const seconds = Math.max(0, Math.round((date.getTime() - Date.now()) / 1000));
  const units: [string, number][] = [
    ['day', 86_400],
    ['hour', 3600],
    ['minute', 60],
  ];
  for (const [unit, size] of units) {
    const n = Math.floor(seconds / size);
    if (n >= 1) return `in ${n} ${unit}${n === 1 ? '' : 's'}`;
  }
  return `in ${seconds} second${seconds === 1 ? '' : 's'}`;
}

/** Templates with POST forms, which need a CSRF token. */
const FORM_PAGES = new Set(['catalog.html', 'cart.html']);

/** Only these local pages may be a redirect target after a POST. */
const REDIRECTS = new Set(['/', '/cart/']);

export function createApp(options: CartAppOptions): CartApp {
  const storeDescription = options.storeDescription ?? options.store.name;
  // The cookie store keeps the whole session, sealed, in the cookie: no ID, nothing on the server.
  const sealed = 'kind' in options.store && options.store.kind === 'cookie';
  const maxCartItems = options.maxCartItems ?? MAX_CART_ITEMS;
  if (!Number.isSafeInteger(maxCartItems) || maxCartItems < 1) {
    throw new RangeError(`maxCartItems must be a positive integer; got ${String(maxCartItems)}`);
  }
  const sessions = createSessions({ ...options.sessions, store: options.store });

  const templates = new nunjucks.Environment(
    new nunjucks.FileSystemLoader(fileURLToPath(new URL('./templates/', import.meta.url))),
    { autoescape: true, throwOnUndefined: false, trimBlocks: true, lstripBlocks: true },
  );
  templates.addFilter('money', formatMoney);

  const app = express();
  app.set('strict routing', true);
  app.disable('x-powered-by');

  app.use((_req, res, next) => {
    res.set({
      'content-security-policy':
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'same-origin',
    });
    next();
  });
  app.use(session(sessions));
  app.use(express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 20 }));

  /** Adds `item` to the cart, never losing a concurrent add; returns the message to show. */
  function add(session: Session, item: string): Message {
    const before = session.get('cart', []).length;
    const after = session.update('cart', addItem(item, maxCartItems)).length;
    return after > before
      ? { level: 'success', text: `Added ${item}` }
      : { level: 'error', text: `Your cart is full (${maxCartItems} items)` };
  }

  /** Renders a page with the layout's context: cart badge, flash message, session panel. */
  async function page(
    req: Request,
    res: Response,
    template: string,
    context: Record<string, unknown> = {},
    status = 200,
  ): Promise<void> {
    const s = req.session;
    // Read before save(): saving consumes the flash values of this request.
    const message = s.getFlash<Message>('message');
    const isNew = s.isNew;
    // Pages with forms need a token, which starts a session; error pages do
    // not, so a crawler hitting 404s does not fill the store.
    if (FORM_PAGES.has(template) && !s.has('csrf')) {
      const token = newToken();
      // If a parallel first request stored a token already, keep that one.
      s.update('csrf', (current) => current ?? token);
    }
    // Save before rendering so the page shows the merged cart (another tab may
    // have saved first) and the token the store really holds.
    await s.save();
    const cart = s.get('cart', []);
    const html = templates.render(template, {
      ...context,
      products: PRODUCTS,
      message,
      csrf: s.get('csrf'),
      cart: cartLines(cart),
      cartCount: cart.length,
      total: cart.reduce((sum, item) => sum + (bySlug.get(item)?.price ?? 0), 0),
      maxItemLength: MAX_ITEM_LENGTH,
      panel: {
        store: storeDescription,
        sealed,
        isNew,
        expiresAt: s.expiresAt.toISOString(),
        expiresAtText: `${s.expiresAt.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
        expiresIn: fromNow(s.expiresAt),
        browserSession: s.expireAtBrowserClose,
        cookie: sessions.cookie,
      },
    });
    res.status(status).type('html').set('cache-control', 'no-store').send(html);
  }

  function badItem(req: Request, res: Response): Promise<void> {
    return page(
      req,
      res,
      'error.html',
      {
        title: 'Not a valid item',
        detail: `Item names are 1 to ${MAX_ITEM_LENGTH} characters, without control characters.`,
      },
      400,
    );
  }

  /** Checks the CSRF token of a POST; answers 403 and returns false when it is wrong. */
  async function checkCsrf(req: Request, res: Response): Promise<boolean> {
    if (csrfOk(req.session, req.body?.csrf)) return true;
    await page(
      req,
      res,
      'error.html',
      {
        title: 'Form expired',
        detail:
          'The form was missing its security token or the token did not match your session. Go back, reload the page and try again.',
      },
      403,
    );
    return false;
  }

  function back(req: Request): string {
    const next = req.body?.next;
    return typeof next === 'string' && REDIRECTS.has(next) ? next : '/cart/';
  }

  app.get('/', (req, res) => page(req, res, 'catalog.html'));

  app.get('/cart/', (req, res) => page(req, res, 'cart.html'));
  app.get('/cart', (_req, res) => res.redirect(301, '/cart/'));

  // The tutorial's route, kept for compatibility: a GET that changes state.
  // The forms below use POST with a CSRF token instead.
  app.get('/add_to_cart/:item/', async (req, res) => {
    const item = validItem(req.params.item);
    if (item === undefined) return badItem(req, res);
    req.session.flashNow('message', add(req.session, item));
    return page(req, res, 'cart.html');
  });
  // Django's APPEND_SLASH, for the one route people type by hand.
  app.get('/add_to_cart/:item', (req, res) =>
    res.redirect(301, `/add_to_cart/${encodeURIComponent(req.params.item)}/`),
  );

  app.post('/cart/add', async (req, res) => {
    if (!(await checkCsrf(req, res))) return;
    const item = validItem(req.body?.item);
    if (item === undefined) return badItem(req, res);
    req.session.flash('message', add(req.session, item));
    res.redirect(303, back(req));
  });

  app.post('/cart/remove', async (req, res) => {
    if (!(await checkCsrf(req, res))) return;
    const item = validItem(req.body?.item);
    if (item === undefined) return badItem(req, res);
    const had = req.session.get('cart', []).includes(item);
    req.session.update('cart', removeOne(item));
    req.session.flash(
      'message',
      had
        ? { level: 'info', text: `Removed one ${item}` }
        : { level: 'error', text: `${item} is not in your cart` },
    );
    res.redirect(303, back(req));
  });

  app.post('/cart/clear', async (req, res) => {
    if (!(await checkCsrf(req, res))) return;
    req.session.delete('cart');
    req.session.flash('message', { level: 'info', text: 'Your cart is empty now' });
    res.redirect(303, back(req));
  });

  app.use((req, res) =>
    page(req, res, 'error.html', { title: 'Page not found', detail: req.path }, 404),
  );

  app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    let status = 500;
    let text = 'Internal Server Error';
    if (SatchelError.is(err)) {
      // The store is down (503) or another satchel error: a plain message, as the adapter answers.
      status = err.status;
      text = err.message.replace(/^\[satchel\] /, '');
    } else if (clientError(err)) {
      // From the body parser: too large, malformed.
      status = err.status;
      text = err.message;
    } else {
      console.error(err);
    }
    res.status(status).type('text/plain').set('cache-control', 'no-store').send(`${text}\n`);
  });

  return {
    app,
    sessions,
    close: () => sessions.close(),
  };
}

function clientError(err: unknown): err is Error & { status: number } {
  const status = (err as { status?: unknown } | null)?.status;
  return err instanceof Error && typeof status === 'number' && status >= 400 && status < 500;
}
