import { parse } from 'cookie';
import type { LegacyImporter, LegacySession } from './types.js';

export type { LegacyImporter, LegacySession } from './types.js';

/** The satchel session cookie, as the manager resolved it. */
export interface OwnCookie {
  name: string;
  path?: string;
  domain?: string | undefined;
}

export interface ReadLegacyOptions {
  /**
   * Satchel's own cookie. A legacy cookie of the same name, path and domain
   * is replaced by the new satchel cookie itself, so its deletion is left out
   * of `clearCookies` (sent after the satchel cookie, it would delete that).
   * Django's `sessionid` and satchel's default name are the same.
   */
  ownCookie?: OwnCookie;
  /**
   * Whether the satchel store holds a session created under `idSeed` within
   * the last minute (the manager answers: `store.get(storeKey(idSeed))`
   * exists and its `createdAt` is under 60 s old). Asked only when a
   * request's legacy cookie is valid but its record is gone — a concurrent
   * request imported it and its `finish()` removed the record. A yes returns
   * a LegacySession with `alreadyImported: true` and empty data. The one-minute
   * bound keeps an old legacy cookie from becoming a key to the satchel
   * session once the in-flight requests are done.
   */
  recentlyImported?(idSeed: string): Promise<boolean>;
}

/**
 * Asks each importer in turn about the request's cookies; the first that
 * recognizes a valid legacy session wins. Resolves to undefined when none
 * does (no Cookie header, no importer, nothing valid); rejects only with an
 * importer's StoreUnavailableError.
 *
 * When to call it: on a request that carries no usable satchel session —
 * no satchel cookie, a satchel ID the store does not know, or a cookie value
 * that is not a well-formed satchel ID. That last case matters because
 * Django's cookie is called `sessionid`, as satchel's is by default: a Django
 * session key is 32 characters of [a-z0-9], a satchel ID 43 base64url
 * characters (`<43>.<43>` when signed), so the two never pass for each other —
 * the Django importer accepts Django-shaped values only, and the manager must
 * not treat a Django key as a forged satchel ID and stop there.
 *
 * What the manager does with a hit: create the satchel session under ID
 * `idSeed` (store key `storeKey(idSeed)`) with `data`, expiring no later
 * than `expiresAt`; when `store.create` finds the key taken (a concurrent
 * request imported first) or `alreadyImported` is set, load that session
 * instead. Then set the satchel cookie, append `clearCookies` after it, and
 * call `finish()` once the session is stored.
 */
export async function readLegacySession(
  importers: readonly LegacyImporter[],
  cookieHeader: string | undefined,
  now: number,
  options: ReadLegacyOptions = {},
): Promise<LegacySession | undefined> {
  if (importers.length === 0 || !cookieHeader) return undefined;
  const cookies: Record<string, string> = {};
  for (const [name, value] of Object.entries(parse(cookieHeader))) {
    if (value !== undefined) cookies[name] = value;
  }
  const { ownCookie, recentlyImported } = options;
  const found = await firstHit(importers, cookies, now, recentlyImported);
  if (found !== undefined && ownCookie !== undefined) {
    found.clearCookies = found.clearCookies.filter((header) => !sameCookie(header, ownCookie));
  }
  return found;
}

async function firstHit(
  importers: readonly LegacyImporter[],
  cookies: Readonly<Record<string, string>>,
  now: number,
  recentlyImported: ReadLegacyOptions['recentlyImported'],
): Promise<LegacySession | undefined> {
  for (const importer of importers) {
    const session = await importer.read(cookies, now);
    if (session !== undefined) return session;
  }
  if (recentlyImported === undefined) return undefined;
  // No record anywhere: was one of these cookies imported by a request running alongside this one?
  for (const importer of importers) {
    const known = importer.recognize(cookies);
    if (known === undefined || !(await recentlyImported(known.idSeed))) continue;
    return {
      importer: importer.name,
      data: {},
      alreadyImported: true,
      idSeed: known.idSeed,
      clearCookies: known.clearCookies,
      finish: async () => {},
    };
  }
  return undefined;
}

/** Whether a Set-Cookie value names the same cookie (name, path, domain) as `own`. */
function sameCookie(header: string, own: OwnCookie): boolean {
  const [pair = '', ...attributes] = header.split(';');
  const name = pair.slice(0, pair.indexOf('='));
  let path = '/';
  let domain: string | undefined;
  for (const attribute of attributes) {
    const [key = '', value = ''] = attribute.trim().split('=');
    if (key.toLowerCase() === 'path') path = value;
    if (key.toLowerCase() === 'domain') domain = value.toLowerCase();
  }
  return name === own.name && path === (own.path ?? '/') && domain === own.domain?.toLowerCase();
}
