import { parse } from 'cookie';
import type { LegacyImporter, LegacySession } from './types.js';

export type { LegacyImporter, LegacySession } from './types.js';

/** The satchel session cookie, as the manager resolved it. */
export interface OwnCookie {
  name: string;
  path?: string;
  domain?: string | undefined;
}

/**
 * Asks each importer in turn about the request's cookies; the first that
 * recognizes a valid legacy session wins. Resolves to undefined when none does
 * (no Cookie header, no importer, nothing valid); rejects only with an
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
 * @param ownCookie satchel's own cookie. A legacy cookie of the same name,
 *   path and domain is replaced by the new satchel cookie itself, so its
 *   deletion is left out of `clearCookies` (sent after the satchel cookie, it
 *   would delete that).
 */
export async function readLegacySession(
  importers: readonly LegacyImporter[],
  cookieHeader: string | undefined,
  now: number,
  ownCookie?: OwnCookie,
): Promise<LegacySession | undefined> {
  if (importers.length === 0 || !cookieHeader) return undefined;
  const cookies: Record<string, string> = {};
  for (const [name, value] of Object.entries(parse(cookieHeader))) {
    if (value !== undefined) cookies[name] = value;
  }
  for (const importer of importers) {
    const session = await importer.read(cookies, now);
    if (session === undefined) continue;
    if (ownCookie !== undefined) {
      session.clearCookies = session.clearCookies.filter(
        (header) => !sameCookie(header, ownCookie),
      );
    }
    return session;
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
