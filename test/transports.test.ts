import { afterEach, describe, expect, it } from 'vitest';
import { createSessions, generateId, type Sessions } from '../src/index.js';
import { memoryStore } from '../src/stores/memory.js';
import { fakeRequest } from './helpers.js';

let sessions: Sessions<any>;
afterEach(async () => {
  await sessions?.close();
});

async function run(
  headers: Record<string, string>,
  handler: (s: import('../src/index.js').Session<any>) => unknown,
  url?: string,
) {
  const request = { ...fakeRequest(headers.cookie, headers), url };
  const session = await sessions.load(request);
  const out = await handler(session);
  const { headers: sent } = await sessions.commit(session, 200);
  return { sent: Object.fromEntries(sent.map(([k, v]) => [k, v])), out, all: sent };
}

describe('header transport', () => {
  it('round-trips the ID through Authorization: Session <id> and a Session-Id response header, without cookies', async () => {
    sessions = createSessions({ store: memoryStore(), transport: { type: 'header' } });
    const first = await run({}, (s) => s.set('cart', ['a']));
    const id = first.sent['session-id']!;
    expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(first.all.some(([k]) => k === 'set-cookie')).toBe(false);
    expect(first.sent.vary).toBe('Authorization');
    const second = await run({ authorization: `Session ${id}` }, (s) => s.get('cart'));
    expect(second.out).toEqual(['a']);
    const ended = await run({ authorization: `Session ${id}` }, (s) => s.flush());
    expect(ended.sent['session-id']).toBe('');
  });

  it('reads a configurable header and ignores the session cookie', async () => {
    sessions = createSessions({
      store: memoryStore(),
      transport: { type: 'header', header: 'X-Session' },
    });
    const first = await run({}, (s) => s.set('n', 1));
    const id = first.sent['session-id']!;
    expect((await run({ 'x-session': id }, (s) => s.get('n'))).out).toBe(1);
    expect((await run({ cookie: `sessionid=${id}` }, (s) => s.get('n'))).out).toBeUndefined();
  });

  it('never adopts a forged or malformed ID from the header', async () => {
    sessions = createSessions({ store: memoryStore(), transport: { type: 'header' } });
    for (const value of [
      `Session ${generateId()}`,
      'Session ../../x',
      'Bearer abc',
      `Session ${'A'.repeat(43)}`,
      'Session',
    ]) {
      const r = await run({ authorization: value }, (s) => {
        expect(s.isNew).toBe(true);
        s.set('x', 1);
      });
      expect(value).not.toContain(r.sent['session-id']!);
    }
  });
});

describe('url transport', () => {
  it('is off by default: a URL parameter is never read', async () => {
    sessions = createSessions({ store: memoryStore() });
    const first = await run({}, (s) => s.set('n', 1));
    const id = /sessionid=([^;]+)/.exec(first.sent['set-cookie']!)![1]!;
    const viaUrl = await run({}, (s) => s.get('n'), `/cart?sessionid=${id}`);
    expect(viaUrl.out).toBeUndefined();
    expect((await run({}, (s) => s.encodeUrl('/cart'))).out).toBe('/cart');
  });

  it('keeps a cookie-less client in its session through the URL, with no-referrer and no-store', async () => {
    sessions = createSessions({ store: memoryStore(), transport: { type: 'url' } });
    const first = await run({}, (s) => {
      s.set('cart', ['a']);
      return s.encodeUrl('/cart/add?x=1#top');
    });
    const link = first.out as string;
    expect(link).toMatch(/^\/cart\/add\?x=1&sessionid=[A-Za-z0-9_-]{43}#top$/);
    expect(first.sent['referrer-policy']).toBe('no-referrer');
    expect(first.sent['cache-control']).toBe('private, no-store');
    const second = await run({}, (s) => s.update('cart', (c: string[]) => [...c, 'b']), link);
    expect(second.out).toEqual(['a', 'b']);
    expect(second.sent['referrer-policy']).toBe('no-referrer');
  });

  it('adds the ID only to links within this site, keeping relative links relative', async () => {
    sessions = createSessions({ store: memoryStore(), transport: { type: 'url' } });
    const r = await run({}, (s) => {
      s.set('n', 1);
      return [
        'cart/',
        '?a=1',
        '#top',
        'mailto:a@b.example',
        '//cdn.example/x',
        'https://evil.example/',
      ].map((u) => s.encodeUrl(u));
    });
    const [relative, query, fragment, mail, protocolRelative, absolute] = r.out as string[];
    expect(relative).toMatch(/^cart\/\?sessionid=[\w-]{43}$/);
    expect(query).toMatch(/^\?a=1&sessionid=[\w-]{43}$/);
    expect([fragment, mail, protocolRelative, absolute]).toEqual([
      '#top',
      'mailto:a@b.example',
      '//cdn.example/x',
      'https://evil.example/',
    ]);
  });

  it('uses the URL only when the request carries no session cookie', async () => {
    sessions = createSessions({ store: memoryStore(), transport: { type: 'url' } });
    const a = await run({}, (s) => s.set('who', 'a'));
    const b = await run({}, (s) => s.set('who', 'b'));
    const idA = /sessionid=([^;]+)/.exec(a.sent['set-cookie']!)![1]!;
    const idB = /sessionid=([^;]+)/.exec(b.sent['set-cookie']!)![1]!;
    const r = await run(
      { cookie: `sessionid=${idA}` },
      (s) => [s.get('who'), s.encodeUrl('/x')],
      `/?sessionid=${idB}`,
    );
    expect(r.out).toEqual(['a', '/x']);
  });

  it('never adopts a forged ID from the URL, and cycles the ID on login as usual', async () => {
    sessions = createSessions({ store: memoryStore(), transport: { type: 'url' } });
    const forged = generateId();
    const r = await run(
      {},
      (s) => {
        expect(s.isNew).toBe(true);
        s.set('n', 1);
        return s.encodeUrl('/');
      },
      `/?sessionid=${forged}`,
    );
    expect(r.out).not.toContain(forged);
    const link = r.out as string;
    const login = await run(
      {},
      (s) => {
        s.cycleKey();
        return s.encodeUrl('/');
      },
      link,
    );
    expect(login.out).not.toBe(link);
    expect((await run({}, (s) => s.get('n'), link)).out).toBeUndefined();
    expect((await run({}, (s) => s.get('n'), login.out as string)).out).toBe(1);
  });

  it('rejects option mistakes at creation', () => {
    expect(() =>
      createSessions({ store: memoryStore(), transport: { type: 'url', param: 'a b' } }),
    ).toThrow('[satchel] transport.param "a b" must be 1-64 of A-Z a-z 0-9 _ . -');
    expect(() =>
      createSessions({ store: memoryStore(), transport: { type: 'header', header: 'bad header' } }),
    ).toThrow('[satchel] transport.header "bad header" is not a valid header name');
  });
});
