/**
 * The shopping cart from the Django session tutorial, grown up: a catalog,
 * quantities, remove and clear, flash messages, CSRF-protected POST forms, a
 * panel showing what the session looks like from the server, and a login
 * (demo / demo-password) with a "Your devices" page to sign other sessions out.
 *
 * Inside this repository the library is imported from its sources; in your
 * own app import from 'satchel' and 'satchel/express' instead.
 */
import { fileURLToPath } from 'node:url';
import Bowser from 'bowser';
import { parse as parseCookies } from 'cookie';
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
import { type CsrfFailure, type CsrfGuard, cookieCsrf, sessionCsrf } from './csrf.js';
import { createMetrics } from './metrics.js';

// The session's shape, declared once for the whole app; req.session.get('cart')
// is then a string[]. In your app: `declare module 'satchel' { ... }`. Here the
// module that declares SessionData is named by its path, as the package is not built.
declare module '../../src/session.js' {
  interface SessionData {
    /** Item names in the order they were added, as in the tutorial; repeats are quantities. */
    cart: string[];
    /**
     * The CSRF secret, on the URL and header transports only (clients without
     * cookies); with the cookie transport it lives in the `csrftoken` cookie,
     * so browsing writes no session (csrf.ts).
     */
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
  /**
   * Where details of failed requests go (the store's address, stack traces);
   * visitors only ever see a generic message.
   * @default console.error
   */
  logError?: (message: string, details: Record<string, unknown>) => void;
  /**
   * Serve Prometheus metrics at GET /metrics (metrics.ts), without a session.
   * Keep it off the public internet: expose it to your Prometheus only.
   * @default false (server.ts turns it on)
   */
  metrics?: boolean;
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

/** A product's display name, or the item name itself for items not in the catalog. */
function displayName(item: string): string {
  return bySlug.get(item)?.name ?? item;
}

/** The 403 page's wording for each reason a POST is refused. */
const CSRF_REFUSALS: Record<CsrfFailure, { title: string; detail: string }> = {
  origin: {
    title: 'Form from another site',
    detail:
      'This form was sent from another site, so it was refused: no other site may submit forms in your name. If you pressed a button on this shop, go back, reload the page and try again.',
  },
  'missing-secret': {
    title: 'Form expired',
    detail:
      "Your browser did not send this shop's security cookie (csrftoken) with the form. Allow cookies for this site, reload the page and try again.",
  },
  token: {
    title: 'Form expired',
    detail:
      'The form was missing its security token or the token did not match. Go back, reload the page and try again.',
  },
};

/**
 * A non-secret cookie set at login and removed at logout: a browser that sends
 * it without a live signed-in session ended that session without logging out
 * here (signed out from another device, or expired). See the README.
 */
export const SIGNED_IN_COOKIE = 'signed_in';
/** How long a browser remembers it was signed in: the library's absolute timeout, 30 days. */
const SIGNED_IN_MAX_AGE_MS = 30 * 24 * 3600 * 1000;

/** Messages for a browser whose sign-in ended elsewhere. */
export const SIGNED_OUT_ELSEWHERE = 'You were signed out on this device from another device.';
export const SIGN_IN_EXPIRED = 'Your sign-in expired on this device. Log in again to continue.';

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

/** Templates with POST forms, which need a CSRF token (so does every page of a signed-in user). */
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

/**
 * "Chrome on Linux" from a User-Agent header, by bowser (a maintained parser);
 * the raw string when it names neither a known browser nor a system.
 */
export function deviceName(userAgent: string | undefined): string {
  if (!userAgent) return 'Unknown device';
  const { browser, os, platform } = Bowser.parse(userAgent);
  const known = Boolean(browser.name);
  const system = os.name ?? (platform.type ? `${platform.type} device` : undefined);
  if (known && system) return `${browser.name} on ${system}`;
  if (system) return `A browser on ${system}`;
  return userAgent;
}

/** A device as the devices page shows it. */
function deviceView(summary: SessionSummary) {
  return {
    handle: summary.handle,
    name: deviceName(summary.device.userAgent),
    userAgent: summary.device.userAgent ?? '',
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
  // Browsers hold the CSRF secret in a cookie; clients without cookies in the session.
  const csrf: CsrfGuard = transport.kind === 'cookie' ? cookieCsrf() : sessionCsrf();
  // Only clients that keep cookies can be told their sign-in ended elsewhere.
  const remembersSignIn = transport.kind !== 'header';
  const logError =
    options.logError ??
    ((message: string, details: Record<string, unknown>) => console.error(message, details));

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
  // Before the session middleware: a scrape neither loads nor creates a session.
  const metrics = options.metrics ? createMetrics({ stores: [sessions.store.name] }) : undefined;
  if (metrics) app.get('/metrics', metrics.handler);
  app.use(session(sessions));
  app.use(express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 20 }));

