/**
 * The shopping cart from the Django session tutorial, grown up: a catalog,
 * quantities, remove and clear, flash messages, CSRF-protected POST forms, a
 * panel showing what the session looks like from the server, and a login
 * (demo / demo-password) with a "Your devices" page to sign other sessions out.
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
  headerCase,
  type ResolvedTransport,
  SatchelError,
  type Session,
  type Sessions,
  type SessionsOptions,
  type SessionStore,
  type SessionSummary,
  type TransportOption,
} from '../../src/index.js';
import { authenticate, DEMO_USERS } from './auth.js';

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

/**
 * The transports the demo runs with, by their SATCHEL_TRANSPORT name. `url`
 * keeps a browser that refuses cookies in its session through its links;
 * `header` is for API clients (curl, apps) that send `Authorization: Session <id>`.
 */
export const TRANSPORTS = {
  cookie: 'cookie',
  url: { type: 'url' },
  header: { type: 'header' },
} as const satisfies Record<string, TransportOption>;

export type TransportName = keyof typeof TRANSPORTS;

/** How the session panel names the transport. */
interface TransportView {
  kind: TransportName;
  /** The URL parameter (url). */
  param: string;
  /** What the client sends, e.g. `Authorization: Session <id>` (header). */
  requestHeader: string;
  /** The response header with a new ID (header). */
  responseHeader: string;
}

/** The panel's wording, from the manager's resolved transport (its defaults filled in). */
function transportView(transport: Readonly<ResolvedTransport>): TransportView {
  return {
    kind: transport.type,
    param: transport.param,
    requestHeader:
      transport.header === 'authorization'
        ? 'Authorization: Session <id>'
        : `${headerCase(transport.header)}: <id>`,
    responseHeader: headerCase(transport.responseHeader),
  };
}

