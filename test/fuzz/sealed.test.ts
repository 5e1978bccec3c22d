/**
 * The cookie store's sealed cookies (AES-256-GCM): any change to a sealed
 * value — bit flips in its bytes, truncation, extension, another key —
 * opens to nothing; the expiry sealed inside holds; and the manager never
 * throws on a cookie it cannot open.
 */
import { parse } from 'cookie';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { createSessions, type StoredSession } from '../../src/index.js';
import { cookieStore } from '../../src/stores/cookie.js';
import { anyString, cookieHeader } from './arbitraries.js';
import { check, fuzzFile } from './config.js';
import { headerValue, request } from './support.js';

fuzzFile('sealed');

const KEY_A = 'a'.repeat(32);
const KEY_B = 'b'.repeat(32);
const sealer = cookieStore({ secrets: [KEY_A, KEY_B] });
const olderSealer = cookieStore({ secrets: [KEY_B] });
const rotatedOut = cookieStore({ secrets: [KEY_A] });

const record: fc.Arbitrary<StoredSession> = fc.record({
  data: anyString(300),
  version: fc.integer({ min: 1, max: 2 ** 31 }),
  expiresAt: fc.integer({ min: Date.now() + 60_000, max: Date.now() + 10 ** 10 }),
  createdAt: fc.integer({ min: 0, max: Date.now() }),
});

/** The sealed value with one change to its bytes or its text. */
function tampered(value: string): fc.Arbitrary<string> {
  const bytes = Buffer.from(value, 'base64url');
  const at = fc.nat({ max: bytes.length - 1 });
  return fc.oneof(
    fc.tuple(at, fc.nat({ max: 7 })).map(([i, bit]) => {
      const copy = Buffer.from(bytes);
      copy[i]! ^= 1 << bit;
      return copy.toString('base64url');
    }),
    fc.nat({ max: value.length - 1 }).map((n) => value.slice(0, n)),
    fc.nat({ max: bytes.length - 1 }).map((n) => bytes.subarray(0, n).toString('base64url')),
    fc
      .uint8Array({ minLength: 1, maxLength: 40 })
      .map((extra) => Buffer.concat([bytes, extra]).toString('base64url')),
    anyString(20).map((extra) => `${value}${extra}`),
    fc.tuple(at, at).map(([i, j]) => {
      const copy = Buffer.from(bytes);
      [copy[i], copy[j]] = [copy[j]!, copy[i]!];
      return copy.toString('base64url');
    }),
  );
}

describe('sealed cookies', () => {
  it('round-trip, with any key in the list, until their sealed expiry', async () => {
    await check(
      fc.property(record, (r) => {
        expect(sealer.unseal(sealer.seal(r), Date.now())).toEqual(r);
        expect(sealer.unseal(olderSealer.seal(r), Date.now())).toEqual(r);
        expect(sealer.unseal(sealer.seal(r), r.expiresAt)).toBeUndefined();
        // A key rotated out opens nothing it sealed (fastify secure-session CVE-2024-31999).
        expect(rotatedOut.unseal(olderSealer.seal(r), Date.now())).toBeUndefined();
      }),
      2_000,
    );
  });

  it('open to nothing after any change to their bytes', async () => {
    await check(
      fc.property(
        record.chain((r) => {
          const value = sealer.seal(r);
          return fc.tuple(fc.constant(r), fc.constant(value), tampered(value));
        }),
        ([r, value, changed]) => {
          const opened = sealer.unseal(changed, Date.now());
          const sameBytes = Buffer.from(changed, 'base64url').equals(
            Buffer.from(value, 'base64url'),
          );
          // Only a change the base64url decoder ignores (a non-canonical last character) still opens, to the same record.
          if (opened !== undefined) {
            expect(sameBytes).toBe(true);
            expect(opened).toEqual(r);
          }
          if (!sameBytes) expect(opened).toBeUndefined();
        },
      ),
      3_000,
    );
  });

  it('never throw on arbitrary values', async () => {
    await check(
      fc.property(fc.oneof(anyString(300), fc.base64String({ maxLength: 400 })), (value) => {
        expect(sealer.unseal(value, Date.now())).toBeUndefined();
      }),
      3_000,
    );
  });
});

describe('the cookie store behind the manager', () => {
  const sessions = createSessions({
    store: cookieStore({ secrets: KEY_A }),
    logger: { warn() {}, error() {} },
  });
  afterAll(() => sessions.close());

  it('reads any Cookie header it cannot open as a new session, without throwing', async () => {
    const first = await sessions.load(request({}));
    first.set('role', 'admin');
    const real = headerValue((await sessions.commit(first, 200)).headers, sessions)!;
    await check(
      fc.asyncProperty(
        fc.oneof(
          cookieHeader(),
          tampered(real).map((v) => `sessionid=${v}`),
        ),
        async (header) => {
          const session = await sessions.load(request({ cookie: header }));
          const value = parse(header).sessionid;
          if (session.isNew) expect(session.get('role')).toBeUndefined();
          // Opened: it is the real cookie, byte for byte.
          else
            expect(Buffer.from(value!, 'base64url').equals(Buffer.from(real, 'base64url'))).toBe(
              true,
            );
          session.set('seen', 1);
          await sessions.commit(session, 200);
        },
      ),
      2_000,
    );
  });
});
