/**
 * The other ways an ID travels: an `Authorization: Session <id>` (or custom)
 * header, and the opt-in URL parameter. Whatever the header or the request
 * target holds, loading never throws and adopts only the real ID.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeKey } from '../../src/index.js';
import { anyString, mutationOf, nearValidId, wellFormedId } from './arbitraries.js';
import { check, fuzzFile } from './config.js';
import { type Harness, harness, headerValue, request } from './support.js';

fuzzFile('transports');

describe('header transport', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness({ transport: { type: 'header' } });
  });
  afterAll(() => h.sessions.close());

  const authorization = (real: string) =>
    fc.oneof(
      anyString(120),
      fc
        .tuple(
          fc.constantFrom('Session', 'session', 'SESSION', 'Bearer', 'Basic', 'Session:', ''),
          fc.constantFrom(' ', '  ', '\t', '', ' \t '),
          fc.oneof(wellFormedId, nearValidId, mutationOf(real), fc.constant(real), anyString(50)),
          fc.constantFrom('', ' ', ' x', ',', `, Session ${real}`),
        )
        .map((parts) => parts.join('')),
    );

  it('never throws and adopts only `Session <the real ID>`', async () => {
    let adoptions = 0;
    await check(
      fc.asyncProperty(authorization(h.real.value), async (value) => {
        h.reset();
        const session = await h.sessions.load(request({ authorization: value }));
        if (!session.isNew) {
          adoptions++;
          expect(value.trim()).toMatch(new RegExp(`^session\\s+${h.real.value}$`, 'i'));
        }
        // Only a well-formed ID is ever looked up.
        for (const key of h.gets) expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/);
        session.set('seen', 1);
        const { headers } = await h.sessions.commit(session, 200);
        const issued = headerValue(headers, h.sessions);
        if (session.isNew || issued !== h.real.value) expect(value.includes(issued!)).toBe(false);
      }),
      3_000,
    );
    expect(adoptions).toBeGreaterThan(0);
  });
});

describe('url transport', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness({ transport: { type: 'url' } });
  });
  afterAll(() => h.sessions.close());

  const target = (real: string) =>
    fc.oneof(
      anyString(150),
      fc.webUrl({ withQueryParameters: true, withFragments: true }),
      fc
        .tuple(
          fc.constantFrom('/', '/cart', '*', '', '//x', '/a?b=1&', '/?'),
          fc.array(
            fc.tuple(
              fc.constantFrom('sessionid', 'SESSIONID', 'sessionid[]', 'session%69d', 'x', ''),
              fc.oneof(
                wellFormedId,
                nearValidId,
                mutationOf(real),
                fc.constant(real),
                anyString(40),
              ),
            ),
            { maxLength: 4 },
          ),
          fc.constantFrom('', '#', `#sessionid=${real}`, '#frag'),
        )
        .map(([path, params, hash]) => {
          const query = params.map(([k, v]) => `${k}=${v}`).join('&');
          return `${path}${path.includes('?') ? '' : '?'}${query}${hash}`;
        }),
    );

  it('never throws, reads only the query string, and adopts only the real ID', async () => {
    let adoptions = 0;
    await check(
      fc.asyncProperty(target(h.real.value), fc.boolean(), async (url, withCookie) => {
        h.reset();
        const cookie: Record<string, string> = withCookie
          ? { cookie: 'sessionid=not-a-session' }
          : {};
        const session = await h.sessions.load(request(cookie, url));
        const query = url.split('#')[0]!;
        const param = query.includes('?')
          ? new URLSearchParams(query.slice(query.indexOf('?') + 1)).get('sessionid')
          : null;
        // A cookie, even a bad one, wins over the URL.
        expect(session.isNew).toBe(withCookie || param !== h.real.value);
        if (!session.isNew) adoptions++;
        for (const key of h.gets)
          expect([storeKey(h.real.value), storeKey(param ?? '')]).toContain(key);
        session.set('seen', 1);
        await h.sessions.commit(session, 200);
      }),
      3_000,
    );
    expect(adoptions).toBeGreaterThan(0);
  });
});
