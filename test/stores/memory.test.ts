import { describe, expect, it, vi } from 'vitest';
import { memoryStore } from '../../src/stores/memory.js';
import { describeStore, newKey, newRecord } from './conformance.js';

describeStore('memory', () => memoryStore(), {
  lock: true,
  owners: true,
  count: true,
  sync: true,
});

describe('memory store', () => {
  it('evicts least-recently-used records beyond maxEntries', async () => {
    const store = memoryStore({ maxEntries: 10 });
    const keys = Array.from({ length: 30 }, newKey);
    for (const key of keys) await store.create(key, newRecord());
    for (const key of keys.slice(0, 20)) expect(await store.get(key)).toBeUndefined();
    for (const key of keys.slice(20)) expect(await store.get(key)).toBeDefined();
    await store.close();
  });

  it('keeps a record it has just read when evicting', async () => {
    const store = memoryStore({ maxEntries: 3 });
    const [a, b, c, d] = [newKey(), newKey(), newKey(), newKey()];
    for (const key of [a, b, c]) await store.create(key, newRecord());
    await store.get(a);
    await store.create(d, newRecord());
    expect(await store.get(a)).toBeDefined();
    expect(await store.get(b)).toBeUndefined();
    expect(await store.get(c)).toBeDefined();
    expect(await store.get(d)).toBeDefined();
    await store.close();
  });

  it('starts no timer, so it never keeps the process alive', async () => {
    const setTimeoutSpy = vi.spyOn(globalThis, 'setTimeout');
    const setIntervalSpy = vi.spyOn(globalThis, 'setInterval');
    try {
      const store = memoryStore();
      for (let i = 0; i < 20; i++) {
        const key = newKey();
        await store.create(key, newRecord({ expiresAt: Date.now() + 10 + i }));
        await store.get(key);
        await store.touch(key, Date.now() + 60_000);
      }
      await store.clearExpired();
      await store.close();
      expect(setTimeoutSpy).not.toHaveBeenCalled();
      expect(setIntervalSpy).not.toHaveBeenCalled();
    } finally {
      setTimeoutSpy.mockRestore();
      setIntervalSpy.mockRestore();
    }
  });

  it('refuses a maxEntries that is not a positive integer', () => {
    for (const maxEntries of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => memoryStore({ maxEntries })).toThrowError(
        `[satchel] memory store: maxEntries must be a positive integer; got ${maxEntries}`,
      );
    }
  });

  it('a flood of anonymous sessions does not evict signed-in users', async () => {
    const store = memoryStore({ maxEntries: 100 });
    const users = Array.from({ length: 10 }, newKey);
    for (const [i, key] of users.entries())
      await store.create(key, newRecord({ owner: `user-${i}` }));
    // A visitor who signs in later: created anonymous, then given an owner.
    const signedIn = newKey();
    await store.create(signedIn, newRecord({ owner: undefined }));
    expect(await store.update(signedIn, newRecord({ version: 2, owner: 'late' }), 1)).toBe('ok');

    const bots = Array.from({ length: 1_000 }, newKey);
    for (const key of bots) await store.create(key, newRecord({ owner: undefined }));

    for (const key of [...users, signedIn]) expect(await store.get(key)).toBeDefined();
    expect(await store.count!(Date.now())).toBe(100);
    // The most recent anonymous sessions are the ones kept.
    expect(await store.get(bots.at(-1)!)).toBeDefined();
    expect(await store.get(bots[0]!)).toBeUndefined();
    await store.close();
  });

  it('evicts signed-in users, least recently used first, only when nothing else is left', async () => {
    const store = memoryStore({ maxEntries: 3 });
    const [a, b, c, d] = [newKey(), newKey(), newKey(), newKey()];
    await store.create(a, newRecord({ owner: undefined }));
    await store.create(b, newRecord({ owner: 'b' }));
    await store.create(c, newRecord({ owner: 'c' }));
    await store.create(d, newRecord({ owner: 'd' }));
    expect(await store.get(a)).toBeUndefined();
    await store.create(newKey(), newRecord({ owner: 'e' }));
    expect(await store.get(b)).toBeUndefined();
    expect(await store.listByOwner!('b')).toEqual([]);
    expect(await store.get(c)).toBeDefined();
    await store.close();
  });

  it('refuses an unknown option key with a did-you-mean', () => {
    expect(() => memoryStore({ max: 5 } as never)).toThrowError(
      '[satchel] memory store: unknown option "max": known options: maxEntries',
    );
    expect(() => memoryStore({ maxEntrys: 5 } as never)).toThrowError(
      '[satchel] memory store: unknown option "maxEntrys": did you mean "maxEntries"?',
    );
  });

  it('reports clearExpired progress once, with the count', async () => {
    const store = memoryStore();
    for (let i = 0; i < 3; i++)
      await store.create(newKey(), newRecord({ expiresAt: Date.now() - 1 }));
    const seen: Array<{ removed: number; total?: number }> = [];
    expect(await store.clearExpired(Date.now(), { onProgress: (p) => seen.push(p) })).toBe(3);
    expect(seen).toEqual([{ removed: 3, total: 3 }]);
    await store.close();
  });
});
