import { createHmac } from 'node:crypto';
import { ConfigError } from '../errors.js';
import {
  clearCookie,
  idSeed,
  jsonObject,
  type LegacyCookie,
  commonOptions,
  legacySecrets,
  safeEqual,
  storeCall,
} from './shared.js';
import type { LegacyImporter, LegacySession } from './types.js';

export type { LegacyImporter, LegacySession } from './types.js';

/**
 * The part of an express-session `Store` the importer uses, typed
 * structurally so express-session itself is never loaded: MemoryStore,
 * connect-redis, connect-pg-simple and any other store that follows
 * express-session's callback contract fit.
 */
export interface ExpressSessionStore {
  get(sid: string, callback: (err: unknown, session?: unknown) => void): unknown;
  destroy(sid: string, callback: (err?: unknown) => void): unknown;
}

export interface ExpressSessionImportOptions {
  /**
   * The `secret` your express-session was given: one string, or the rotation
   * list (the first one signed, every one verifies). A cookie no secret
   * verifies imports nothing, so a forged session ID cannot pull in someone
   * else's session.
   */
  secrets: string | readonly string[];
  /** The express-session `Store` instance holding the sessions (connect-redis, connect-pg-simple, MemoryStore…). */
  store: ExpressSessionStore;
  /** express-session's `name` option. @default 'connect.sid' */
  cookieName?: string;
  /**
   * express-session's `cookie.path`, used to delete the legacy cookie when the
   * stored session does not record its own. @default '/'
   */
  cookiePath?: string;
  /** express-session's `cookie.domain`, likewise. @default undefined */
  cookieDomain?: string;
  /**
   * Leave the legacy record in the store after the import. Meant for a
   * rollback window only: while the record exists, anyone still holding the
   * legacy cookie (another device, an attacker with a copy) can import it again,
   * even after the user logged out of satchel.
   * @default false
   */
  keepLegacy?: boolean;
  /**
   * How long a call to the legacy store may take (ms) before the request is
   * answered 503; a client that queues commands while disconnected would
   * otherwise hold requests forever.
   * @default 5000
   */
  timeout?: number;
}

const NAME = 'express-session';
const SCOPE = 'fromExpressSession: ';
const KNOWN = [
  'secrets',
  'store',
  'cookieName',
  'cookiePath',
  'cookieDomain',
  'keepLegacy',
  'timeout',
] as const satisfies readonly (keyof ExpressSessionImportOptions)[];
const HINTS = {
  secret: 'use secrets (the string or array you gave express-session as secret)',
  name: 'use cookieName',
  cookie: 'use cookiePath and cookieDomain',
};

/**
 * Imports the sessions of an express-session app: a request carrying a
 * `connect.sid` cookie signed by one of `secrets`, whose session `store`
 * still holds, becomes a satchel session with the same data (less
 * express-session's `cookie` field); the legacy cookie is deleted and the
 * legacy record removed.
 *
 * ```ts
 * createSessions({ store, importers: [fromExpressSession({ secrets: process.env.OLD_SECRET!, store: redisStore })] })
 * ```
 */
