import { createHmac, hash, randomBytes, timingSafeEqual } from 'node:crypto';

/** 32 random bytes (256 bits) from the CSPRNG, base64url without padding: 43 characters. */
export const ID_BYTES = 32;
const ID_PATTERN = /^[A-Za-z0-9_-]{43}$/;
const SIGNED_PATTERN = /^([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{43})$/;

/**
 * 43 base64url characters carry 258 bits; 32 bytes use 256 of them, so the
 * last character's two low bits must be zero. A non-canonical last character
 * would decode to the same bytes, and is refused. (Callers checked the charset.)
 */
const CANONICAL_LAST = new Set('AEIMQUYcgkosw048');
function isCanonical(b64: string): boolean {
  return b64.length === 43 && CANONICAL_LAST.has(b64[42]!);
}

export function generateId(): string {
  return randomBytes(ID_BYTES).toString('base64url');
}

/** A session handle (the store key: base64url SHA-256, 43 characters), as listByOwner gives it. */
export function isHandle(value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value);
}

/** Charset and length are checked before anything else sees an incoming ID. */
export function isWellFormedId(id: string): boolean {
  return ID_PATTERN.test(id) && isCanonical(id);
}

/**
 * The store key: SHA-256 of the ID, base64url. A leaked store or backup holds
 * no live session IDs (Rack's CVE-2019-16782). The one-shot `hash()` costs
 * half of a createHash() object on every request.
 */
export function storeKey(id: string): string {
  return hash('sha256', id, 'base64url');
}

/** HMAC-SHA256 signing of IDs with a key list: the first key signs, all verify. */
export class Signer {
  readonly #keys: Buffer[];

  constructor(secrets: readonly string[]) {
    this.#keys = secrets.map((s) => Buffer.from(s, 'utf8'));
  }

  #mac(key: Buffer, id: string): Buffer {
    return createHmac('sha256', key).update(id).digest();
  }

  sign(id: string): string {
    return `${id}.${this.#mac(this.#keys[0]!, id).toString('base64url')}`;
  }

  /** The ID, or undefined when the value is malformed or no key's signature matches (constant time). */
  unsign(value: string): string | undefined {
    const match = SIGNED_PATTERN.exec(value);
    if (!match) return undefined;
    const id = match[1]!;
    if (!isCanonical(id) || !isCanonical(match[2]!)) return undefined;
    const given = Buffer.from(match[2]!, 'base64url');
    let ok = false;
    for (const key of this.#keys) {
      // Every key is tried, so the time taken does not tell which one matched.
      if (timingSafeEqual(this.#mac(key, id), given)) ok = true;
    }
    return ok ? id : undefined;
  }
}
