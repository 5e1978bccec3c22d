import { createHmac, timingSafeEqual } from 'node:crypto';
import { serialize } from 'cookie';
import { ConfigError, SatchelError, StoreUnavailableError } from '../errors.js';
import { positiveInteger, rejectUnknownKeys } from '../validate.js';

/** What both importers share: option checks, the ID seed, the legacy cookie's deletion, bounded store calls. */

/**
 * A legacy library's secret or key list, as that library accepted it: any
 * non-empty string (express-session's example secret is 'keyboard cat'), so
 * satchel's own 32-character minimum does not apply here.
 */
export function legacySecrets(scope: string, name: string, value: unknown): string[] {
  const list = typeof value === 'string' ? [value] : Array.isArray(value) ? [...value] : undefined;
  if (!list || list.length === 0) {
    throw new ConfigError(
      `${scope}${name} must be a string or a non-empty array of strings; got ${value === undefined ? 'undefined' : typeof value}`,
    );
  }
  list.forEach((secret, i) => {
    if (typeof secret !== 'string' || secret === '') {
      throw new ConfigError(
        `${scope}${name}${typeof value === 'string' ? '' : `[${i}]`} must be a non-empty string`,
      );
    }
  });
  return list as string[];
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** A cookie name, path and domain as the legacy library was configured. */
export interface LegacyCookie {
  name: string;
  path: string;
  domain: string | undefined;
}

/** The options every importer takes besides its library's own. */
interface CommonOptions {
  cookieName?: string;
  cookiePath?: string;
  cookieDomain?: string;
  keepLegacy?: boolean;
  timeout?: number;
}

/**
 * Checks an importer's options object once, at creation (an object, no
 * unknown key), and resolves the options every importer shares.
 */
export function commonOptions<T extends CommonOptions>(
  scope: string,
  options: T,
  known: readonly (keyof T & string)[],
  hints: Readonly<Record<string, string>>,
  defaultCookieName: string,
): { cookie: LegacyCookie; keepLegacy: boolean; timeout: number } {
  if (typeof options !== 'object' || options === null) {
    throw new ConfigError(`${scope}options must be an object`);
  }
  rejectUnknownKeys(scope, options, known, hints);
  const keepLegacy = options.keepLegacy ?? false;
  if (typeof keepLegacy !== 'boolean') {
    throw new ConfigError(`${scope}keepLegacy must be true or false; got ${String(keepLegacy)}`);
  }
  return {
    cookie: legacyCookie(
      scope,
      options.cookieName ?? defaultCookieName,
      options.cookiePath ?? '/',
      options.cookieDomain,
    ),
    keepLegacy,
    timeout: positiveInteger(scope, 'timeout', options.timeout ?? 5000),
  };
}

function legacyCookie(scope: string, name: unknown, path: unknown, domain: unknown): LegacyCookie {
  if (typeof name !== 'string' || !TOKEN.test(name)) {
    throw new ConfigError(`${scope}cookieName must be a valid cookie name; got ${String(name)}`);
  }
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new ConfigError(
      `${scope}cookiePath must be a path starting with '/'; got ${String(path)}`,
    );
  }
  if (domain !== undefined && (typeof domain !== 'string' || domain === '')) {
    throw new ConfigError(`${scope}cookieDomain must be a non-empty string; got ${String(domain)}`);
  }
  return { name, path, domain };
}

/** A `Set-Cookie` value that makes the browser drop the cookie `name` at `path`/`domain`. */
export function clearCookie({ name, path, domain }: LegacyCookie): string {
  return serialize(name, '', { path, domain, expires: new Date(0), maxAge: 0 });
}

/**
 * The satchel ID a legacy session is imported under (see `LegacySession.idSeed`).
 * The 'satchel-import:' prefix keeps these MACs apart from any the legacy
 * library makes with the same secret.
 */
export function idSeed(secret: string, importer: string, legacyId: string): string {
  return createHmac('sha256', secret)
    .update(`satchel-import:${importer}:${legacyId}`)
    .digest('base64url');
}

/** Compares two ASCII strings in time that depends on their length only. */
export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'latin1');
  const y = Buffer.from(b, 'latin1');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** `[satchel] [<store>] <message>: <cause's message>`, with the cause kept. */
export function unavailable(
  store: string,
  message: string,
  cause?: unknown,
): StoreUnavailableError {
  const detail = cause instanceof Error && cause.message ? `: ${cause.message}` : '';
  return new StoreUnavailableError(store, `${message}${detail}`, cause);
}

/**
 * Runs one call to a legacy store: its failure, or no answer within `ms`,
 * becomes `[satchel] [<store>] <what> failed: <cause>` (StoreUnavailableError,
 * which adapters answer with 503). The bound matters: a client that queues
 * commands while disconnected would otherwise hold the request forever.
 */
export async function storeCall<T>(
  store: string,
  what: string,
  ms: number,
  work: () => Promise<T>,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(unavailable(store, `${what} took over ${ms} ms`)), ms);
    timer.unref();
  });
  try {
    return await Promise.race([work(), timeout]);
  } catch (err) {
    if (SatchelError.is(err)) throw err;
    throw unavailable(store, `${what} failed`, err);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A plain JSON object copy of `value`, or undefined when it is not a plain
 * object or cannot be written as JSON: what the session holds afterwards is
 * what satchel's JSON codec can keep.
 */
export function jsonObject(value: unknown): Record<string, unknown> | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  try {
    const copy = JSON.parse(JSON.stringify(value)) as unknown;
    return typeof copy === 'object' && copy !== null && !Array.isArray(copy)
      ? (copy as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