export function fromExpressSession(options: ExpressSessionImportOptions): LegacyImporter {
  const { cookie, keepLegacy, timeout } = commonOptions(
    SCOPE,
    options,
    KNOWN,
    HINTS,
    'connect.sid',
  );
  const secrets = legacySecrets(SCOPE, 'secrets', options.secrets);
  const store = options.store;
  if (
    typeof store !== 'object' ||
    store === null ||
    typeof store.get !== 'function' ||
    typeof store.destroy !== 'function'
  ) {
    throw new ConfigError(
      `${SCOPE}store must be an express-session Store instance (with get and destroy methods)`,
    );
  }

  /** The session ID in a correctly signed cookie. */
  const sidOf = (cookies: Readonly<Record<string, string>>): string | undefined => {
    const raw = cookies[cookie.name];
    // express-session ignores a value without its 's:' prefix (an unsigned cookie); so do we.
    if (raw === undefined || !raw.startsWith('s:')) return undefined;
    return unsign(raw.slice(2), secrets);
  };

  return {
    name: NAME,
    recognize(cookies) {
      const sid = sidOf(cookies);
      if (sid === undefined) return undefined;
      return { idSeed: idSeed(secrets[0]!, NAME, sid), clearCookies: [clearCookie(cookie)] };
    },
    async read(cookies, now) {
      const sid = sidOf(cookies);
      if (sid === undefined) return undefined;

      const record = await storeCall(NAME, 'reading a legacy session', timeout, () =>
        viaCallback<unknown>((done) => store.get(sid, done)),
      );
      if (typeof record !== 'object' || record === null) return undefined;

      const { cookie: legacy, ...rest } = record as { cookie?: unknown };
      const expiresAt = expiryOf(legacy);
      if (expiresAt !== undefined && expiresAt <= now) return undefined;
      const data = jsonObject(rest);
      if (data === undefined) return undefined;

      const session: LegacySession = {
        importer: NAME,
        data,
        idSeed: idSeed(secrets[0]!, NAME, sid),
        clearCookies: [clearCookie(cookieAsSet(legacy, cookie))],
        finish: async () => {
          if (keepLegacy) return;
          await storeCall(NAME, 'removing a legacy session', timeout, () =>
            viaCallback<void>((done) => store.destroy(sid, done)),
          );
        },
      };
      if (expiresAt !== undefined) session.expiresAt = expiresAt;
      return session;
    },
  };
}

/**
 * The session ID in `value` (`<id>.<signature>`, the 's:' already removed)
 * when one of `secrets` signed it, as cookie-signature does: HMAC-SHA256 of
 * the ID, standard base64 without '=' padding. Every secret is tried, so the
 * time taken does not tell which one matched.
 */
function unsign(value: string, secrets: readonly string[]): string | undefined {
  const dot = value.lastIndexOf('.');
  if (dot <= 0) return undefined;
  const sid = value.slice(0, dot);
  const given = value.slice(dot + 1);
  let ok = false;
  for (const secret of secrets) {
    const expected = createHmac('sha256', secret).update(sid).digest('base64').replace(/=+$/, '');
    if (safeEqual(expected, given)) ok = true;
  }
  return ok ? sid : undefined;
}

/** The expiry express-session recorded in the session's `cookie` field, if any (null means a browser-session cookie). */
function expiryOf(legacy: unknown): number | undefined {
  if (typeof legacy !== 'object' || legacy === null) return undefined;
  const expires = (legacy as { expires?: unknown }).expires;
  if (expires instanceof Date) return expires.getTime();
  if (typeof expires === 'string' || typeof expires === 'number') {
    const ms = new Date(expires).getTime();
    return Number.isNaN(ms) ? undefined : ms;
  }
  return undefined;
}

/** The path and domain express-session recorded for this session's cookie, else the configured ones. */
function cookieAsSet(legacy: unknown, configured: LegacyCookie): LegacyCookie {
  const { path, domain } = (typeof legacy === 'object' && legacy !== null ? legacy : {}) as {
    path?: unknown;
    domain?: unknown;
  };
  return {
    name: configured.name,
    path: typeof path === 'string' && path.startsWith('/') ? path : configured.path,
    domain: typeof domain === 'string' && domain !== '' ? domain : configured.domain,
  };
}

/**
 * Runs an express-session store method with a Node-style callback. Stores
 * that also return a promise (connect-redis 8+) are covered too: a
 * rejection settles the call, and a second settlement is ignored.
 */
function viaCallback<T>(
  call: (done: (err?: unknown, value?: T) => void) => unknown,
): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (err?: unknown, value?: T) => {
      if (settled) return;
      settled = true;
      if (err) reject(err);
      else resolve(value);
    };
    try {
      const result = call(done);
      if (typeof (result as PromiseLike<unknown> | undefined)?.then === 'function') {
        (result as PromiseLike<unknown>).then(undefined, (err: unknown) =>
          done(err ?? new Error('rejected')),
        );
      }
    } catch (err) {
      done(err ?? new Error('threw'));
    }
  });
}
