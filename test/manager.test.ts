import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  createSessions,
  generateId,
  SessionInterruptedError,
  type SessionStore,
  type Sessions,
  storeKey,
} from '../src/index.js';
import { memoryStore } from '../src/stores/memory.js';
import { exchange, fakeRequest } from './helpers.js';
import { asyncOnly } from './support/sync-access.js';

let sessions: Sessions<any>;
let store: SessionStore;
afterEach(async () => {
  vi.useRealTimers();
  await sessions?.close();
});

function make(options: Parameters<typeof createSessions>[0] = {}): Sessions<any> {
  store = memoryStore();
  sessions = createSessions({ store, ...options });
  return sessions;
}

/** Spies on every store write so tests can say "nothing was written". */
function spyWrites(s: SessionStore) {
  return {
    create: vi.spyOn(s, 'create'),
    // The memory store's update calls its synchronous twin, which the core may also call directly.
    update: vi.spyOn(s.sync!, 'update'),
    touch: vi.spyOn(s, 'touch'),
    destroy: vi.spyOn(s, 'destroy'),
  };
}

describe('IDs and strict mode', () => {
  it('issues 256-bit base64url IDs and keeps only their SHA-256 in the store', async () => {
    make();
    const { value } = await exchange(sessions, undefined, (s) => s.set('a', 1));
    expect(value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(value!, 'base64url')).toHaveLength(32);
    expect(await store.get(value!)).toBeUndefined();
    expect(await store.get(storeKey(value!))).toBeDefined();
  });

  it('never adopts a forged ID: session fixation gets a fresh ID', async () => {
    make();
    const planted = generateId();
    const { value } = await exchange(sessions, planted, (s) => {
      expect(s.isNew).toBe(true);
      s.set('user', 'victim');
    });
    expect(value).not.toBe(planted);
    expect(await store.get(storeKey(planted))).toBeUndefined();
  });

  it('creates no record for an unknown ID that is only read', async () => {
    make();
    const writes = spyWrites(store);
    const result = await exchange(sessions, generateId(), (s) =>
      expect(s.get('cart')).toBeUndefined(),
    );
    expect(writes.create).not.toHaveBeenCalled();
    expect(writes.update).not.toHaveBeenCalled();
    // The stale cookie is deleted, with the same Path it was set with.
    expect(result.setCookie).toEqual([
      expect.stringMatching(/^sessionid=; Max-Age=0; Path=\/; Expires=Thu, 01 Jan 1970/),
    ]);
  });

  it('never looks up a malformed ID in the store', async () => {
    make();
    const get = vi.spyOn(store.sync!, 'get');
    for (const bad of [
      '',
      'short',
      'a'.repeat(44),
      `${'a'.repeat(42)}/`,
      '../../etc/passwd',
      `${generateId()}.x`,
    ]) {
      await exchange(sessions, encodeURIComponent(bad), (s) => expect(s.isNew).toBe(true));
    }
    expect(get).not.toHaveBeenCalled();
  });

  it('writes nothing and sets no cookie for an untouched or empty new session', async () => {
    make();
    const writes = spyWrites(store);
    const untouched = await exchange(sessions, undefined, () => {});
    const emptied = await exchange(sessions, undefined, (s) => {
      s.set('a', 1);
      s.delete('a');
    });
    expect(untouched.setCookie).toEqual([]);
    expect(emptied.setCookie).toEqual([]);
    expect(Object.values(writes).every((spy) => spy.mock.calls.length === 0)).toBe(true);
  });

  it('rejects a tampered signature and accepts IDs signed by an older key (rotation)', async () => {
    const oldKey = 'o'.repeat(32);
    const newKey = 'n'.repeat(32);
    make({ secrets: oldKey });
    const { value } = await exchange(sessions, undefined, (s) => s.set('a', 1));
    expect(value).toMatch(/^[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}$/);
    const rotated = createSessions({ store, secrets: [newKey, oldKey] });
    await exchange(rotated, value, (s) => expect(s.get('a')).toBe(1));
    const tampered = `${value!.slice(0, -2)}${value!.endsWith('AA') ? 'AB' : 'AA'}`;
    await exchange(rotated, tampered, (s) => expect(s.get('a')).toBeUndefined());
    await exchange(rotated, `${value}x`, (s) => expect(s.get('a')).toBeUndefined());
    const unsigned = value!.split('.')[0];
    await exchange(rotated, unsigned, (s) => expect(s.get('a')).toBeUndefined());
  });
});

