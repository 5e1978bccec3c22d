/**
 * Stored payloads that are not what satchel wrote (a corrupted row, a file
 * edited by hand, data from another serializer): arbitrary strings, JSON
 * that is not an object, and rich-serializer tags with nonsense inside. The
 * manager reads them as an empty session and logs a warning; it never throws,
 * never runs code, and never pollutes a prototype.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  generateId,
  jsonSerializer,
  richSerializer,
  SerializeError,
  type Serializer,
  storeKey,
} from '../../src/index.js';
import { anyString } from './arbitraries.js';
import { check, fuzzFile } from './config.js';
import { type Harness, harness, headerValue, request } from './support.js';

fuzzFile('payloads');

const TAGS = [
  'Date',
  'BigInt',
  'Number',
  'undefined',
  'Map',
  'Set',
  'Object',
  'Class',
  'Function',
  '__proto__',
  'constructor',
  '',
];

/** JSON-ish values with rich-serializer tags in odd places. */
const tagged = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.jsonValue({ maxDepth: 2 }),
    tie('tag'),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(
      fc.oneof(
        fc.string({ maxLength: 6 }),
        fc.constantFrom('$t', '__proto__', 'constructor', 'prototype', 'v', 'n'),
      ),
      tie('value'),
      { maxKeys: 4 },
    ),
  ),
  tag: fc.record(
    {
      $t: fc.constantFrom(...TAGS),
      v: tie('value'),
      n: fc.oneof(fc.constantFrom(...TAGS), fc.string({ maxLength: 8 })),
    },
    { requiredKeys: ['$t'] },
  ),
}));

/** Stored data: arbitrary text, JSON of any shape, or objects full of tags. */
const payload = fc.oneof(
  anyString(300),
  fc.json({ maxDepth: 3 }),
  fc
    .dictionary(fc.string({ maxLength: 8 }), tagged.value, { maxKeys: 5 })
    .map((o) => JSON.stringify(o)),
  tagged.value.map((v) => JSON.stringify(v)),
  fc.constantFrom(
    '{"__proto__":{"polluted":true}}',
    '{"constructor":{"prototype":{"polluted":true}}}',
    '{"a":{"$t":"Class","n":"Function","v":"return process.exit(1)"}}',
    '{"a":{"$t":"BigInt","v":"1e999"}}',
    '{"a":{"$t":"Date","v":"soon"}}',
    '{"_satchel_flash":"not an object","_satchel_expiry":{"at":"never"}}',
    '{"_satchel_expiry":-1}',
    `{"deep":${'['.repeat(5000)}${']'.repeat(5000)}}`,
    '',
    'null',
    '[]',
    '"string"',
  ),
);

function isPlainObject(text: string, serializer: Serializer): boolean {
  try {
    serializer.parse(text);
    return true;
  } catch {
    return false;
  }
}

for (const kind of ['json', 'rich'] as const) {
  describe(`stored payloads with the ${kind} serializer`, () => {
    let h: Harness;
    let serializer: Serializer;
    beforeAll(async () => {
      h = await harness({ serializer: kind });
      serializer = kind === 'json' ? jsonSerializer : richSerializer();
    });
    afterAll(() => h.sessions.close());

    it('reads anything it cannot parse as an empty session with one warning, and never throws', async () => {
      let corrupt = 0;
      let tooDeep = 0;
      await check(
        fc.asyncProperty(payload, async (data) => {
          const id = generateId();
          const key = storeKey(id);
          const now = Date.now();
          await h.store.create(key, { data, version: 1, createdAt: now, expiresAt: now + 60_000 });
          h.reset();
          const session = await h.sessions.load(request({ cookie: `sessionid=${id}` }));
          const readable = isPlainObject(data, serializer);
          expect(session.isNew).toBe(!readable);
          if (!readable) {
            corrupt++;
            expect(h.warnings).toHaveLength(1);
            expect(JSON.stringify(h.warnings)).not.toContain(id);
            // The unreadable record is gone, and the visitor starts over.
            expect(await h.store.get(key)).toBeUndefined();
          }
          // Whatever was loaded can be changed and saved again — except data
          // nested deeper than the serializer can write (JSON.parse reads a
          // depth JSON.stringify with a replacer cannot write back): that save
          // fails with a clear SerializeError, never anything else.
          session.set('after', 'fuzz');
          try {
            const { headers } = await h.sessions.commit(session, 200);
            expect(headerValue(headers, h.sessions)).toBeDefined();
          } catch (err) {
            expect(err).toBeInstanceOf(SerializeError);
            expect(data.length).toBeGreaterThan(5_000);
            tooDeep++;
          }
          expect(h.errors).toEqual([]);
          // No payload reaches a prototype.
          expect(({} as Record<string, unknown>).polluted).toBeUndefined();
          expect(Object.keys(Object.prototype)).toEqual([]);
        }),
        3_000,
      );
      expect(corrupt).toBeGreaterThan(0);
      if (tooDeep > 0)
        console.info(`[fuzz] ${kind}: ${tooDeep} readable payloads too deep to save again`);
    });
  });
}
