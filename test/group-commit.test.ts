import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConflictError, createSessions, type Session, type Sessions } from '../src/index.js';
import type { SessionStore } from '../src/store.js';
import { memoryStore } from '../src/stores/memory.js';
import { exchange, fakeRequest } from './helpers.js';
import { asyncOnly } from './support/sync-access.js';

let sessions: Sessions<any> | undefined;
afterEach(async () => {
  await sessions?.close();
  sessions = undefined;
});

async function loadMany(n: number, cookie: string): Promise<Session<any>[]> {
  return Promise.all(Array.from({ length: n }, () => sessions!.load(fakeRequest(cookie))));
}

/**
 * `n` requests load one cart, each adds its item, and all commit at once;
 * every commit must answer with the session's cookie. The cart as saved.
 */
async function addConcurrently(store: SessionStore, n: number): Promise<string[]> {
  sessions = createSessions({ store });
  const first = await exchange(sessions, undefined, (s) => s.set('cart', []));
  // Counted from here: the writes of the adds only.
  vi.clearAllMocks();
  const loaded = await loadMany(n, `sessionid=${first.value}`);
  for (const [i, s] of loaded.entries())
    s.update('cart', (c: string[] = []) => [...c, `item-${i}`]);
  const results = await Promise.all(loaded.map((s) => sessions!.commit(s, 200)));
  expect(results.every((r) => r.headers.some(([h]) => h === 'set-cookie'))).toBe(true);
  return (await loadMany(1, `sessionid=${first.value}`))[0]!.get('cart') as string[];
}

describe('group commit: the queued commits of one session are one write', () => {
  it('keeps all 64 items of 64 concurrent adds and writes far fewer than 64 times', async () => {
    const store = asyncOnly(memoryStore());
    const update = vi.spyOn(store, 'update');
    expect(new Set(await addConcurrently(store, 64)).size).toBe(64);
    // The first commit goes alone; everything that queued behind it goes in one more write.
    expect(update.mock.calls.length).toBeLessThanOrEqual(2);
  });

  it('keeps all 64 items of 64 concurrent adds on a store that answers synchronously, in 64 writes and no conflict', async () => {
    // No queue forms (each write lands at once); a commit whose load is older
    // than this process's last save is replayed on that save, not conflicted.
    const store = memoryStore();
    const update = vi.spyOn(store.sync!, 'update');
    expect(new Set(await addConcurrently(store, 64)).size).toBe(64);
    expect(update.mock.calls.length).toBe(64);
  });

  it('saves the others when one request in a batch cannot be saved (too large)', async () => {
    const errors: unknown[] = [];
    sessions = createSessions({
      store: asyncOnly(memoryStore()),
      maxPayloadBytes: 2_000,
      logger: { warn: () => {}, error: (...a) => void errors.push(a) },
    });
    const first = await exchange(sessions, undefined, (s) => s.set('cart', []));
    const loaded = await loadMany(6, `sessionid=${first.value}`);
    for (const [i, s] of loaded.entries()) {
      if (i === 3) s.set('blob', 'x'.repeat(5_000));
      else s.update('cart', (c: string[] = []) => [...c, `item-${i}`]);
    }
    const settled = await Promise.allSettled(loaded.map((s) => sessions!.commit(s, 200)));
    expect(settled.map((r) => r.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
      'fulfilled',
    ]);
    const cart = (await loadMany(1, `sessionid=${first.value}`))[0]!.get('cart') as string[];
    expect(cart.sort()).toEqual(['item-0', 'item-1', 'item-2', 'item-4', 'item-5']);
  });

  it('gives every session in a batch its own copy of the saved data', async () => {
    sessions = createSessions({ store: asyncOnly(memoryStore()) });
    const first = await exchange(sessions, undefined, (s) => s.set('cart', []));
    const [a, b, c] = await loadMany(3, `sessionid=${first.value}`);
    for (const s of [a!, b!, c!]) s.update('cart', (cart: string[] = []) => [...cart, 'x']);
    await Promise.all([a!, b!, c!].map((s) => sessions!.commit(s, 200)));
    (b!.get('cart') as string[]).push('only-b');
    expect(c!.get('cart')).toEqual(['x', 'x', 'x']);
  });
});

/** Where each write lands at once (memory), and where it is awaited (as Redis or PostgreSQL). */
const STORE_KINDS = [
  ['synchronous', () => memoryStore()],
  ['asynchronous', () => asyncOnly(memoryStore())],
] as const;

/** Two processes on one store: this one (`sessions`) and `other`, closed afterwards. */
async function twoProcesses(
  newStore: () => SessionStore,
  run: (here: Sessions<any>, other: Sessions<any>) => Promise<void>,
): Promise<void> {
  const store = newStore();
  const here = createSessions({ store });
  sessions = here;
  const other = createSessions({ store });
  try {
    await run(here, other);
  } finally {
    await other.close();
  }
}