describe('cookie and headers', () => {
  it('sets an HttpOnly, SameSite=Lax, Path=/ cookie with the expiry, and Vary: Cookie', async () => {
    make();
    const r = await exchange(sessions, undefined, (s) => s.set('a', 1));
    expect(r.setCookie).toHaveLength(1);
    expect(r.setCookie[0]).toMatch(
      /^sessionid=[A-Za-z0-9_-]{43}; Max-Age=1209600; Path=\/; Expires=.+; HttpOnly; SameSite=Lax$/,
    );
    expect(r.vary).toBe('Cookie');
  });

  it('adds Vary: Cookie whenever the session was read, and not when it was not', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => s.set('a', 1));
    expect((await exchange(sessions, a.value, (s) => s.get('a'))).vary).toBe('Cookie');
    expect((await exchange(sessions, a.value, () => {})).vary).toBeUndefined();
  });

  it('sets Secure on HTTPS requests, and trusts X-Forwarded-Proto only with trustProxy', async () => {
    for (const trustProxy of [false, true]) {
      make({ trustProxy });
      const session = await sessions.load(fakeRequest(undefined, { 'x-forwarded-proto': 'https' }));
      session.set('a', 1);
      const { headers } = await sessions.commit(session, 200);
      expect(headers[0]![1].includes('; Secure')).toBe(trustProxy);
      await sessions.close();
    }
  });

  it('sends a browser-session cookie (no Max-Age) with expireAtBrowserClose or setExpiry(0)', async () => {
    make({ expireAtBrowserClose: true });
    const a = await exchange(sessions, undefined, (s) => {
      s.set('a', 1);
      expect(s.expireAtBrowserClose).toBe(true);
    });
    expect(a.setCookie[0]).not.toMatch(/Max-Age|Expires/);
    make();
    const b = await exchange(sessions, undefined, (s) => {
      s.set('a', 1);
      s.setExpiry(0);
    });
    expect(b.setCookie[0]).not.toMatch(/Max-Age|Expires/);
  });

  it('deletes the cookie, with the same Domain and Path, when the session is flushed', async () => {
    make({ cookie: { domain: 'shop.example', path: '/shop' } });
    const a = await exchange(sessions, undefined, (s) => s.set('a', 1));
    const r = await exchange(sessions, a.value, (s) => s.flush());
    expect(r.setCookie).toEqual([
      expect.stringMatching(
        /^sessionid=; Max-Age=0; Domain=shop\.example; Path=\/shop; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax$/,
      ),
    ]);
    expect(await store.get(storeKey(a.value!))).toBeUndefined();
  });

  it('deletes the cookie and the record when the session is emptied', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => s.set('a', 1));
    const r = await exchange(sessions, a.value, (s) => s.delete('a'));
    expect(r.value).toBeUndefined();
    expect(await store.get(storeKey(a.value!))).toBeUndefined();
  });

  it('saves nothing when the response is a 5xx', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => s.set('a', 1));
    const r = await exchange(sessions, a.value, (s) => s.set('a', 2), 500);
    expect(r.setCookie).toEqual([]);
    await exchange(sessions, a.value, (s) => expect(s.get('a')).toBe(1));
    const fresh = await exchange(sessions, undefined, (s) => s.set('a', 1), 503);
    expect(fresh.setCookie).toEqual([]);
  });

  it('refuses a cookie over 4096 bytes instead of letting the browser drop it', async () => {
    make({
      cookie: {
        domain: `${'a'.repeat(60)}.${'b'.repeat(60)}.example`,
        path: `/${'p'.repeat(4000)}`,
      },
    });
    await expect(exchange(sessions, undefined, (s) => s.set('a', 1))).rejects.toMatchObject({
      code: 'ERR_SATCHEL_COOKIE_TOO_LARGE',
    });
  });

  it('refuses a payload over maxPayloadBytes and saves nothing', async () => {
    make({ maxPayloadBytes: 1000 });
    await expect(
      exchange(sessions, undefined, (s) => s.set('big', 'x'.repeat(2000))),
    ).rejects.toMatchObject({
      code: 'ERR_SATCHEL_PAYLOAD_TOO_LARGE',
    });
  });
});

