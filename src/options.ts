import { type CookieOptions, type ResolvedCookieOptions, resolveCookieOptions } from './cookies.js';
import { ConfigError } from './errors.js';
import { consoleLogger, type Logger } from './logger.js';
import type { ExpiryPolicy } from './expiry.js';
import type { LegacyImporter } from './import/types.js';
import { Signer } from './ids.js';
import { jsonSerializer, richSerializer, type Serializer } from './serializers.js';
import type { CookieStore, SessionStore } from './store.js';
import type { TransportOption } from './transports/index.js';
import { positiveInteger, positiveNumber, rejectUnknownKeys, secretList } from './validate.js';

export type { Logger } from './logger.js';

export interface SessionsOptions {
  /**
   * Where sessions are kept.
   * @default sqliteStore() — a `satchel-sessions.db` file in the working directory
   */
  store?: SessionStore | CookieStore;
  /** The session cookie; see each field for its default. */
  cookie?: CookieOptions;
  /**
   * Where the session ID travels. `'cookie'` (the default); `{ type: 'header' }`
   * for API and mobile clients (`Authorization: Session <id>` in, the new ID in
   * a `Session-Id` response header, no cookies); or `{ type: 'url' }`: cookies
   * plus a URL parameter for clients that refuse cookies — the ID then shows
   * up in logs, history and shared links, so it is opt-in (see the README).
   * @default 'cookie'
   */
  transport?: TransportOption;
  /**
   * Seconds of inactivity after which a session expires (sliding, Django's
   * SESSION_COOKIE_AGE). Each request that finds the session pushes it back.
   * @default 1_209_600 (two weeks)
   */
  idleTimeout?: number;
  /**
   * Seconds from a session's creation after which it expires however active it
   * is; bounds how long a stolen ID stays useful. `null` turns it off.
   * `cycleKey()` starts a new lifetime.
   * @default 2_592_000 (30 days)
   */
  absoluteTimeout?: number | null;
  /** Browser-session cookies (no Max-Age), Django's SESSION_EXPIRE_AT_BROWSER_CLOSE. The server-side expiry still holds. @default false */
  expireAtBrowserClose?: boolean;
  /**
   * The stored idle expiry moves forward at most once per this many seconds:
   * a session that was only read is touched (its expiry pushed back) no more
   * often, so read-only traffic does not write on every request, and a save
   * of changed data keeps the stored expiry while the new one would be less
   * than this later (a shorter one is written at once). A session may thus
   * end up to this much before "idle timeout after the last request", never after.
   * @default 60
   */
  touchInterval?: number;
  /**
   * Optional keys for signing the ID in the cookie (HMAC-SHA256), each at
   * least 32 characters: the first signs, all verify, so a key can be rotated
   * without logging anyone out. IDs are 256-bit random values and unguessable
   * without it; signing rejects forged cookies before any store lookup.
   * @default undefined (unsigned)
   */
  secrets?: string | readonly string[];
  /**
   * While turning `secrets` on for a live site: also accept unsigned IDs, and
   * send each one back signed, so nobody is logged out. Turn it off once the
   * old cookies have expired or been re-sent (a week of traffic, say): an
   * unsigned ID is still a 256-bit random value, but only a signed one is
   * checked before the store is asked.
   * @default false
   */
  acceptUnsignedIds?: boolean;
  /**
   * `'json'` (Django's default), `'rich'` (Date, Map, Set, BigInt; see
   * `richSerializer` for registered classes) or your own. Loading never runs code.
   * @default 'json'
   */
  serializer?: 'json' | 'rich' | Serializer;
  /** Largest serialized session in bytes; a bigger one is an error at commit, and nothing is saved. @default 1_048_576 */
  maxPayloadBytes?: number;
  /**
   * Trust `X-Forwarded-Proto` from a reverse proxy when deciding if a request
   * is HTTPS (for `cookie.secure: 'auto'`). Only turn it on behind a proxy that
   * sets the header, or any client can claim HTTPS.
   * @default false
   */
  trustProxy?: boolean;
  /**
   * Serialize the requests of one session with a per-session lock, for
   * handlers whose read-modify-write cannot be written as `update`. Can also
   * be turned on per request: `load(req, { lock: true })`.
   * @default false
   */
  lock?: boolean;
  /** Milliseconds to wait for the lock before failing with LockTimeoutError (503). @default 10_000 */
  lockTimeout?: number;
  /** Milliseconds after which a lock left by a crashed process expires. @default 30_000 */
  lockTtl?: number;
  /**
   * Compare-and-set attempts before ConflictError (503); retries back off
   * with jitter. Unbounded by count by default: `retryTimeout` bounds them.
   * @default Infinity
   */
  maxRetries?: number;
  /**
   * Milliseconds a commit keeps retrying a compare-and-set that other
   * processes keep winning before ConflictError (503); nothing is saved then.
   * @default 10_000
   */
  retryTimeout?: number;
  /**
   * Legacy sessions to take over on a visitor's first request, so a live site
   * moves to satchel without logging anyone out: `fromExpressSession(...)`
   * (`satchel/import/express-session`), `fromDjango(...)` (`satchel/import/django`).
   * See the README's "Moving to satchel".
   * @default []
   */
  importers?: readonly LegacyImporter[];
  /** @default console.warn and console.error */
  logger?: Logger;
}