export interface CartAppOptions {
  /** Where sessions are kept: a server-side store, or the cookie store. */
  store: SessionStore | CookieStore;
  /**
   * How the session panel names the store, e.g. `sqlite (./satchel-sessions.db)`.
   * @default store.name
   */
  storeDescription?: string;
  /** Any other createSessions options (transport, expiry, cookie, secrets). */
  sessions?: Omit<SessionsOptions, 'store'>;
  /**
   * Most items one cart holds; further adds say the cart is full.
   * @default MAX_CART_ITEMS (200)
   */
  maxCartItems?: number;
  /**
   * User name → password hash (`hashPassword` in auth.ts).
   * @default DEMO_USERS: `demo` with the password `demo-password`
   */
  users?: ReadonlyMap<string, string>;
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

/** A time for a page, UTC: `{ iso, date: '2025-06-01', time: '12:34' }`. */
function stamp(date: Date) {
  const iso = date.toISOString();
  return { iso, date: iso.slice(0, 10), time: iso.slice(11, 16) };
}

/** Templates with POST forms, which need a CSRF token. */
const FORM_PAGES = new Set(['catalog.html', 'cart.html', 'login.html', 'devices.html']);

/** Only these local pages may be a redirect target after a POST. */
const REDIRECTS = new Set(['/', '/cart/']);

/** Only these local pages may be where a login leads. */
const AFTER_LOGIN = new Set(['/', '/cart/', '/devices']);

/** User agents are the client's to choose: keep at most this much of one. */
const MAX_USER_AGENT = 256;

function afterLogin(next: unknown): string {
  return typeof next === 'string' && AFTER_LOGIN.has(next) ? next : '/';
}

/** A device as the devices page shows it. */
function deviceView(summary: SessionSummary) {
  return {
    handle: summary.handle,
    name: summary.device.userAgent || 'Unknown device',
    current: summary.current,
    created: stamp(summary.createdAt),
    lastSeen: stamp(summary.lastSeenAt),
    expires: stamp(summary.expiresAt),
  };
}

export function createApp(options: CartAppOptions): CartApp {
  const storeDescription = options.storeDescription ?? options.store.name;
  // The cookie store keeps the whole session, sealed, in the cookie: no ID, nothing on the server.
  const sealed = 'kind' in options.store && options.store.kind === 'cookie';
  const maxCartItems = options.maxCartItems ?? MAX_CART_ITEMS;
  if (!Number.isSafeInteger(maxCartItems) || maxCartItems < 1) {
    throw new RangeError(`maxCartItems must be a positive integer; got ${String(maxCartItems)}`);
  }
  const users = options.users ?? DEMO_USERS;
  const sessions = createSessions({ ...options.sessions, store: options.store });
  const transport = transportView(sessions.transport);

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
    const user = s.owner;
    // Pages with forms need a token, which starts a session; error pages do
    // not, so a crawler hitting 404s does not fill the store. Every page of a
    // signed-in user has the log-out form.
    if ((FORM_PAGES.has(template) || user !== undefined) && !s.has('csrf')) {
      const token = newToken();
      // If a parallel first request stored a token already, keep that one.
      s.update('csrf', (current) => current ?? token);
    }
    // Save before rendering so the page shows the merged cart (another tab may
    // have saved first) and the token the store really holds.
    await s.save();
    const cart = s.get('cart', []);
    // With the URL transport and no session cookie, encodeUrl adds the ID.
    const viaUrl = transport.kind === 'url' && s.encodeUrl('/') !== '/';
    const html = templates.render(template, {
      ...context,
      // Every link and form action goes through this: `{{ url('/cart/') }}`. It
      // is this request's session, passed with this render, never a shared global.
      url: (path: string) => s.encodeUrl(path),
      products: PRODUCTS,
      message,
      user,
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
        transport,
        viaUrl,
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

  /**
   * Redirects within the app. The target goes through encodeUrl, so a client
   * without cookies (URL transport) keeps its session ID across the redirect.
   */
  function redirect(req: Request, res: Response, status: number, path: string): void {
    res.redirect(status, req.session.encodeUrl(path));
  }

  app.get('/', (req, res) => page(req, res, 'catalog.html'));

  app.get('/cart/', (req, res) => page(req, res, 'cart.html'));
  app.get('/cart', (req, res) => redirect(req, res, 301, '/cart/'));

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
    redirect(req, res, 301, `/add_to_cart/${encodeURIComponent(req.params.item)}/`),
  );

  app.post('/cart/add', async (req, res) => {
    if (!(await checkCsrf(req, res))) return;
    const item = validItem(req.body?.item);
    if (item === undefined) return badItem(req, res);
    req.session.flash('message', add(req.session, item));
    redirect(req, res, 303, back(req));
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
    redirect(req, res, 303, back(req));
  });

  app.post('/cart/clear', async (req, res) => {
    if (!(await checkCsrf(req, res))) return;
    req.session.delete('cart');
    req.session.flash('message', { level: 'info', text: 'Your cart is empty now' });
    redirect(req, res, 303, back(req));
  });

  // --- Login, logout and "Your devices" --------------------------------------

  app.get('/login', (req, res) => {
    const next = afterLogin(req.query.next);
    if (req.session.owner !== undefined) return redirect(req, res, 303, next);
    return page(req, res, 'login.html', { next });
  });

  app.post('/login', async (req, res) => {
    if (!(await checkCsrf(req, res))) return;
    const next = afterLogin(req.body?.next);
    const user = await authenticate(users, req.body?.username, req.body?.password);
    if (user === undefined) {
      const username = typeof req.body?.username === 'string' ? req.body.username : '';
      return page(
        req,
        res,
        'login.html',
        { next, username: username.slice(0, 100), error: 'Wrong username or password.' },
        401,
      );
    }
    const s = req.session;
    // A new session ID, with the data (the anonymous cart) kept: an ID seen or
    // planted before the login is worthless after it (session fixation).
    s.cycleKey();
    // Ties the session to the user, for the devices page and "sign out everywhere".
    s.setOwner(user, { userAgent: req.get('user-agent')?.slice(0, MAX_USER_AGENT) });
    // And a new CSRF token, as Django rotates it at login.
    s.set('csrf', newToken());
    s.flash('message', { level: 'success', text: `Signed in as ${user}` });
    // After cycleKey: in URL mode the Location carries the new ID, never the old one.
    redirect(req, res, 303, next);
  });

  app.post('/logout', async (req, res) => {
    // Signed out already (e.g. from another device): nothing to do, and no token to check.
    if (req.session.owner === undefined) return redirect(req, res, 303, '/');
    if (!(await checkCsrf(req, res))) return;
    // Data and ID go: the record is deleted, and so is the cookie. There is
    // no session left to carry, so the redirect carries no ID either.
    req.session.flush();
    res.redirect(303, '/');
  });

  const toLogin = (req: Request, res: Response) =>
    redirect(req, res, 303, '/login?next=%2Fdevices');

  /** The signed-in user's sessions, or why the store cannot list them (the cookie store). */
  async function devicesOf(
    req: Request,
    owner: string,
  ): Promise<{ devices: SessionSummary[] } | { unsupported: string }> {
    try {
      return { devices: await sessions.listByOwner(owner, { current: req.session }) };
    } catch (err) {
      if (!SatchelError.is(err) || err.code !== 'ERR_SATCHEL_UNSUPPORTED') throw err;
      return { unsupported: err.message.replace(/^\[satchel\] \[[^\]]*\] /, '') };
    }
  }

  app.get('/devices', async (req, res) => {
    const owner = req.session.owner;
    if (owner === undefined) return toLogin(req, res);
    const found = await devicesOf(req, owner);
    return page(
      req,
      res,
      'devices.html',
      'devices' in found
        ? { devices: found.devices.map(deviceView) }
        : { devices: [], unsupported: found.unsupported },
    );
  });

  app.post('/devices/revoke', async (req, res) => {
    const owner = req.session.owner;
    if (owner === undefined) return toLogin(req, res);
    if (!(await checkCsrf(req, res))) return;
    const found = await devicesOf(req, owner);
    // Only a handle from this user's own listing: anything else is refused untouched.
    const device =
      'devices' in found ? found.devices.find((d) => d.handle === req.body?.handle) : undefined;
    if (device === undefined) {
      return page(
        req,
        res,
        'error.html',
        {
          title: 'Not one of your devices',
          detail:
            'That session is not signed in to your account, or it has signed out already. Go back to your devices and reload the page.',
        },
        403,
      );
    }
    if (device.current) {
      // Signing out this device is logging out: no session, so no ID in the redirect.
      req.session.flush();
      return res.redirect(303, '/');
    }
    await sessions.revoke(device.handle);
    req.session.flash('message', {
      level: 'info',
      text: `Signed out ${deviceView(device).name}`,
    });
    redirect(req, res, 303, '/devices');
  });

  app.post('/devices/revoke-others', async (req, res) => {
    const owner = req.session.owner;
    if (owner === undefined) return toLogin(req, res);
    if (!(await checkCsrf(req, res))) return;
    let message: Message;
    try {
      const count = await sessions.revokeAllForOwner(owner, { except: req.session });
      message =
        count === 0
          ? { level: 'info', text: 'You were not signed in anywhere else' }
          : {
              level: 'success',
              text: `Signed out ${count} other device${count === 1 ? '' : 's'}`,
            };
    } catch (err) {
      if (!SatchelError.is(err) || err.code !== 'ERR_SATCHEL_UNSUPPORTED') throw err;
      message = { level: 'error', text: err.message.replace(/^\[satchel\] \[[^\]]*\] /, '') };
    }
    req.session.flash('message', message);
    redirect(req, res, 303, '/devices');
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