describe('cycleKey and flush', () => {
  it('keeps the data under a new ID and deletes the old record on cycleKey', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => s.set('cart', ['a']));
    const b = await exchange(sessions, a.value, (s) => {
      s.cycleKey();
      s.set('user', 'ann');
    });
    expect(b.value).toBeDefined();
    expect(b.value).not.toBe(a.value);
    expect(await store.get(storeKey(a.value!))).toBeUndefined();
    await exchange(sessions, b.value, (s) => {
      expect(s.get('cart')).toEqual(['a']);
      expect(s.get('user')).toBe('ann');
    });
    await exchange(sessions, a.value, (s) => expect(s.isNew).toBe(true));
  });

  it('drops data and ID on flush, and issues a new ID if data is set again', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => s.set('user', 'ann'));
    const b = await exchange(sessions, a.value, (s) => {
      s.flush();
      expect(s.get('user')).toBeUndefined();
      s.set('cart', []);
    });
    expect(b.value).not.toBe(a.value);
    await exchange(sessions, b.value, (s) => expect(s.keys()).toEqual(['cart']));
  });
});

describe('expiry', () => {
  it('expires a session after the idle timeout and slides it on use (touch throttled)', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    make({ idleTimeout: 600, touchInterval: 60 });
    const touch = vi.spyOn(store, 'touch');
    const a = await exchange(sessions, undefined, (s) => s.set('a', 1));
    vi.advanceTimersByTime(30_000);
    const early = await exchange(sessions, a.value, (s) => s.get('a'));
    expect(touch).not.toHaveBeenCalled();
    expect(early.setCookie).toEqual([]);
    vi.advanceTimersByTime(500_000);
    const touched = await exchange(sessions, a.value, (s) => expect(s.get('a')).toBe(1));
    expect(touch).toHaveBeenCalledTimes(1);
    expect(touched.setCookie[0]).toMatch(/Max-Age=600;/);
    vi.advanceTimersByTime(599_000);
    await exchange(sessions, a.value, (s) => expect(s.get('a')).toBe(1));
    vi.advanceTimersByTime(601_000);
    await exchange(sessions, a.value, (s) => expect(s.get('a')).toBeUndefined());
  });

  it('moves the stored expiry of a changed session at most once per touchInterval, and never past what the save computed', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    make({ idleTimeout: 600, touchInterval: 60 });
    const update = vi.spyOn(store.sync!, 'update');
    const saved = () => update.mock.lastCall![1].expiresAt;
    const start = Date.now();
    const a = await exchange(sessions, undefined, (s) => s.set('n', 0));
    vi.advanceTimersByTime(30_000);
    const early = await exchange(sessions, a.value, (s) => s.set('n', 1));
    expect(saved()).toBe(start + 600_000);
    // The cookie says what the record says.
    expect(early.setCookie[0]).toMatch(/Max-Age=570;/);
    vi.advanceTimersByTime(40_000);
    await exchange(sessions, a.value, (s) => s.set('n', 2));
    expect(saved()).toBe(start + 670_000);
    // A shorter expiry is written at once, however soon.
    await exchange(sessions, a.value, (s) => s.setExpiry(20));
    expect(saved()).toBe(start + 90_000);
  });

  it('expires a session at the absolute timeout however active it is', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    make({ idleTimeout: 600, absoluteTimeout: 1800 });
    const a = await exchange(sessions, undefined, (s) => s.set('a', 1));
    for (let t = 0; t < 5; t++) {
      vi.advanceTimersByTime(300_000);
      await exchange(sessions, a.value, (s) => s.update('a', (n: number) => n + 1));
    }
    await exchange(sessions, a.value, (s) => {
      expect(s.get('a')).toBe(6);
      expect(s.expiresAt.getTime()).toBeLessThanOrEqual(Date.now() + 300_000);
    });
    vi.advanceTimersByTime(300_001);
    await exchange(sessions, a.value, (s) => expect(s.get('a')).toBeUndefined());
  });

  it('follows Django set_expiry: seconds, a Date, 0 and null', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    make({ idleTimeout: 600, absoluteTimeout: null });
    const at = new Date(Date.now() + 3_600_000);
    const a = await exchange(sessions, undefined, (s) => {
      s.set('a', 1);
      s.setExpiry(60);
      expect(s.expiryAge).toBe(60);
    });
    vi.advanceTimersByTime(61_000);
    await exchange(sessions, a.value, (s) => expect(s.get('a')).toBeUndefined());
    const b = await exchange(sessions, undefined, (s) => {
      s.set('a', 1);
      s.setExpiry(at);
      expect(s.expiresAt).toEqual(at);
      expect(s.expireAtBrowserClose).toBe(false);
    });
    vi.advanceTimersByTime(3_000_000);
    await exchange(sessions, b.value, (s) => {
      expect(s.get('a')).toBe(1);
      s.setExpiry(null);
      expect(s.expiryAge).toBe(600);
    });
  });
});

