import { createHash, createHmac } from 'node:crypto';
import { inflateSync } from 'node:zlib';
import { safeEqual } from './shared.js';

/**
 * Reads `session_data` as Django's session backends write it, with Django's
 * JSONSerializer (the default since Django 1.6). Two formats exist:
 *
 * - Django 3.1 and later: `django.core.signing.dumps(data, salt=key_salt,
 *   compress=True)`, that is `<payload>:<timestamp>:<signature>` where the
 *   payload is the JSON in unpadded base64url (zlib-compressed and prefixed
 *   with '.' when that is shorter), the timestamp base62, and the signature
 *   the unpadded base64url HMAC-SHA256 of `<payload>:<timestamp>` under the
 *   key SHA-256(key_salt + 'signer' + secret) (`salted_hmac`), with
 *   key_salt = 'django.contrib.sessions.' + the store class's qualified name.
 * - Before 3.1, and on 3.1/3.2 with `DEFAULT_HASHING_ALGORITHM = 'sha1'`:
 *   standard base64 of `<hex HMAC-SHA1>:<JSON>`, keyed with
 *   SHA-1('django.contrib.sessions' + class name + secret). Django 3.1 and 3.2
 *   still read it; 4.0 dropped it.
 *
 * Every key (SECRET_KEY, then SECRET_KEY_FALLBACKS) is tried. Sessions are
 * loaded without a max age, as Django does: the backend's expiry decides.
 */

/** Inflated session JSON larger than this is refused (a zip bomb needs the secret, but costs nothing to stop). */
const MAX_JSON_BYTES = 4 * 1024 * 1024;

export interface DjangoSigningKeys {
  /** SECRET_KEY first, then SECRET_KEY_FALLBACKS. */
  secrets: readonly string[];
  /** The session store class's `__qualname__`: 'SessionStore' for the db and file backends. */
  storeClass: string;
}

/** The session dictionary, or undefined when no key verifies `sessionData` or it is not a JSON object. */
export function decodeSessionData(
  sessionData: string,
  keys: DjangoSigningKeys,
): Record<string, unknown> | undefined {
  return decodeSigned(sessionData, keys) ?? decodeLegacy(sessionData, keys);
}

function decodeSigned(
  sessionData: string,
  { secrets, storeClass }: DjangoSigningKeys,
): Record<string, unknown> | undefined {
  const sep = sessionData.lastIndexOf(':');
  if (sep <= 0) return undefined;
  const value = sessionData.slice(0, sep);
  const signature = sessionData.slice(sep + 1);
  const salt = `django.contrib.sessions.${storeClass}signer`;
  let ok = false;
  for (const secret of secrets) {
    const key = createHash('sha256')
      .update(salt + secret, 'utf8')
      .digest();
    const expected = createHmac('sha256', key).update(value, 'utf8').digest('base64url');
    // Every key is tried, so the time taken does not tell which one matched.
    if (safeEqual(expected, signature)) ok = true;
  }
  if (!ok) return undefined;

  // value is '<payload>:<timestamp>'; the timestamp only matters with a max age.
  const stamp = value.lastIndexOf(':');
  if (stamp < 0) return undefined;
  let payload = value.slice(0, stamp);
  const compressed = payload.startsWith('.');
  if (compressed) payload = payload.slice(1);
  try {
    let bytes = Buffer.from(payload, 'base64url');
    if (compressed) bytes = inflateSync(bytes, { maxOutputLength: MAX_JSON_BYTES });
    return dictionary(bytes);
  } catch {
    return undefined;
  }
}

function decodeLegacy(
  sessionData: string,
  { secrets, storeClass }: DjangoSigningKeys,
): Record<string, unknown> | undefined {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(sessionData)) return undefined;
  const decoded = Buffer.from(sessionData, 'base64');
  const colon = decoded.indexOf(0x3a);
  if (colon !== 40) return undefined; // a SHA-1 hex digest is 40 characters
  const hash = decoded.subarray(0, colon).toString('latin1');
  const serialized = decoded.subarray(colon + 1);
  // The legacy salt used the class's __name__, with no dot after 'sessions'.
  const salt = `django.contrib.sessions${storeClass.slice(storeClass.lastIndexOf('.') + 1)}`;
  let ok = false;
  for (const secret of secrets) {
    const key = createHash('sha1')
      .update(salt + secret, 'utf8')
      .digest();
    if (safeEqual(createHmac('sha1', key).update(serialized).digest('hex'), hash)) ok = true;
  }
  return ok ? dictionary(serialized) : undefined;
}

/** Django's JSONSerializer reads the bytes as latin-1 (json.dumps writes ASCII). */
function dictionary(bytes: Buffer): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(bytes.toString('latin1')) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
