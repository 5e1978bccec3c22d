import { describe, expect, it, vi } from 'vitest';
import { memoryStore } from '../../src/stores/memory.js';
import { describeStore, newKey, newRecord } from './conformance.js';

describeStore('memory', () => memoryStore(), { lock: true, owners: true, count: true });

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
});