describe('corrupt data and a store that is down', () => {
  it('reads corrupt stored data as an empty session and logs it without the session ID', async () => {
    const warn = vi.fn();
    make({ logger: { warn, error: vi.fn() } });
    const a = await exchange(sessions, undefined, (s) => s.set('a', 1));
    const key = storeKey(a.value!);
    const record = (await store.get(key))!;
    await store.update(
      key,
      { ...record, data: '{"a":1', version: record.version + 1 },
      record.version,
    );
    await exchange(sessions, a.value, (s) => {
      expect(s.isNew).toBe(true);
      expect(s.get('a')).toBeUndefined();
    });
    expect(warn).toHaveBeenCalledTimes(1);
    expect(JSON.stringify(warn.mock.calls)).not.toContain(a.value!);
    expect(JSON.stringify(warn.mock.calls)).not.toContain(key);
  });

  it('turns a store failure into StoreUnavailableError naming the store, thrown or rejected', async () => {
    for (const wrap of [(s: SessionStore) => s, asyncOnly]) {
      store = memoryStore();
      sessions = createSessions({ store: wrap(store) });
      vi.spyOn(store.sync!, 'get').mockImplementation(() => {
        throw new Error('connect ECONNREFUSED 127.0.0.1:6379');
      });
      const loading = sessions.load(fakeRequest(`sessionid=${generateId()}`));
      expect(loading).toBeInstanceOf(Promise);
      await expect(loading).rejects.toMatchObject({
        name: 'StoreUnavailableError',
        code: 'ERR_SATCHEL_STORE_UNAVAILABLE',
        status: 503,
        message: '[satchel] [memory] get failed: connect ECONNREFUSED 127.0.0.1:6379',
      });
      await sessions.close();
    }
  });
});

describe('stores that answer synchronously', () => {
  it('never bypasses a wrapper that replaces get or update (one that audits, delays or fails calls)', async () => {
    const inner = memoryStore();
    const seen: string[] = [];
    const audited: SessionStore = {
      ...inner,
      get(key) {
        seen.push('get');
        return inner.get(key);
      },
      update(key, record, version) {
        seen.push('update');
        return inner.update(key, record, version);
      },
    };
    sessions = createSessions({ store: audited });
    const first = await exchange(sessions, undefined, (s) => s.set('n', 1));
    await exchange(sessions, first.value, (s) => s.set('n', 2));
    expect(seen).toEqual(['get', 'update']);
    await sessions.close();
  });

  it('loads and saves with a few promise jobs, not one or more per store call', async () => {
    const jobs: Record<string, number> = {};
    for (const [kind, wrap] of [
      ['synchronous', (s: SessionStore) => s],
      ['asynchronous', asyncOnly],
    ] as const) {
      sessions = createSessions({ store: wrap(memoryStore()) });
      const first = await exchange(sessions, undefined, (s) => s.set('n', 1));
      jobs[kind] = await jobsDuring(async () => {
        const session = await sessions.load(fakeRequest(`sessionid=${first.value}`));
        session.set('n', 2);
        await sessions.commit(session, 200);
      });
      expect((await sessions.load(fakeRequest(`sessionid=${first.value}`))).get('n')).toBe(2);
      await sessions.close();
    }
    // Two store calls (get, update): awaited, each costs jobs at every layer it passes.
    expect(jobs.synchronous).toBeLessThanOrEqual(3);
    expect(jobs.asynchronous).toBeGreaterThanOrEqual(jobs.synchronous! + 4);
  });
});

