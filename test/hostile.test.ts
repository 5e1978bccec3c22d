import { afterEach, describe, expect, it, vi } from 'vitest';
import { createSessions, generateId, type Session, type Sessions } from '../src/index.js';
import { memoryStore } from '../src/stores/memory.js';
import { exchange, fakeRequest } from './helpers.js';

let sessions: Sessions<any>;
afterEach(async () => {
  await sessions?.close();
});

async function run(
  request: { cookie?: string; url?: string; host?: string; encrypted?: boolean },
  handler: (s: Session<any>) => unknown,
) {
  const headers: Record<string, string> = request.host ? { host: request.host } : {};
  const session = await sessions.load({
    ...fakeRequest(request.cookie, headers),
    url: request.url,
    encrypted: request.encrypted ?? false,
  });
  const out = await handler(session);
  const { headers: sent } = await sessions.commit(session, 200);
  return { out, sent, setCookie: sent.filter(([k]) => k === 'set-cookie').map(([, v]) => v) };
}

describe('forged IDs and the lock', () => {
  it('does not take a lock for a forged well-formed ID (no lock write per forged cookie)', async () => {
    const store = memoryStore();
    const lock = vi.spyOn(store, 'lock' as never);
    sessions = createSessions({ store, lock: true });
    for (let i = 0; i < 20; i++) await exchange(sessions, generateId(), (s) => s.get('x'));
    expect(lock).not.toHaveBeenCalled();
    // A live session is still locked.
    const first = await exchange(sessions, undefined, (s) => s.set('n', 1));
    await exchange(sessions, first.value, (s) => s.get('n'));
    expect(lock).toHaveBeenCalledTimes(1);
  });

  it('reads the record again once the lock is held, so a change made meanwhile is seen', async () => {
    sessions = createSessions({ store: memoryStore(), lock: true });
    const first = await exchange(sessions, undefined, (s) => s.set('n', 1));
    const cookie = `sessionid=${first.value}`;
    const holder = await sessions.load(fakeRequest(cookie));
    const waiting = sessions.load(fakeRequest(cookie));
    holder.set('n', 2);
    await sessions.commit(holder, 200);
    const second = await waiting;
    expect(second.get('n')).toBe(2);
    await sessions.commit(second, 200);
  });
});

describe('URL transport: session fixation through a link', () => {
  it('never writes an ID that arrived in a URL into a cookie', async () => {
    sessions = createSessions({ store: memoryStore(), transport: { type: 'url' } });
    const attacker = await run({}, (s) => s.set('cart', ['planted']));
    const id = /sessionid=([^;]+)/.exec(attacker.setCookie[0]!)![1]!;
    // The victim opens the attacker's link; the session works for that page...
    const victim = await run({ url: `/cart/?sessionid=${id}` }, (s) => {
      s.update('cart', (c: string[] = []) => [...c, 'mine']);
      return s.get('cart');
    });
    expect(victim.out).toEqual(['planted', 'mine']);
    // ...but no Set-Cookie carries it, so the browser does not keep it for good.
    expect(victim.setCookie).toEqual([]);
    expect(victim.sent).toContainEqual(['referrer-policy', 'no-referrer']);
  });

  it('gives a session that started from a URL a new ID when its key is cycled, and that one may be a cookie', async () => {
    sessions = createSessions({ store: memoryStore(), transport: { type: 'url' } });
    const first = await run({}, (s) => s.set('n', 1));
    const id = /sessionid=([^;]+)/.exec(first.setCookie[0]!)![1]!;
    const login = await run({ url: `/login?sessionid=${id}` }, (s) => s.cycleKey());
    expect(login.setCookie).toHaveLength(1);
    expect(login.setCookie[0]).not.toContain(id);
  });
});

describe('encodeUrl: links that look local but are not', () => {
  const hostile = [
    ' https://evil.example/',
    '\u0001https://evil.example/',
    'ht\ttps://evil.example/',
    'https:\n//evil.example/',
    '\\\\evil.example/x',
    '/\\evil.example/x',
    '\\/evil.example/x',
    'HTTPS://evil.example/',
    'javascript:alert(1)',
    '//evil.example',
    'https://shop.example@evil.example/',
  ];
  it.each(hostile)('does not send the session ID to another site through %j', async (link) => {
    sessions = createSessions({ store: memoryStore(), transport: { type: 'url' } });
    const r = await run({ url: '/cart/', host: 'shop.example' }, (s) => {
      s.set('n', 1);
      return s.encodeUrl(link);
    });
    expect(r.out).toBe(link);
  });

  it('adds the ID to links of this very origin, normalized as a browser would read them', async () => {
    sessions = createSessions({ store: memoryStore(), transport: { type: 'url' } });
    const r = await run({ url: '/cart/', host: 'shop.example' }, (s) => {
      s.set('n', 1);
      return ['http://shop.example/a', ' /b', '/c\\d', 'e'].map((u) => s.encodeUrl(u));
    });
    const [absolute, spaced, slashed, relative] = r.out as string[];
    expect(absolute).toMatch(/^\/a\?sessionid=[\w-]{43}$/);
    expect(spaced).toMatch(/^\/b\?sessionid=[\w-]{43}$/);
    expect(slashed).toMatch(/^\/c\/d\?sessionid=[\w-]{43}$/);
    expect(relative).toMatch(/^e\?sessionid=[\w-]{43}$/);
  });

  it('treats another port or scheme as another site', async () => {
    sessions = createSessions({ store: memoryStore(), transport: { type: 'url' } });
    const r = await run({ url: '/', host: 'shop.example' }, (s) => {
      s.set('n', 1);
      return ['http://shop.example:8080/', 'https://shop.example/'].map((u) => s.encodeUrl(u));
    });
    expect(r.out).toEqual(['http://shop.example:8080/', 'https://shop.example/']);
  });
});

describe("Django's semantics where they protect users", () => {
  it('deletes the old record when a logout request ends in a 5xx', async () => {
    sessions = createSessions({ store: memoryStore() });
    const first = await exchange(sessions, undefined, (s) => s.set('user', 'ann'));
    const out = await exchange(sessions, first.value, (s) => s.flush(), 500);
    expect(out.value).toBeUndefined();
    const thief = await sessions.load(fakeRequest(`sessionid=${first.value}`));
    expect(thief.isNew).toBe(true);
    expect(thief.get('user')).toBeUndefined();
  });

  it('retires the old ID of cycleKey() even when the request ends in a 5xx', async () => {
    sessions = createSessions({ store: memoryStore() });
    const first = await exchange(sessions, undefined, (s) => s.set('user', 'ann'));
    await exchange(sessions, first.value, (s) => s.cycleKey(), 500);
    const again = await sessions.load(fakeRequest(`sessionid=${first.value}`));
    expect(again.isNew).toBe(true);
  });

  it('takes negative seconds in setExpiry as already expired, as Django does', async () => {
    sessions = createSessions({ store: memoryStore() });
    const first = await exchange(sessions, undefined, (s) => s.set('user', 'ann'));
    const ended = await exchange(sessions, first.value, (s) => s.setExpiry(-1));
    expect(ended.value).toBeUndefined();
    const again = await sessions.load(fakeRequest(`sessionid=${first.value}`));
    expect(again.isNew).toBe(true);
  });
});
