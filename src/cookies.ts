import { parse, serialize } from 'cookie';
import { ConfigError, CookieTooLargeError } from './errors.js';
import { rejectUnknownKeys } from './validate.js';

/** Browsers keep a cookie of at most 4096 bytes (name, value and attributes); a longer one is dropped silently. */
export const MAX_COOKIE_BYTES = 4096;

export interface CookieOptions {
  /**
   * The cookie's name. A `__Host-` prefix pins the cookie to this host over
   * HTTPS (it requires `secure: true`, `path: '/'` and no `domain`), which stops
   * a sibling subdomain from planting a session ID.
   * @default 'sessionid'
   */
  name?: string;
  /** Domain attribute; leave unset to keep the cookie to this host. @default undefined */
  domain?: string;
  /** @default '/' */
  path?: string;
  /**
   * `'auto'` sets Secure on HTTPS requests only (behind a proxy, see `trustProxy`).
   * Secure keeps the ID off plain-HTTP connections, where anyone on the path could read it.
   * @default 'auto'
   */
  secure?: boolean | 'auto';
  /** HttpOnly keeps the ID away from page scripts, so an XSS cannot read it. @default true */
  httpOnly?: boolean;
  /** Lax stops the cookie on cross-site subrequests and POSTs (a CSRF defence) and keeps top-level links working. @default 'lax' */
  sameSite?: 'lax' | 'strict' | 'none';
  /** CHIPS partitioned cookie (needs Secure). @default false */
  partitioned?: boolean;
}

export interface ResolvedCookieOptions {
  name: string;
  domain: string | undefined;
  path: string;
  secure: boolean | 'auto';
  httpOnly: boolean;
  sameSite: 'lax' | 'strict' | 'none';
  partitioned: boolean;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const KNOWN: readonly (keyof CookieOptions)[] = [
  'name',
  'domain',
  'path',
  'secure',
  'httpOnly',
  'sameSite',
  'partitioned',
];
const LIFETIME =
  'the cookie mirrors the server-side expiry: set idleTimeout (seconds) on createSessions, or per session session.setExpiry()';

export function resolveCookieOptions(options: CookieOptions = {}): ResolvedCookieOptions {
  rejectUnknownKeys('cookie: ', options, KNOWN, { maxAge: LIFETIME, expires: LIFETIME });
  const resolved: ResolvedCookieOptions = {
    name: options.name ?? 'sessionid',
    domain: options.domain,
    path: options.path ?? '/',
    secure: options.secure ?? 'auto',
    httpOnly: options.httpOnly ?? true,
    sameSite: options.sameSite ?? 'lax',
    partitioned: options.partitioned ?? false,
  };
  const { name, domain, path, secure, sameSite } = resolved;
  if (!TOKEN.test(name)) throw new ConfigError(`cookie.name "${name}" is not a valid cookie name`);
  if (!['lax', 'strict', 'none'].includes(sameSite)) {
    throw new ConfigError(
      `cookie.sameSite must be 'lax', 'strict' or 'none'; got ${String(sameSite)}`,
    );
  }
  if (secure !== true && secure !== false && secure !== 'auto') {
    throw new ConfigError(`cookie.secure must be true, false or 'auto'; got ${String(secure)}`);
  }
  if (name.startsWith('__Host-')) {
    if (secure !== true)
      throw new ConfigError('cookie.name with the __Host- prefix requires cookie.secure: true');
    if (path !== '/')
      throw new ConfigError(
        `cookie.name with the __Host- prefix requires cookie.path '/'; got '${path}'`,
      );
    if (domain !== undefined)
      throw new ConfigError('cookie.name with the __Host- prefix must not set cookie.domain');
  } else if (name.startsWith('__Secure-') && secure !== true) {
    throw new ConfigError('cookie.name with the __Secure- prefix requires cookie.secure: true');
  }
  if (sameSite === 'none' && secure === false) {
    throw new ConfigError(
      "cookie.sameSite 'none' requires cookie.secure (browsers drop the cookie otherwise)",
    );
  }
  if (resolved.partitioned && secure === false)
    throw new ConfigError('cookie.partitioned requires cookie.secure');
  // Let the cookie library refuse attribute injection (cookie's CVE-2024-47764) once, here.
  serialize(name, 'x', { domain, path, sameSite, httpOnly: true });
  return resolved;
}

/** The value of the named cookie in a Cookie header; the first one wins when repeated. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  return parse(header)[name];
}

/** The attributes around Max-Age and Expires, serialized once per options object (hot path). */
interface Parts {
  middle: string;
  tail: { secure: string; plain: string };
}
const partsCache = new WeakMap<ResolvedCookieOptions, Parts>();

function partsOf(options: ResolvedCookieOptions): Parts {
  let parts = partsCache.get(options);
  if (parts) return parts;
  // Let the cookie library produce (and validate) each piece, in its order:
  // name=value; Max-Age; Domain; Path; Expires; HttpOnly; Secure; Partitioned; SameSite.
  const middle = serialize('x', '', { domain: options.domain, path: options.path }).slice(2);
  const tailFor = (secure: boolean) =>
    serialize('x', '', {
      httpOnly: options.httpOnly,
      secure,
      partitioned: options.partitioned,
      sameSite: options.sameSite,
    }).slice(2);
  parts = { middle, tail: { secure: tailFor(true), plain: tailFor(false) } };
  partsCache.set(options, parts);
  return parts;
}

const SAFE_VALUE = /^[A-Za-z0-9_.-]*$/;

/** The last Expires date formatted: every cookie set within one second shares it. */
let lastExpires = { second: Number.NaN, text: '' };
function httpDate(date: Date): string {
  const second = Math.floor(date.getTime() / 1000);
  if (second !== lastExpires.second) lastExpires = { second, text: date.toUTCString() };
  return lastExpires.text;
}

export function setCookieHeader(
  options: ResolvedCookieOptions,
  value: string,
  secureRequest: boolean,
  expires: Date | undefined,
): string {
  // Session IDs and sealed sessions are base64url (and a dot), which need no encoding.
  if (!SAFE_VALUE.test(value)) throw new TypeError('[satchel] cookie value must be base64url');
  const { middle, tail } = partsOf(options);
  const secure = options.secure === 'auto' ? secureRequest : options.secure;
  const header = expires
    ? `${options.name}=${value}; Max-Age=${Math.max(0, Math.round((expires.getTime() - Date.now()) / 1000))}${middle}; Expires=${httpDate(expires)}${secure ? tail.secure : tail.plain}`
    : `${options.name}=${value}${middle}${secure ? tail.secure : tail.plain}`;
  // Every piece is ASCII (the cookie library refuses anything else), so length is the size.
  const size = header.length;
  if (size > MAX_COOKIE_BYTES) throw new CookieTooLargeError(options.name, size);
  return header;
}

/** Deletes the cookie with the same Domain and Path it was set with, so the browser drops it. */
export function deleteCookieHeader(options: ResolvedCookieOptions, secureRequest: boolean): string {
  return serialize(options.name, '', {
    domain: options.domain,
    path: options.path,
    httpOnly: options.httpOnly,
    sameSite: options.sameSite,
    secure: options.secure === 'auto' ? secureRequest : options.secure,
    partitioned: options.partitioned,
    expires: new Date(0),
    maxAge: 0,
  });
}
