import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import type { CookieStore, StoredSession } from '../store.js';
import { checkOptions, secretList } from './kit.js';

export interface CookieStoreOptions {
  /**
   * Secrets the AES-256-GCM keys are derived from (HKDF-SHA256), each at
   * least 32 characters. The first seals; every one opens, so a key can be
   * rotated in without logging anyone out — and rotated out to invalidate
   * every cookie sealed with it, the only way to revoke cookie sessions.
   * @default — required
   */
  secrets: string | readonly string[];
}

const KNOWN: (keyof CookieStoreOptions)[] = ['secrets'];
const HINTS = { secret: 'the option is "secrets" (a string or an array, the first one seals)' };

const FORMAT = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const AAD = Buffer.from('satchel cookie store v1');

interface Sealed {
  d: string;
  v: number;
  e: number;
  c: number;
  o?: string;
}

/**
 * The whole session in an encrypted, authenticated cookie: no server state at
 * all. Limits, by design: a session cannot be revoked server-side (only by
 * rotating the secrets, which revokes all); two concurrent requests each send
 * a whole cookie, so the last response wins (no compare-and-set); and the
 * sealed cookie must fit the 4096 bytes a browser keeps.
 */
export function cookieStore(options: CookieStoreOptions): CookieStore {
  const given = checkOptions('cookie', options, KNOWN, HINTS);
  const keys = secretList('cookie store: ', 'secrets', given.secrets).map((secret) =>
    Buffer.from(hkdfSync('sha256', secret, 'satchel', 'cookie store aes-256-gcm', 32)),
  );

  return {
    name: 'cookie',
    kind: 'cookie',

    seal(record: StoredSession): string {
      const body: Sealed = {
        d: record.data,
        v: record.version,
        e: record.expiresAt,
        c: record.createdAt,
      };
      if (record.owner !== undefined) body.o = record.owner;
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', keys[0]!, iv).setAAD(AAD);
      const text = Buffer.concat([cipher.update(JSON.stringify(body), 'utf8'), cipher.final()]);
      return Buffer.concat([Buffer.of(FORMAT), iv, text, cipher.getAuthTag()]).toString(
        'base64url',
      );
    },

    unseal(value: string, now: number): StoredSession | undefined {
      if (!/^[A-Za-z0-9_-]+$/.test(value)) return undefined;
      const raw = Buffer.from(value, 'base64url');
      if (raw.length < 1 + IV_BYTES + TAG_BYTES + 2 || raw[0] !== FORMAT) return undefined;
      const iv = raw.subarray(1, 1 + IV_BYTES);
      const tag = raw.subarray(raw.length - TAG_BYTES);
      const text = raw.subarray(1 + IV_BYTES, raw.length - TAG_BYTES);
      for (const key of keys) {
        let plain: string;
        try {
          const decipher = createDecipheriv('aes-256-gcm', key, iv, {
            authTagLength: TAG_BYTES,
          }).setAAD(AAD);
          decipher.setAuthTag(tag);
          plain = Buffer.concat([decipher.update(text), decipher.final()]).toString('utf8');
        } catch {
          continue; // not this key (or forged): try the next one
        }
        const body = JSON.parse(plain) as Sealed;
        // The expiry is sealed inside: an old cookie replayed by the browser is refused.
        if (typeof body.e !== 'number' || body.e <= now || typeof body.d !== 'string')
          return undefined;
        return {
          data: body.d,
          version: body.v,
          expiresAt: body.e,
          createdAt: body.c,
          ...(body.o !== undefined && { owner: body.o }),
        };
      }
      return undefined;
    },

    async close() {},
  };
}
