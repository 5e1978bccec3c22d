import { afterEach, describe, expect, it, vi } from 'vitest';
import { createSessions, type SessionEvents, type Sessions } from '../src/index.js';
import { cookieStore } from '../src/stores/cookie.js';
import { memoryStore } from '../src/stores/memory.js';
import { exchange } from './helpers.js';

let sessions: Sessions<any>;
afterEach(async () => {
  vi.useRealTimers();
  await sessions?.close();
});

async function login(user: string, userAgent: string) {
  const anon = await exchange(sessions, undefined, (s) => s.set('cart', ['a']));
  let handle: string | undefined;
  const r = await exchange(sessions, anon.value, (s) => {
    s.cycleKey();
    s.setOwner(user, { userAgent });
  });
  await exchange(sessions, r.value, (s) => {
    handle = s.handle;
  });
  return { cookie: r.value!, handle: handle! };
}

describe('per-user session index', () => {
  it('lists a user’s sessions with device info and marks the current one, never showing IDs', async () => {
    sessions = createSessions({ store: memoryStore() });
    const laptop = await login('ann', 'Firefox on Linux');
    const phone = await login('ann', 'Safari on iOS');
    await login('bob', 'Chrome');
    let list: Awaited<ReturnType<Sessions['listByOwner']>> = [];
    await exchange(sessions, laptop.cookie, async (s) => {
      expect(s.owner).toBe('ann');
      list = await sessions.listByOwner('ann', { current: s });
    });
    expect(list.map((x) => x.device.userAgent).sort()).toEqual([
      'Firefox on Linux',
      'Safari on iOS',
    ]);
    expect(list.find((x) => x.current)?.handle).toBe(laptop.handle);
    expect(list.map((x) => x.handle).sort()).toEqual([laptop.handle, phone.handle].sort());
    expect(JSON.stringify(list)).not.toContain(laptop.cookie);
    expect(JSON.stringify(list)).not.toContain(phone.cookie);
    expect(list[0]!.lastSeenAt.getTime()).toBeLessThanOrEqual(Date.now());
  });

  it('signs out one device by handle: its next request finds an empty session', async () => {
    sessions = createSessions({ store: memoryStore() });
    const laptop = await login('ann', 'laptop');
    const phone = await login('ann', 'phone');
    await sessions.revoke(phone.handle);
    await exchange(sessions, phone.cookie, (s) => {
      expect(s.isNew).toBe(true);
      expect(s.get('cart')).toBeUndefined();
    });
    await exchange(sessions, laptop.cookie, (s) => expect(s.get('cart')).toEqual(['a']));
  });

  it('signs out everywhere else, keeping the current session', async () => {
    sessions = createSessions({ store: memoryStore() });
    const keep = await login('ann', 'laptop');
    const others = [await login('ann', 'phone'), await login('ann', 'tablet')];
    const bob = await login('bob', 'x');
    let removed = 0;
    await exchange(sessions, keep.cookie, async (s) => {
      removed = await sessions.revokeAllForOwner('ann', { except: s });
    });
    expect(removed).toBe(2);
    for (const other of others)
      await exchange(sessions, other.cookie, (s) => expect(s.owner).toBeUndefined());
    await exchange(sessions, keep.cookie, (s) => expect(s.owner).toBe('ann'));
    await exchange(sessions, bob.cookie, (s) => expect(s.owner).toBe('bob'));
  });

  it('unties a session with setOwner(null)', async () => {
    sessions = createSessions({ store: memoryStore() });
    const a = await login('ann', 'laptop');
    await exchange(sessions, a.cookie, (s) => s.setOwner(null));
    expect(await sessions.listByOwner('ann')).toEqual([]);
  });

  it('refuses a malformed handle before touching the store', async () => {
    sessions = createSessions({ store: memoryStore() });
    await expect(sessions.revoke('../../etc/passwd')).rejects.toThrow(/not a session handle/);
  });

  it('says clearly that the cookie store cannot list or revoke sessions', async () => {
    sessions = createSessions({ store: cookieStore({ secrets: 'k'.repeat(32) }) });
    await expect(sessions.listByOwner('ann')).rejects.toMatchObject({
      code: 'ERR_SATCHEL_UNSUPPORTED',
      message:
        '[satchel] [cookie] the cookie store cannot list sessions by owner: it keeps nothing on the server',
    });
  });
});

describe('lifecycle events', () => {
  it('reports created, rotated, destroyed and expired sessions, with handles only', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    sessions = createSessions({ store: memoryStore(), absoluteTimeout: 3600 });
    const seen: [keyof SessionEvents, unknown][] = [];
    for (const name of ['created', 'rotated', 'destroyed', 'expired'] as const) {
      sessions.on(name, (e) => seen.push([name, e]));
    }
    const a = await exchange(sessions, undefined, (s) => s.set('x', 1));
    const b = await exchange(sessions, a.value, (s) => {
      s.cycleKey();
      s.setOwner('ann');
    });
    await exchange(sessions, b.value, (s) => s.flush());
    const c = await exchange(sessions, undefined, (s) => s.set('x', 1));
    vi.advanceTimersByTime(3_600_001);
    await exchange(sessions, c.value, () => {});
    expect(seen.map(([name]) => name)).toEqual(['created', 'rotated', 'destroyed', 'created']);
    expect(seen[1]![1]).toMatchObject({
      owner: 'ann',
      oldHandle: expect.any(String),
      handle: expect.any(String),
    });
    expect(seen[2]![1]).toMatchObject({ reason: 'flush' });
    expect(JSON.stringify(seen)).not.toContain(a.value!);
  });

  it('reports the store being unavailable, and a throwing listener breaks nothing', async () => {
    const store = memoryStore();
    const errors = vi.fn();
    sessions = createSessions({ store, logger: { warn: vi.fn(), error: errors } });
    const outages: SessionEvents['store-unavailable'][] = [];
    sessions.on('store-unavailable', (e) => outages.push(e));
    const stop = sessions.on('created', () => {
      throw new Error('listener bug');
    });
    await exchange(sessions, undefined, (s) => s.set('x', 1));
    expect(errors).toHaveBeenCalledWith('[satchel] a "created" listener threw', expect.anything());
    stop();
    vi.spyOn(store, 'create').mockRejectedValueOnce(new Error('ECONNRESET'));
    await expect(exchange(sessions, undefined, (s) => s.set('x', 1))).rejects.toMatchObject({
      status: 503,
    });
    expect(outages).toEqual([expect.objectContaining({ store: 'memory', operation: 'create' })]);
  });

  it('counts sessions removed by clearExpired', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    sessions = createSessions({ store: memoryStore(), idleTimeout: 60 });
    const expired = vi.fn();
    sessions.on('expired', expired);
    await exchange(sessions, undefined, (s) => s.set('x', 1));
    vi.advanceTimersByTime(61_000);
    expect(await sessions.clearExpired()).toBe(1);
    expect(expired).toHaveBeenCalledWith({ count: 1, via: 'cleanup' });
  });
});