const KNOWN: readonly (keyof SessionsOptions)[] = [
  'store',
  'cookie',
  'transport',
  'idleTimeout',
  'absoluteTimeout',
  'expireAtBrowserClose',
  'touchInterval',
  'secrets',
  'acceptUnsignedIds',
  'serializer',
  'maxPayloadBytes',
  'trustProxy',
  'lock',
  'lockTimeout',
  'lockTtl',
  'maxRetries',
  'retryTimeout',
  'importers',
  'logger',
];

/** express-session and Django names, answered with what satchel does instead. */
const FOREIGN: Readonly<Record<string, string>> = {
  secret: 'did you mean "secrets"? (express-session\'s name; satchel takes one key or a list)',
  resave: 'not needed: satchel saves only what changed',
  saveUninitialized: 'not needed: satchel stores a session only once something is set in it',
  rolling:
    'not needed: the idle timeout slides on every request (touchInterval throttles the writes)',
  name: 'the cookie name is cookie.name',
  genid: 'not supported: session IDs are always 256-bit random values',
  proxy: 'did you mean "trustProxy"?',
  unset: 'not needed: session.flush() deletes the session and its record',
  maxAge: 'did you mean "idleTimeout" (seconds)? per session: session.setExpiry()',
  engine: 'the store is the "store" option (Django\'s SESSION_ENGINE)',
};

/** Everything createSessions needs, resolved and checked once. */
export interface ResolvedOptions {
  store: SessionStore | CookieStore;
  cookie: ResolvedCookieOptions;
  transport: TransportOption | undefined;
  policy: ExpiryPolicy;
  touchMs: number;
  signer: Signer | undefined;
  acceptUnsignedIds: boolean;
  serializer: Serializer;
  maxPayloadBytes: number;
  trustProxy: boolean;
  lock: boolean;
  lockTimeout: number;
  lockTtl: number;
  maxRetries: number;
  retryTimeout: number;
  importers: readonly LegacyImporter[];
  logger: Logger;
}

export function resolveOptions(
  options: SessionsOptions,
  defaultStore: () => SessionStore | CookieStore,
): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ConfigError('createSessions takes an options object');
  }
  rejectUnknownKeys('', options, KNOWN, FOREIGN);
  const secrets =
    options.secrets === undefined ? undefined : secretList('', 'secrets', options.secrets);
  const resolved: Omit<ResolvedOptions, 'store'> = {
    cookie: resolveCookieOptions(options.cookie),
    transport: options.transport,
    policy: {
      idleTimeout: positiveNumber('', 'idleTimeout', options.idleTimeout ?? 1_209_600),
      absoluteTimeout:
        options.absoluteTimeout === null
          ? null
          : positiveNumber('', 'absoluteTimeout', options.absoluteTimeout ?? 2_592_000),
      expireAtBrowserClose: options.expireAtBrowserClose ?? false,
    },
    touchMs: positiveNumber('', 'touchInterval', options.touchInterval ?? 60, true) * 1000,
    signer: secrets ? new Signer(secrets) : undefined,
    acceptUnsignedIds: options.acceptUnsignedIds ?? false,
    serializer: resolveSerializer(options.serializer),
    maxPayloadBytes: positiveNumber('', 'maxPayloadBytes', options.maxPayloadBytes ?? 1_048_576),
    trustProxy: options.trustProxy ?? false,
    lock: options.lock ?? false,
    lockTimeout: positiveNumber('', 'lockTimeout', options.lockTimeout ?? 10_000),
    lockTtl: positiveNumber('', 'lockTtl', options.lockTtl ?? 30_000),
    maxRetries:
      options.maxRetries === undefined || options.maxRetries === Number.POSITIVE_INFINITY
        ? Number.POSITIVE_INFINITY
        : positiveInteger(
            '',
            'maxRetries',
            Math.floor(positiveNumber('', 'maxRetries', options.maxRetries)),
          ),
    retryTimeout: positiveNumber('', 'retryTimeout', options.retryTimeout ?? 10_000, true),
    importers: resolveImporters(options.importers),
    logger: options.logger ?? consoleLogger,
  };
  if (resolved.acceptUnsignedIds && !resolved.signer) {
    throw new ConfigError('acceptUnsignedIds is for rolling out secrets; set secrets too');
  }
  // Last, so a bad option never leaves a default database file behind.
  return { ...resolved, store: options.store ?? defaultStore() };
}

function resolveImporters(option: SessionsOptions['importers']): readonly LegacyImporter[] {
  if (option === undefined) return [];
  if (!Array.isArray(option) || option.some((i) => typeof i?.read !== 'function')) {
    throw new ConfigError(
      'importers must be an array of importers (fromExpressSession(...), fromDjango(...))',
    );
  }
  return option;
}

function resolveSerializer(option: SessionsOptions['serializer']): Serializer {
  const serializer =
    option === undefined || option === 'json'
      ? jsonSerializer
      : option === 'rich'
        ? richSerializer()
        : option;
  if (typeof serializer?.stringify !== 'function' || typeof serializer.parse !== 'function') {
    throw new ConfigError(
      "serializer must be 'json', 'rich' or an object with stringify and parse",
    );
  }
  return serializer;
}