  /** Adds `item` to the cart, never losing a concurrent add; returns the message to show. */
  function add(session: Session, item: string): Message {
    const before = session.get('cart', []).length;
    const after = session.update('cart', addItem(item, maxCartItems)).length;
    return after > before
      ? { level: 'success', text: `Added ${displayName(item)}` }
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
    const messages = [signInEnded(req, res), s.getFlash<Message>('message')].filter(
      (m): m is Message => m !== undefined,
    );
    const isNew = s.isNew;
    const user = s.owner;
    if (user !== undefined && remembersSignIn) rememberSignIn(req, res);
    // Forms need a token (every page of a signed-in user has the log-out form);
    // with the cookie transport it costs a cookie, never a session write.
    const token = FORM_PAGES.has(template) || user !== undefined ? csrf.token(req, res) : '';
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
      messages,
      user,
      csrf: token,
      cart: cartLines(cart),
      cartCount: cart.length,
      total: cart.reduce((sum, item) => sum + (bySlug.get(item)?.price ?? 0), 0),
      maxItemLength: MAX_ITEM_LENGTH,
      panel: {
        store: storeDescription,
        sealed,
        isNew,
        // An empty new session is not stored: a visitor who only browsed has none.
        stored: !isNew || !s.isEmpty(),
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

  /** Checks the CSRF token of a POST; answers 403 with the reason and returns false when it is wrong. */
  async function checkCsrf(req: Request, res: Response): Promise<boolean> {
    const failure = csrf.check(req);
    if (failure === undefined) return true;
    await page(req, res, 'error.html', CSRF_REFUSALS[failure], 403);
    return false;
  }

  /** Whether the request carried a session cookie (a stale one included). */
  function sentSessionCookie(req: Request): boolean {
    const header = req.headers.cookie;
    return header !== undefined && parseCookies(header)[sessions.cookie.name] !== undefined;
  }

  function hasSignInCookie(req: Request): boolean {
    const header = req.headers.cookie;
    return header !== undefined && parseCookies(header)[SIGNED_IN_COOKIE] !== undefined;
  }

  /** Remembers, client-side and non-secret, that this browser is signed in. */
  function rememberSignIn(req: Request, res: Response): void {
    if (hasSignInCookie(req)) return;
    res.cookie(SIGNED_IN_COOKIE, '1', {
      httpOnly: true,
      sameSite: 'lax',
      secure: req.secure,
      path: '/',
      // Gone with the browser when the session cookie is, else kept past the session.
      ...(req.session.expireAtBrowserClose ? {} : { maxAge: SIGNED_IN_MAX_AGE_MS }),
    });
  }

  function forgetSignIn(req: Request, res: Response): void {
    if (hasSignInCookie(req)) {
      res.clearCookie(SIGNED_IN_COOKIE, {
        httpOnly: true,
        sameSite: 'lax',
        secure: req.secure,
        path: '/',
      });
    }
  }

  /**
   * The notice for a browser that was signed in here and did not log out, but
   * whose session is gone: its session cookie still came (the browser keeps it
   * as long as the session lives), so the session was ended on the server —
   * from another device; or no session cookie came, so it expired. Told once.
   */
  function signInEnded(req: Request, res: Response): Message | undefined {
    if (!remembersSignIn || req.session.owner !== undefined || !hasSignInCookie(req)) {
      return undefined;
    }
    forgetSignIn(req, res);
    return sentSessionCookie(req) && req.session.isNew
      ? { level: 'info', text: SIGNED_OUT_ELSEWHERE }
      : { level: 'info', text: SIGN_IN_EXPIRED };
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
        ? { level: 'info', text: `Removed one ${displayName(item)}` }
        : { level: 'error', text: `${displayName(item)} is not in your cart` },
    );
    redirect(req, res, 303, back(req));
  });

  app.post('/cart/clear', async (req, res) => {
    if (!(await checkCsrf(req, res))) return;
    const count = req.session.get('cart', []).length;
    req.session.delete('cart');
    // The cart page says it is empty; the message says what was done, so the page
    // does not say "empty" twice.
    if (count > 0) {
      req.session.flash('message', {
        level: 'info',
        text: `Removed ${count === 1 ? 'the only item' : `all ${count} items`} from your cart`,
      });
    }
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
    // And a new CSRF secret, as Django rotates it at login.
    csrf.rotate(req, res);
    if (remembersSignIn) rememberSignIn(req, res);
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
    forgetSignIn(req, res);
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
      forgetSignIn(req, res);
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

  // Errors from the handlers. Visitors get a generic page: a store error's
  // message names the store's host and port, which is for the log only.
  app.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    let status = 500;
    let detail = 'Something went wrong on our side. Please try again in a moment.';
    if (SatchelError.is(err)) {
      // The store is down (503) or another satchel error: the public message the adapters answer with.
      status = err.status;
      detail = err.publicMessage;
      logError(`${req.method} ${req.path} failed: ${err.message}`, {
        code: err.code,
        status,
        cause: String(err.cause ?? ''),
      });
    } else if (clientError(err)) {
      // From the body parser (too large, malformed): the visitor's own mistake, said as it is.
      status = err.status;
      detail = err.message;
    } else {
      logError(`${req.method} ${req.path} failed`, { error: err });
    }
    // Rendered without the session: it may be the session store that failed.
    const html = templates.render('failure.html', { status, detail });
    res.status(status).type('html').set('cache-control', 'no-store').send(html);
  });

  return {
    app,
    sessions,
    close: () => {
      metrics?.close();
      return sessions.close();
    },
  };
}

function clientError(err: unknown): err is Error & { status: number } {
  const status = (err as { status?: unknown } | null)?.status;
  return err instanceof Error && typeof status === 'number' && status >= 400 && status < 500;
}
