import { type ExpiryPolicy, isBrowserSession } from './expiry.js';
import type { Persistence } from './persistence/types.js';
import type { SessionParts } from './session.js';
import type { Transport } from './transports/types.js';

/**
 * The headers a committed session adds to its response: the ID (or its
 * deletion) as the transport carries it, `Cache-Control: private` so no
 * shared cache keeps one visitor's Set-Cookie for the next, and `Vary` on
 * the field that carries the ID whenever the response depends on it.
 */
export function responseHeaders(
  transport: Transport,
  parts: SessionParts,
  persistence: Persistence,
  policy: ExpiryPolicy,
): [string, string][] {
  const { identity, changes, links } = parts;
  const headers: [string, string][] = [];
  const value =
    identity.outcome === 'set' && identity.record ? persistence.outgoing(parts) : undefined;
  if (value !== undefined) {
    const browserSession = isBrowserSession(policy, changes.expirySetting);
    headers.push(
      ...transport.write({
        value,
        expires: browserSession ? undefined : new Date(identity.record!.expiresAt),
        secure: identity.secure,
        fromUrl: identity.urlId !== undefined && identity.urlId === identity.id,
      }),
    );
  } else if (identity.outcome === 'delete' && identity.hadIncomingId) {
    headers.push(
      ...transport.write({
        value: undefined,
        expires: undefined,
        secure: identity.secure,
        fromUrl: false,
      }),
    );
  }
  for (const header of identity.legacyCookies) headers.push(['set-cookie', header]);
  const carriesId = headers.length > 0;
  if (changes.accessed || carriesId) headers.push(['vary', transport.vary]);
  if (transport.exposureHeaders && (identity.urlId !== undefined || links?.used)) {
    headers.push(...transport.exposureHeaders);
  } else if (carriesId) {
    headers.push(['cache-control', 'private']);
  }
  return headers;
}
