/**
 * The one behaviour suite every store passes. Each store's test file calls
 * `describeStore` once; what a store cannot do is declared in `capabilities`,
 * never discovered by a failing case.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SessionStore, type StoredSession, syncAccess } from '../../src/store.js';
import { viaSync } from '../support/sync-access.js';

export interface StoreCapabilities {
  /** The store implements `lock` and `unlock`. */
  lock?: boolean;
  /**
   * Opens another store over the same backing data as `factory`, to check
   * that records survive close and reopen. Absent for stores that forget.
   */
  persistent?: () => Promise<SessionStore> | SessionStore;
  /** The store implements the owner index: `listByOwner` and `destroyByOwner`. */
  owners?: boolean;
  /** The store implements `count(now)`. */
  count?: boolean;
  /**
   * The store offers `sync`, the synchronous twins of `get` and `update`:
   * every case runs a second time with those two answered by the twins.
   */
  sync?: boolean;
}

type Factory = () => Promise<SessionStore> | SessionStore;

const HOUR = 3_600_000;

/** A key shaped like the manager's: a SHA-256 digest in base64url. */
export function newKey(): string {
  return randomBytes(32).toString('base64url');
}

/** A live record; `overrides` replace any field. */
export function newRecord(overrides: Partial<StoredSession> = {}): StoredSession {
  const now = Date.now();
  return {
    data: JSON.stringify({ cart: ['apple', 'pear'] }),
    version: 1,
    expiresAt: now + HOUR,
    createdAt: now - 1_000,
    owner: 'user-42',
    ...overrides,
  };
}

async function inChunks<T>(
  items: T[],
  size: number,
  fn: (item: T, index: number) => Promise<unknown>,
) {
  for (let start = 0; start < items.length; start += size) {
    await Promise.all(items.slice(start, start + size).map((item, i) => fn(item, start + i)));
  }
}