/** How many promise jobs (microtasks) ran while `work` did. */
async function jobsDuring(work: () => Promise<void>): Promise<number> {
  let jobs = 0;
  let done = false;
  const tick = () => {
    if (done) return;
    jobs++;
    queueMicrotask(tick);
  };
  queueMicrotask(tick);
  await work();
  done = true;
  return jobs;
}

describe('concurrency', () => {
  it('keeps every update when many requests update one session at once', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => s.set('cart', []));
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        exchange(sessions, a.value, (s) =>
          s.update('cart', (cart: string[]) => [...cart, `item-${i}`]),
        ),
      ),
    );
    await exchange(sessions, a.value, (s) =>
      expect(new Set(s.get('cart'))).toHaveProperty('size', 50),
    );
  });

  it('never overwrites keys this request did not touch', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => s.set('seed', 0));
    await Promise.all(
      Array.from({ length: 30 }, (_, i) => exchange(sessions, a.value, (s) => s.set(`k${i}`, i))),
    );
    await exchange(sessions, a.value, (s) => expect(s.keys()).toHaveLength(31));
  });

  it('does not resurrect a session flushed by another request (logout wins)', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => s.set('cart', []));
    const late = await sessions.load(fakeRequest(`sessionid=${a.value}`));
    late.update('cart', (c: string[]) => [...c, 'x']);
    await exchange(sessions, a.value, (s) => s.flush());
    await expect(sessions.commit(late, 200)).rejects.toBeInstanceOf(SessionInterruptedError);
    expect(await store.get(storeKey(a.value!))).toBeUndefined();
  });

  it('serializes requests with lock: true and releases the lock after a handler fails', async () => {
    make({ lock: true });
    const a = await exchange(sessions, undefined, (s) => s.set('n', 0));
    let inside = 0;
    let maxInside = 0;
    await Promise.all(
      Array.from({ length: 20 }, () =>
        exchange(sessions, a.value, async (s) => {
          inside++;
          maxInside = Math.max(maxInside, inside);
          const n = s.get('n') as number;
          await new Promise((r) => setTimeout(r, 1));
          s.set('n', n + 1);
          inside--;
        }),
      ),
    );
    expect(maxInside).toBe(1);
    const failed = await sessions.load(fakeRequest(`sessionid=${a.value}`));
    await sessions.abandon(failed);
    await exchange(sessions, a.value, (s) => expect(s.get('n')).toBe(20));
  });

  it('fails with LockTimeoutError when the lock cannot be had in time', async () => {
    make({ lock: true, lockTimeout: 50 });
    const a = await exchange(sessions, undefined, (s) => s.set('n', 0));
    const holder = await sessions.load(fakeRequest(`sessionid=${a.value}`));
    await expect(sessions.load(fakeRequest(`sessionid=${a.value}`))).rejects.toMatchObject({
      code: 'ERR_SATCHEL_LOCK_TIMEOUT',
    });
    await sessions.commit(holder, 200);
    const next = await sessions.load(fakeRequest(`sessionid=${a.value}`));
    await sessions.commit(next, 200);
  });
});

describe('sessions.clearExpired', () => {
  it("passes onProgress through to the store's batches", async () => {
    const store = memoryStore();
    const local = createSessions({ store, idleTimeout: 1 });
    for (let i = 0; i < 5; i++) await exchange(local, undefined, (s) => s.set('n', i));
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const seen: { removed: number }[] = [];
    expect(await local.clearExpired({ onProgress: (p) => void seen.push(p) })).toBe(5);
    expect(seen.at(-1)!.removed).toBe(5);
    await local.close();
  });
});