for (const [kind, newStore] of STORE_KINDS) {
  describe(`the parsed data a process keeps instead of parsing again (${kind} store)`, () => {
    const cookieOf = (value: string | undefined) => `sessionid=${value}`;

    it('reads what another process saved since, never the copy it kept', async () => {
      await twoProcesses(newStore, async (here, other) => {
        const first = await exchange(here, undefined, (s) => s.set('cart', ['a']));
        await exchange(other, first.value, (s) => s.update('cart', (c: string[]) => [...c, 'b']));
        const again = await here.load(fakeRequest(cookieOf(first.value)));
        expect(again.get('cart')).toEqual(['a', 'b']);
      });
    });

    it('is not changed by a handler that changes a value in place after the commit', async () => {
      sessions = createSessions({ store: newStore() });
      const first = await exchange(sessions, undefined, (s) => s.set('cart', ['a']));
      const s = await sessions.load(fakeRequest(cookieOf(first.value)));
      const cart = s.update('cart', (c: string[]) => [...c, 'b']) as string[];
      await sessions.commit(s, 200);
      cart.push('never saved');
      const next = await sessions.load(fakeRequest(cookieOf(first.value)));
      expect(next.get('cart')).toEqual(['a', 'b']);
    });

    it('keeps both items when an updater changes the loaded value in place and a conflict replays it', async () => {
      await twoProcesses(newStore, async (here, other) => {
        const first = await exchange(here, undefined, (s) => s.set('cart', ['a']));
        const mine = await here.load(fakeRequest(cookieOf(first.value)));
        const theirs = await other.load(fakeRequest(cookieOf(first.value)));
        const push = (item: string) => (c: string[]) => {
          c.push(item);
          return c;
        };
        mine.update('cart', push('mine'));
        theirs.update('cart', push('theirs'));
        await other.commit(theirs, 200);
        await here.commit(mine, 200);
        const after = await here.load(fakeRequest(cookieOf(first.value)));
        expect(after.get('cart')).toEqual(['a', 'theirs', 'mine']);
      });
    });

    it('never lets a change made while the save is awaited reach the next load', async () => {
      await twoProcesses(newStore, async (here, other) => {
        const first = await exchange(here, undefined, (s) => s.set('cart', ['a']));
        const s = await here.load(fakeRequest(cookieOf(first.value)));
        const cart = s.update('cart', (c: string[]) => [...c, 'b']) as string[];
        const saving = here.commit(s, 200);
        cart.length = 0; // code after res.redirect(), say: never saved
        await saving;
        const mine = await here.load(fakeRequest(cookieOf(first.value)));
        const there = await other.load(fakeRequest(cookieOf(first.value)));
        expect(mine.get('cart')).toEqual(['a', 'b']);
        expect(there.get('cart')).toEqual(['a', 'b']);
      });
    });

    it('saves nothing of an updater that changed its value in place and then threw', async () => {
      sessions = createSessions({ store: newStore() });
      const first = await exchange(sessions, undefined, (s) => s.set('cart', ['a']));
      const s = await sessions.load(fakeRequest(cookieOf(first.value)));
      expect(() =>
        s.update('cart', (c: string[]) => {
          c.push('half done');
          throw new Error('cart is full');
        }),
      ).toThrow('cart is full');
      s.set('seen', true);
      await sessions.commit(s, 200);
      const next = await sessions.load(fakeRequest(cookieOf(first.value)));
      expect(next.get('cart')).toEqual(['a']);
    });

    it('keeps a concurrent update when an updater reads its own key', async () => {
      await twoProcesses(newStore, async (here, other) => {
        const first = await exchange(here, undefined, (s) => s.set('cart', ['a']));
        const mine = await here.load(fakeRequest(cookieOf(first.value)));
        const theirs = await other.load(fakeRequest(cookieOf(first.value)));
        theirs.update('cart', (c: string[]) => [...c, 'theirs']);
        await other.commit(theirs, 200);
        mine.update('cart', (c: string[]) => {
          mine.get('cart'); // a logging helper, say
          c.push('mine');
          return c;
        });
        await here.commit(mine, 200);
        const after = await here.load(fakeRequest(cookieOf(first.value)));
        expect(after.get('cart')).toEqual(['a', 'theirs', 'mine']);
      });
    });

    it('applies an in-place change once when the value was read before the update', async () => {
      sessions = createSessions({ store: newStore() });
      const first = await exchange(sessions, undefined, (s) => s.set('cart', ['a']));
      const s = await sessions.load(fakeRequest(cookieOf(first.value)));
      const seen = s.get('cart') as string[];
      s.update('cart', (c: string[]) => {
        c.push('b');
        return c;
      });
      expect(seen).toEqual(['a']);
      await sessions.commit(s, 200);
      const next = await sessions.load(fakeRequest(cookieOf(first.value)));
      expect(next.get('cart')).toEqual(['a', 'b']);
    });
  });
}

describe('retries against other processes are bounded by time', () => {
  it('keeps retrying a contended compare-and-set until retryTimeout, then answers ConflictError', async () => {
    const store = memoryStore();
    sessions = createSessions({ store, retryTimeout: 300 });
    const first = await exchange(sessions, undefined, (s) => s.set('n', 0));
    // Another process wins every race.
    const update = vi.spyOn(store.sync!, 'update').mockReturnValue('conflict');
    const [s] = await loadMany(1, `sessionid=${first.value}`);
    s!.set('n', 1);
    const started = Date.now();
    await expect(sessions.commit(s!, 200)).rejects.toBeInstanceOf(ConflictError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(update.mock.calls.length).toBeGreaterThan(3);
  });

  it('still honours an explicit maxRetries', async () => {
    const store = memoryStore();
    sessions = createSessions({ store, maxRetries: 2 });
    const first = await exchange(sessions, undefined, (s) => s.set('n', 0));
    const update = vi.spyOn(store.sync!, 'update').mockReturnValue('conflict');
    const [s] = await loadMany(1, `sessionid=${first.value}`);
    s!.set('n', 1);
    await expect(sessions.commit(s!, 200)).rejects.toBeInstanceOf(ConflictError);
    expect(update).toHaveBeenCalledTimes(2);
  });
});