export function describeStore(
  name: string,
  factory: Factory,
  capabilities: StoreCapabilities = {},
): void {
  describe(`${name} store: conformance`, () => {
    let store: SessionStore;

    beforeAll(async () => {
      store = await factory();
    });

    afterAll(async () => {
      await store?.close();
    });

    it('returns undefined for a key that was never written', async () => {
      expect(await store.get(newKey())).toBeUndefined();
    });

    it('returns every field of a created record, owner included', async () => {
      const key = newKey();
      const record = newRecord({ version: 3 });
      expect(await store.create(key, record)).toBe(true);
      expect(await store.get(key)).toStrictEqual(record);

      const anonymous = newKey();
      const { owner: _, ...withoutOwner } = newRecord();
      expect(await store.create(anonymous, withoutOwner)).toBe(true);
      expect(await store.get(anonymous)).toStrictEqual(withoutOwner);
    });

    it('hands out copies, so changing a returned record changes nothing stored', async () => {
      const key = newKey();
      const record = newRecord();
      await store.create(key, record);
      record.data = 'changed by the caller after create';
      const read = await store.get(key);
      expect(read?.data).toBe(newRecord().data);
      if (read) read.version = 99;
      expect((await store.get(key))?.version).toBe(1);
    });

    it('refuses to create over a live record and leaves it unchanged', async () => {
      const key = newKey();
      const first = newRecord({ data: 'first' });
      await store.create(key, first);
      expect(await store.create(key, newRecord({ data: 'second', version: 9 }))).toBe(false);
      expect(await store.get(key)).toStrictEqual(first);
    });

    it('creates over a record that has expired', async () => {
      const key = newKey();
      await store.create(key, newRecord({ data: 'old', expiresAt: Date.now() - 1_000 }));
      const fresh = newRecord({ data: 'new' });
      expect(await store.create(key, fresh)).toBe(true);
      expect(await store.get(key)).toStrictEqual(fresh);
    });

    it('updates when the expected version matches and stores the new version', async () => {
      const key = newKey();
      await store.create(key, newRecord({ version: 4 }));
      const next = newRecord({ version: 5, data: 'after', owner: 'user-7' });
      expect(await store.update(key, next, 4)).toBe('ok');
      expect(await store.get(key)).toStrictEqual(next);
      // The same owner, another creation time: every field is still replaced.
      const later = newRecord({ version: 6, data: 'again', owner: 'user-7', createdAt: 1 });
      expect(await store.update(key, later, 5)).toBe('ok');
      expect(await store.get(key)).toStrictEqual(later);
      // Only data and version change (the expiry kept), then the expiry moves.
      const body = { ...later, version: 7, data: 'body only' };
      expect(await store.update(key, body, 6)).toBe('ok');
      expect(await store.get(key)).toStrictEqual(body);
      const moved = { ...body, version: 8, expiresAt: body.expiresAt + 60_000 };
      expect(await store.update(key, moved, 7)).toBe('ok');
      expect(await store.get(key)).toStrictEqual(moved);
    });

    it('reports a conflict for a stale version and leaves the record unchanged', async () => {
      const key = newKey();
      const current = newRecord({ version: 6 });
      await store.create(key, current);
      expect(await store.update(key, newRecord({ version: 6, data: 'late' }), 5)).toBe('conflict');
      expect(await store.update(key, newRecord({ version: 8, data: 'early' }), 7)).toBe('conflict');
      expect(await store.get(key)).toStrictEqual(current);
    });

    it('reports missing when updating a key that was never written or has expired', async () => {
      const never = newKey();
      expect(await store.update(never, newRecord({ version: 2 }), 1)).toBe('missing');
      expect(await store.get(never)).toBeUndefined();

      const expired = newKey();
      await store.create(expired, newRecord({ expiresAt: Date.now() - 1_000 }));
      expect(await store.update(expired, newRecord({ version: 2 }), 1)).toBe('missing');
      expect(await store.get(expired)).toBeUndefined();
    });

    it('moves the expiry on touch and keeps version and data', async () => {
      const key = newKey();
      const record = newRecord({ version: 12 });
      await store.create(key, record);
      const later = record.expiresAt + HOUR;
      await store.touch(key, later);
      expect(await store.get(key)).toStrictEqual({ ...record, expiresAt: later });
    });

    it('ignores touch on a key that was never written or has expired', async () => {
      const never = newKey();
      await store.touch(never, Date.now() + HOUR);
      expect(await store.get(never)).toBeUndefined();

      const expired = newKey();
      await store.create(expired, newRecord({ expiresAt: Date.now() - 1_000 }));
      await store.touch(expired, Date.now() + HOUR);
      expect(await store.get(expired)).toBeUndefined();
      expect(await store.create(expired, newRecord())).toBe(true);
    });

    it('destroys a record, and destroying again or a missing key is a no-op', async () => {
      const key = newKey();
      await store.create(key, newRecord());
      await store.destroy(key);
      expect(await store.get(key)).toBeUndefined();
      await expect(store.destroy(key)).resolves.toBeUndefined();
      await expect(store.destroy(newKey())).resolves.toBeUndefined();
      expect(await store.update(key, newRecord({ version: 2 }), 1)).toBe('missing');
    });

    it('stops returning a record once its expiresAt has passed', async () => {
      const key = newKey();
      await store.create(key, newRecord({ expiresAt: Date.now() + 500 }));
      expect(await store.get(key)).toBeDefined();
      await sleep(600);
      expect(await store.get(key)).toBeUndefined();
    });

    it('treats a record written already expired as absent', async () => {
      const key = newKey();
      await store.create(key, newRecord({ expiresAt: Date.now() - 1 }));
      expect(await store.get(key)).toBeUndefined();
    });

    it('clears only expired records, across several batches, and returns the count', async () => {
      // Far enough ahead that every record the earlier cases wrote counts as
      // expired: clear those first so the count below is exact.
      const cutoff = Date.now() + 24 * HOUR;
      await store.clearExpired(cutoff);

      const expired = Array.from({ length: 2_500 }, newKey);
      const live = Array.from({ length: 5 }, newKey);
      // The first expires exactly at the cutoff, which counts as expired.
      await inChunks(expired, 100, (key, i) =>
        store.create(key, newRecord({ expiresAt: cutoff - i })),
      );
      await Promise.all(
        live.map((key, i) => store.create(key, newRecord({ expiresAt: cutoff + 1 + i * HOUR }))),
      );

      expect(await store.clearExpired(cutoff)).toBe(2_500);
      for (const key of live) expect(await store.get(key)).toBeDefined();
      // Still in the future by the wall clock, so only clearExpired removed them.
      for (const key of [expired[0]!, expired[1_234]!, expired[2_499]!]) {
        expect(await store.get(key)).toBeUndefined();
      }
      expect(await store.clearExpired(cutoff)).toBe(0);
    });

    it('reports clearExpired progress, ending with the count it returns', async () => {
      const cutoff = Date.now() + 24 * HOUR;
      await store.clearExpired(cutoff);
      await inChunks(Array.from({ length: 30 }, newKey), 10, (key, i) =>
        store.create(key, newRecord({ expiresAt: cutoff - i })),
      );
      const seen: Array<{ removed: number; total?: number }> = [];
      const removed = await store.clearExpired(cutoff, {
        onProgress: (progress) => seen.push({ ...progress }),
      });
      expect(removed).toBe(30);
      expect(seen.length).toBeGreaterThan(0);
      expect(seen.at(-1)!.removed).toBe(removed);
      for (let i = 1; i < seen.length; i++) {
        expect(seen[i]!.removed).toBeGreaterThanOrEqual(seen[i - 1]!.removed);
      }
      for (const { removed: soFar, total } of seen) {
        if (total !== undefined) expect(soFar).toBeLessThanOrEqual(total);
      }
    });

    it('clears records that are already expired when called without a time', async () => {
      await store.clearExpired();
      const gone = newKey();
      const kept = newKey();
      await store.create(gone, newRecord({ expiresAt: Date.now() - 1_000 }));
      await store.create(kept, newRecord());
      expect(await store.clearExpired()).toBe(1);
      expect(await store.get(kept)).toBeDefined();
    });

    it('round-trips a 1 MiB value', async () => {
      const key = newKey();
      const big = '0123456789abcdef'.repeat(65_536);
      await store.create(key, newRecord({ data: big }));
      const read = await store.get(key);
      expect(read?.data.length).toBe(big.length);
      expect(read?.data === big).toBe(true);

      const bigger = 'ünïcødé ✓ '.repeat(104_858);
      expect(await store.update(key, newRecord({ data: bigger, version: 2 }), 1)).toBe('ok');
      expect((await store.get(key))?.data === bigger).toBe(true);
    });

    it('round-trips unicode, control characters and NUL exactly', async () => {
      const key = newKey();
      const data = [
        'emoji 😀 👩‍👩‍👧 🇳🇱',
        'rtl שלום مرحبا',
        'nul \u0000 inside',
        'controls \u0001\u001f\u007f \n\r\t',
        'quotes " \' ` \\ \\u0000',
        'separators \u2028\u2029',
        'combining é vs é',
        'json {"a":[1,2]}',
      ].join(' | ');
      const record = newRecord({ data, owner: 'ユーザー 😀 \u0000' });
      await store.create(key, record);
      expect(await store.get(key)).toStrictEqual(record);
    });

    it('loses no update when 50 callers compare-and-set one key at once', async () => {
      const key = newKey();
      const initial = 7;
      await store.create(
        key,
        newRecord({ version: initial, data: JSON.stringify({ counter: 0 }) }),
      );

      const increment = async () => {
        for (let attempt = 0; attempt < 1_000; attempt++) {
          const current = await store.get(key);
          if (current === undefined) throw new Error('the record vanished');
          const { counter } = JSON.parse(current.data) as { counter: number };
          const next = {
            ...current,
            version: current.version + 1,
            data: JSON.stringify({ counter: counter + 1 }),
          };
          const result = await store.update(key, next, current.version);
          if (result === 'ok') return;
          expect(result).toBe('conflict');
        }
        throw new Error('gave up after 1,000 conflicts');
      };
      await Promise.all(Array.from({ length: 50 }, increment));

      const final = await store.get(key);
      expect(final?.version).toBe(initial + 50);
      expect(JSON.parse(final?.data ?? '{}')).toEqual({ counter: 50 });
    });

    it('keeps different keys independent', async () => {
      const a = newKey();
      const b = newKey();
      const recordB = newRecord({ data: 'b' });
      await store.create(a, newRecord({ data: 'a' }));
      await store.create(b, recordB);
      await store.update(a, newRecord({ data: 'a2', version: 2 }), 1);
      await store.touch(a, Date.now() + 2 * HOUR);
      await store.destroy(a);
      expect(await store.get(a)).toBeUndefined();
      expect(await store.get(b)).toStrictEqual(recordB);
    });

    it('offers synchronous get and update exactly when it declares them', () => {
      expect(syncAccess(store) !== undefined).toBe(Boolean(capabilities.sync));
    });

    if (capabilities.sync) {
      it('throws StoreUnavailableError from its synchronous get and update after close', async () => {
        const other = await factory();
        await other.close();
        const closed = { code: 'ERR_SATCHEL_STORE_UNAVAILABLE', store: other.name };
        expect(() => other.sync!.get(newKey())).toThrow(expect.objectContaining(closed));
        expect(() => other.sync!.update(newKey(), newRecord(), 1)).toThrow(
          expect.objectContaining(closed),
        );
      });
    }

    it('rejects calls after close with StoreUnavailableError', async () => {
      const other = await factory();
      await other.close();
      await expect(other.get(newKey())).rejects.toMatchObject({
        code: 'ERR_SATCHEL_STORE_UNAVAILABLE',
        store: other.name,
      });
      await expect(other.close()).resolves.toBeUndefined();
    });

    if (capabilities.lock) {
      describe('lock', () => {
        it('grants a lock to one token at a time', async () => {
          const key = newKey();
          expect(await store.lock?.(key, 'first', 10_000)).toBe(true);
          expect(await store.lock?.(key, 'second', 10_000)).toBe(false);
          await store.unlock?.(key, 'first');
          expect(await store.lock?.(key, 'second', 10_000)).toBe(true);
          await store.unlock?.(key, 'second');
        });

        it('ignores unlock by a token that does not hold the lock', async () => {
          const key = newKey();
          expect(await store.lock?.(key, 'holder', 10_000)).toBe(true);
          await store.unlock?.(key, 'intruder');
          expect(await store.lock?.(key, 'intruder', 10_000)).toBe(false);
          await store.unlock?.(key, 'holder');
        });

        it('lets another token take a lock once it has expired', async () => {
          const key = newKey();
          expect(await store.lock?.(key, 'crashed', 30)).toBe(true);
          await sleep(60);
          expect(await store.lock?.(key, 'next', 10_000)).toBe(true);
          expect(await store.lock?.(key, 'crashed', 10_000)).toBe(false);
          await store.unlock?.(key, 'next');
        });

        it('lets the holder take its lock again, which extends it', async () => {
          const key = newKey();
          expect(await store.lock?.(key, 'holder', 40)).toBe(true);
          expect(await store.lock?.(key, 'holder', 10_000)).toBe(true);
          await sleep(60);
          expect(await store.lock?.(key, 'other', 10_000)).toBe(false);
          await store.unlock?.(key, 'holder');
        });

        it('locks different keys independently, and apart from their sessions', async () => {
          const a = newKey();
          const b = newKey();
          expect(await store.lock?.(a, 'x', 10_000)).toBe(true);
          expect(await store.lock?.(b, 'y', 10_000)).toBe(true);
          expect(await store.get(a)).toBeUndefined();
          expect(await store.create(a, newRecord())).toBe(true);
          await store.unlock?.(a, 'x');
          await store.unlock?.(b, 'y');
          expect(await store.get(a)).toBeDefined();
        });
      });
    }

    if (capabilities.count) {
      it('counts live records only', async () => {
        const before = await store.count!(Date.now());
        await store.create(newKey(), newRecord());
        await store.create(newKey(), newRecord());
        await store.create(newKey(), newRecord({ expiresAt: Date.now() - 1 }));
        expect(await store.count!(Date.now())).toBe(before + 2);
      });
    }

    if (capabilities.owners) {
      describe('owner index', () => {
        const owner = () => `user-${randomBytes(6).toString('hex')}`;
        const keysOf = async (who: string) =>
          (await store.listByOwner!(who)).map((row) => row.key).sort();

        it('lists the live records of an owner, with their keys, and nobody else’s', async () => {
          const ann = owner();
          const [a, b, other, expired] = [newKey(), newKey(), newKey(), newKey()];
          await store.create(a, newRecord({ owner: ann }));
          await store.create(b, newRecord({ owner: ann, data: 'second' }));
          await store.create(other, newRecord({ owner: owner() }));
          await store.create(expired, newRecord({ owner: ann, expiresAt: Date.now() - 1 }));
          expect(await keysOf(ann)).toEqual([a, b].sort());
          const row = (await store.listByOwner!(ann)).find((r) => r.key === b)!;
          expect(row.record.data).toBe('second');
          expect(row.record.owner).toBe(ann);
          expect(await store.listByOwner!(owner())).toEqual([]);
        });

        it('follows owner changes made by update and forgets destroyed records', async () => {
          const [ann, bob] = [owner(), owner()];
          const key = newKey();
          await store.create(key, newRecord({ owner: ann }));
          expect(await store.update(key, newRecord({ owner: bob, version: 2 }), 1)).toBe('ok');
          expect(await keysOf(ann)).toEqual([]);
          expect(await keysOf(bob)).toEqual([key]);
          const anonymous = newRecord({ version: 3 });
          delete anonymous.owner;
          expect(await store.update(key, anonymous, 2)).toBe('ok');
          expect(await keysOf(bob)).toEqual([]);
          await store.update(key, newRecord({ owner: bob, version: 4 }), 3);
          await store.destroy(key);
          expect(await keysOf(bob)).toEqual([]);
        });

        it('destroys every record of an owner except one, and counts them', async () => {
          const ann = owner();
          const keys = [newKey(), newKey(), newKey()];
          const bystander = newKey();
          for (const key of keys) await store.create(key, newRecord({ owner: ann }));
          await store.create(bystander, newRecord({ owner: owner() }));
          expect(await store.destroyByOwner!(ann, keys[0])).toBe(2);
          expect(await keysOf(ann)).toEqual([keys[0]]);
          expect(await store.get(keys[1]!)).toBeUndefined();
          expect(await store.get(bystander)).toBeDefined();
          expect(await store.destroyByOwner!(ann)).toBe(1);
          expect(await keysOf(ann)).toEqual([]);
        });
      });
    }

    const reopen = capabilities.persistent;
    if (reopen) {
      it('keeps records across close and reopen', async () => {
        const key = newKey();
        const record = newRecord({ data: 'persisted ✓' });
        const first = await factory();
        await first.create(key, record);
        await first.close();
        const second = await reopen();
        try {
          expect(await second.get(key)).toStrictEqual(record);
        } finally {
          await second.close();
        }
      });
    }
  });

  if (capabilities.sync) {
    describeStore(`${name} (synchronous get and update)`, async () => viaSync(await factory()), {
      ...capabilities,
      sync: false,
    });
  }
}
