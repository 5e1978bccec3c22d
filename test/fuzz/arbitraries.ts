/** Inputs an attacker controls, as fast-check arbitraries. */
import fc from 'fast-check';

/** Characters that matter to cookie, header and URL parsers. */
const SPECIAL = [
  ...'=;, %"\\\t\r\n\u0000\u007f+/.&?#:@[]{}<>|`\'',
  '%zz',
  '%E0%A4%A',
  '%0',
  '%%',
  '%00',
  '\u00ff',
  '\u{1F600}',
  '\uD800',
];

/** Any string: ASCII, any UTF-16 (lone surrogates included), graphemes, or mostly parser-significant characters. */
export const anyString = (maxLength = 200): fc.Arbitrary<string> =>
  fc.oneof(
    fc.string({ maxLength }),
    fc.string({ unit: 'binary', maxLength }),
    fc.string({ unit: 'grapheme', maxLength }),
    fc.string({ unit: fc.constantFrom(...SPECIAL), maxLength }),
    fc
      .array(fc.oneof(fc.constantFrom(...SPECIAL), fc.string({ maxLength: 4 })), { maxLength })
      .map((parts) => parts.join('')),
  );

/** A well-formed ID: 32 random bytes, base64url. */
export const wellFormedId = fc
  .uint8Array({ minLength: 32, maxLength: 32 })
  .map((bytes) => Buffer.from(bytes).toString('base64url'));

const B64URL = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'];

/** One small change to `value`: a character replaced, dropped or added, truncation, extension, case, encoding. */
export function mutationOf(value: string): fc.Arbitrary<string> {
  const at = fc.nat({ max: Math.max(0, value.length - 1) });
  const char = fc.oneof(
    fc.constantFrom(...B64URL),
    fc.constantFrom(...SPECIAL),
    fc.string({ minLength: 1, maxLength: 1, unit: 'binary' }),
  );
  return fc.oneof(
    fc.tuple(at, char).map(([i, c]) => value.slice(0, i) + c + value.slice(i + 1)),
    at.map((i) => value.slice(0, i) + value.slice(i + 1)),
    fc.tuple(at, char).map(([i, c]) => value.slice(0, i) + c + value.slice(i)),
    at.map((i) => value.slice(0, i)),
    fc.string({ minLength: 1, maxLength: 50 }).map((tail) => value + tail),
    fc.string({ minLength: 1, maxLength: 10 }).map((head) => head + value),
    fc.tuple(at, fc.nat({ max: 5 })).map(([i, bit]) => {
      // A bit flip in one character's code.
      const code = value.charCodeAt(i) ^ (1 << bit);
      return value.slice(0, i) + String.fromCharCode(code) + value.slice(i + 1);
    }),
    fc.constant(value.toUpperCase()),
    fc.constant(value.toLowerCase()),
    fc.constant(
      encodeURIComponent(value).replace(/[A-Za-z]/g, (c) => `%${c.charCodeAt(0).toString(16)}`),
    ),
    fc.constant(`"${value}"`),
    fc.constant(` ${value} `),
    fc.constant(value.replace(/-/g, '+').replace(/_/g, '/')),
    fc.constant(`${value}=`),
  );
}

/** Near-valid IDs: a well-formed one, changed once. */
export const nearValidId = wellFormedId.chain((id) => mutationOf(id));

/** A cookie name: mostly the session cookie's, sometimes a look-alike. */
const cookieName = fc.oneof(
  fc.constant('sessionid'),
  fc.constantFrom(
    'SESSIONID',
    'sessionid ',
    ' sessionid',
    'session id',
    'sessionid\t',
    'sessionId',
    '__Host-sessionid',
  ),
  fc.string({ unit: fc.constantFrom(...'abcdefgsion_-'), minLength: 1, maxLength: 10 }),
  anyString(12),
);

const cookieValue = fc.oneof(wellFormedId, nearValidId, anyString(60));

/** A structured Cookie header: many cookies, duplicate names, odd separators and encodings, or raw junk. */
export const cookieHeader = (extra: fc.Arbitrary<string> = cookieValue): fc.Arbitrary<string> =>
  fc.oneof(
    anyString(300),
    fc
      .tuple(
        fc.array(fc.tuple(cookieName, fc.oneof(cookieValue, extra)), { maxLength: 30 }),
        fc.constantFrom('; ', ';', ' ; ', ', ', ';;', '\t;'),
      )
      .map(([pairs, sep]) => pairs.map(([n, v]) => `${n}=${v}`).join(sep)),
  );
