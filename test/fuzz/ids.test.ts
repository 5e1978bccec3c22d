/**
 * Session IDs and their signatures, at the unit level: what is accepted as
 * an ID, what a store key is, and that a signed ID survives no change at all
 * (bit flips, truncation, extension, swapped or foreign signatures).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { generateId, isWellFormedId, storeKey } from '../../src/index.js';
import { Signer } from '../../src/ids.js';
import { anyString, mutationOf, nearValidId, wellFormedId } from './arbitraries.js';
import { check, fuzzFile } from './config.js';

fuzzFile('ids');

const KEYS = ['first-key-'.repeat(4), 'second-key-'.repeat(4)];
const signer = new Signer(KEYS);
/** Signs with the second key only: an older key still in rotation. */
const older = new Signer([KEYS[1]!]);
const foreign = new Signer(['not-our-key-'.repeat(4)]);

describe('ID validation', () => {
  it('accepts exactly the canonical base64url encodings of 32 bytes', async () => {
    await check(
      fc.property(fc.oneof(anyString(60), nearValidId, wellFormedId), (value) => {
        const canonical =
          /^[A-Za-z0-9_-]+$/.test(value) &&
          Buffer.from(value, 'base64url').length === 32 &&
          Buffer.from(value, 'base64url').toString('base64url') === value;
        expect(isWellFormedId(value)).toBe(canonical);
      }),
      3_000,
    );
  });

  it('accepts every ID it generates and every 256-bit value', async () => {
    await check(
      fc.property(wellFormedId, (id) => {
        expect(isWellFormedId(id)).toBe(true);
        expect(isWellFormedId(generateId())).toBe(true);
      }),
      2_000,
    );
  });

  it('keys the store by a SHA-256 that reveals nothing of the ID', async () => {
    await check(
      fc.property(wellFormedId, wellFormedId, (a, b) => {
        const key = storeKey(a);
        expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/);
        expect(key).not.toBe(a);
        expect(storeKey(a)).toBe(key);
        expect(storeKey(b) === key).toBe(a === b);
      }),
      2_000,
    );
  });
});

describe('signed IDs', () => {
  it('verifies what any key in the list signed, and nothing once the key is gone', async () => {
    await check(
      fc.property(wellFormedId, (id) => {
        expect(signer.unsign(signer.sign(id))).toBe(id);
        expect(signer.unsign(older.sign(id))).toBe(id);
        expect(foreign.unsign(signer.sign(id))).toBeUndefined();
        expect(signer.unsign(foreign.sign(id))).toBeUndefined();
      }),
      2_000,
    );
  });

  it('rejects any change to a signed ID: bit flips, truncation, extension, trailing data', async () => {
    await check(
      fc.property(
        wellFormedId.chain((id) =>
          fc.tuple(fc.constant(signer.sign(id)), mutationOf(signer.sign(id))),
        ),
        ([signed, changed]) => {
          fc.pre(changed !== signed);
          expect(signer.unsign(changed)).toBeUndefined();
        },
      ),
      3_000,
    );
  });

  it("rejects one ID's signature on another, and signatures with anything after them", async () => {
    await check(
      fc.property(wellFormedId, wellFormedId, anyString(20), (a, b, tail) => {
        fc.pre(a !== b);
        const sigA = signer.sign(a).split('.')[1]!;
        expect(signer.unsign(`${b}.${sigA}`)).toBeUndefined();
        if (tail !== '') expect(signer.unsign(`${signer.sign(a)}${tail}`)).toBeUndefined();
        expect(signer.unsign(`${a}.`)).toBeUndefined();
        expect(signer.unsign(a)).toBeUndefined();
      }),
      2_000,
    );
  });

  it('never throws on arbitrary input', async () => {
    await check(
      fc.property(anyString(200), (value) => {
        expect(signer.unsign(value)).toBeUndefined();
      }),
      3_000,
    );
  });
});
