/**
 * Cookie headers an attacker controls: arbitrary strings, many cookies,
 * duplicate names, bad percent-encoding, forged and near-valid IDs, signed
 * or not. The manager never throws, never looks up a malformed ID, and adopts
 * a session only for the exact value the server issued.
 */
import { parse } from 'cookie';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isWellFormedId, storeKey } from '../../src/index.js';
import { cookieHeader, mutationOf, wellFormedId } from './arbitraries.js';
import { check, fuzzFile } from './config.js';
import { type Harness, harness, headerValue, request } from './support.js';

fuzzFile('cookies');

for (const signed of [false, true]) {
  describe(signed ? 'signed session IDs (secrets)' : 'unsigned session IDs', () => {
    let h: Harness;
    beforeAll(async () => {
      h = await harness(signed ? { secrets: ['k'.repeat(32), 'old'.repeat(11)] } : {});
    });
    afterAll(() => h.sessions.close());

    /** Loads with `header`, sets a key, commits; returns what happened. */
    async function visit(header: string) {
      h.reset();
      const session = await h.sessions.load(request({ cookie: header }));
      const adopted = !session.isNew;
      const lookedUp = [...h.gets];
      session.set('visited', true);
      const { headers } = await h.sessions.commit(session, 200);
      return { adopted, lookedUp, issued: headerValue(headers, h.sessions), id: session.id };
    }

    it('never throws, and adopts a session only for the exact cookie the server issued', async () => {
      let adoptions = 0;
      await check(
        fc.asyncProperty(cookieHeader(fc.constant(h.real.value)), async (header) => {
          const value = parse(header).sessionid;
          const { adopted, lookedUp, issued, id } = await visit(header);
          expect(adopted).toBe(value === h.real.value);
          if (adopted) {
            adoptions++;
            expect(id).toBe(h.real.id);
          } else {
            // A fresh ID from the CSPRNG, nothing taken from the request.
            expect(issued).toBeDefined();
            expect(header.includes(id!)).toBe(false);
          }
          // Malformed or forged values are refused before any store access.
          if (!adopted && lookedUp.length > 0) {
            expect(signed).toBe(false);
            expect(isWellFormedId(value!)).toBe(true);
            expect(lookedUp).toEqual([storeKey(value!)]);
          }
          expect(h.errors).toEqual([]);
        }),
        3_000,
      );
      // The generator does plant the real cookie among the junk.
      expect(adoptions).toBeGreaterThan(0);
    });

    it('never adopts a well-formed ID the server did not issue (session fixation)', async () => {
      await check(
        fc.asyncProperty(wellFormedId, async (forged) => {
          fc.pre(forged !== h.real.id);
          const { adopted, id, lookedUp } = await visit(`sessionid=${forged}`);
          expect(adopted).toBe(false);
          expect(id).not.toBe(forged);
          expect(await h.store.get(storeKey(forged))).toBeUndefined();
          // Signed: the forged value has no valid signature, so no lookup at all.
          expect(lookedUp).toEqual(signed ? [] : [storeKey(forged)]);
        }),
        2_000,
      );
    });

    it('refuses every near-valid variant of a real cookie', async () => {
      await check(
        fc.asyncProperty(mutationOf(h.real.value), async (variant) => {
          const real = h.real.value;
          fc.pre(variant !== real);
          const { adopted } = await visit(`sessionid=${variant}`);
          // Percent-decoding is the one change that gives back the same value.
          expect(adopted).toBe(parse(`sessionid=${variant}`).sessionid === real);
        }),
        3_000,
      );
    });
  });
}
