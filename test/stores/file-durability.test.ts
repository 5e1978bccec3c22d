import { readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { SessionStore } from '../../src/store.js';
import { fileStore } from '../../src/stores/file.js';
import { folderSyncs, syncDir, writeAtomic } from '../../src/stores/file/fs.js';
import { fileLocks } from '../../src/stores/file/locks.js';
import { lockTrust } from '../support/file-locks.js';
import { tempFolders } from '../support/folders.js';
import { newKey, newRecord } from './conformance.js';

const { folder } = tempFolders('store-test-file-durability-');

/** A folder sync that can be held open, counting how many run at once. */
function heldSyncs() {
  const releases: (() => void)[] = [];
  const state = { started: 0, inFlight: 0, most: 0 };
  const sync = () => {
    state.started++;
    state.inFlight++;
    state.most = Math.max(state.most, state.inFlight);
    return new Promise<void>((resolve) => {
      releases.push(() => {
        state.inFlight--;
        resolve();
      });
    });
  };
  return { state, sync, release: () => releases.shift()!() };
}

const settled = () => sleep(0);

describe('file store folder sync (group commit)', () => {
  it('resolves each of many concurrent writes only after a folder sync that began after its rename', async () => {
    const dir = folder();
    // What the folder held as each sync began, and which syncs have ended.
    const seen: Map<string, string>[] = [];
    const ended = new Set<number>();
    let inFlight = 0;
    let most = 0;
    const sync = folderSyncs(dir, async () => {
      const index = seen.length;
      // Records only: temp files come and go under the writes still running.
      const records = readdirSync(dir).filter((name) => !name.endsWith('.tmp'));
      seen.push(new Map(records.map((name) => [name, readFileSync(join(dir, name), 'utf8')])));
      most = Math.max(most, ++inFlight);
      await sleep(2);
      inFlight--;
      ended.add(index);
    });
    const count = 64;
    const covered = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        writeAtomic(join(dir, `record-${i}`), `content ${i}`, sync).then(() =>
          [...ended].some((index) => seen[index]!.get(`record-${i}`) === `content ${i}`),
        ),
      ),
    );
    expect(covered).toEqual(Array(count).fill(true));
    expect(most).toBe(1);
    // Shared: far fewer syncs than writes.
    expect(seen.length).toBeLessThanOrEqual(count / 4);
    expect(readdirSync(dir).sort()).toEqual(
      Array.from({ length: count }, (_, i) => `record-${i}`).sort(),
    );
    for (let i = 0; i < count; i++) {
      expect(readFileSync(join(dir, `record-${i}`), 'utf8')).toBe(`content ${i}`);
    }
  });

  it('makes a caller arriving while a sync runs wait for the next one, which later callers share', async () => {
    const { state, sync: run, release } = heldSyncs();
    const sync = folderSyncs('unused', run);
    const done: string[] = [];
    const first = sync().then(() => done.push('first'));
    const second = sync().then(() => done.push('second'));
    const third = sync().then(() => done.push('third'));
    expect(state.started).toBe(1);
    release();
    await first;
    await settled();
    // The first sync may have begun before the second and third renames: they wait for another.
    expect(done).toEqual(['first']);
    expect(state.started).toBe(2);
    // This one arrives while the second sync runs: it waits for a third.
    const fourth = sync().then(() => done.push('fourth'));
    release();
    await Promise.all([second, third]);
    await settled();
    expect(done).toEqual(['first', 'second', 'third']);
    expect(state.started).toBe(3);
    release();
    await fourth;
    expect(done).toEqual(['first', 'second', 'third', 'fourth']);
    expect(state.most).toBe(1);
    // Idle again: the next caller starts one at once.
    const fifth = sync();
    expect(state.started).toBe(4);
    release();
    await fifth;
  });

  it('still leaves renames atomic when a folder sync fails, and syncs again afterwards', async () => {
    const dir = folder();
    let failing = true;
    let syncs = 0;
    const sync = folderSyncs(dir, async () => {
      syncs++;
      await sleep(2);
      if (failing) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
    });
    for (let i = 0; i < 8; i++) writeFileSync(join(dir, `record-${i}`), `old ${i}`);
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) =>
        writeAtomic(join(dir, `record-${i}`), `new ${i}`.repeat(1000), sync),
      ),
    );
    // Durability is not known, so the writes fail; but each file is whole and new, and no temp file is left.
    for (const result of results)
      expect(result).toMatchObject({ status: 'rejected', reason: { code: 'EIO' } });
    for (let i = 0; i < 8; i++) {
      expect(readFileSync(join(dir, `record-${i}`), 'utf8')).toBe(`new ${i}`.repeat(1000));
    }
    expect(readdirSync(dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    failing = false;
    const before = syncs;
    await writeAtomic(join(dir, 'record-0'), 'newer', sync);
    expect(syncs).toBeGreaterThan(before);
    expect(readFileSync(join(dir, 'record-0'), 'utf8')).toBe('newer');
  });

  it('syncs a real folder, and treats one it cannot open as best effort', async () => {
    const dir = folder();
    const sync = folderSyncs(dir);
    await writeAtomic(join(dir, 'record'), 'x'.repeat(3 << 20), sync);
    expect(readFileSync(join(dir, 'record'), 'utf8')).toBe('x'.repeat(3 << 20));
    if (process.platform !== 'win32')
      expect(statSync(join(dir, 'record')).mode & 0o777).toBe(0o600);
    await expect(syncDir(join(dir, 'missing'))).resolves.toBeUndefined();
  });

  it('leaves every concurrent update of a store in place after its writes resolve', async () => {
    const dir = folder();
    const store: SessionStore = fileStore({ dir });
    const keys = Array.from({ length: 40 }, () => newKey());
    await Promise.all(keys.map((key) => store.create(key, newRecord({ data: 'v1' }))));
    const results = await Promise.all(
      keys.map((key) => store.update(key, newRecord({ version: 2, data: `v2 ${key}` }), 1)),
    );
    expect(results).toEqual(keys.map(() => 'ok'));
    const reopened = fileStore({ dir });
    for (const key of keys) {
      expect(await reopened.get(key)).toMatchObject({ version: 2, data: `v2 ${key}` });
    }
    await store.close();
    await reopened.close();
    expect(
      readdirSync(dir).filter((name) => name.endsWith('.tmp') || name.endsWith('.lock')),
    ).toEqual([]);
  });
});

describe('file store locks (hard-linked token files)', () => {
  const lockPath = (dir: string, key: string) => join(dir, `satchel-${key}.lock`);

  it('holds each lock as a regular file of a token and expiry, and leaves no file once idle', async () => {
    const dir = folder();
    const locks = fileLocks((key) => join(dir, `satchel-${key}`), 10_000, lockTrust);
    const keys = Array.from({ length: 12 }, () => newKey());
    const tokens = new Set<string>();
    await Promise.all(
      keys.map((key) =>
        locks.withKey(key, async () => {
          const path = lockPath(dir, key);
          const stats = statSync(path);
          expect(stats.isFile()).toBe(true);
          // A hard link to this process's token file.
          expect(stats.nlink).toBe(2);
          const held = JSON.parse(readFileSync(path, 'utf8')) as {
            token: string;
            expiresAt: number;
          };
          expect(held.expiresAt).toBeGreaterThan(Date.now() + 9_000);
          tokens.add(held.token);
          await sleep(5);
        }),
      ),
    );
    // Locks held at once show different tokens.
    expect(tokens.size).toBe(keys.length);
    expect(readdirSync(dir)).toEqual([]);
    await locks.close();
  });

  it('excludes another process while held, and is taken by it once released', async () => {
    const dir = folder();
    const mine = fileLocks((key) => join(dir, `satchel-${key}`), 10_000, lockTrust);
    const theirs = fileLocks((key) => join(dir, `satchel-${key}`), 10_000, lockTrust);
    const key = newKey();
    const order: string[] = [];
    let release!: () => void;
    const held = mine.withKey(key, async () => {
      order.push('mine');
      await new Promise<void>((resolve) => {
        release = resolve;
      });
      order.push('mine done');
    });
    await sleep(20);
    const waiting = theirs.withKey(key, async () => {
      order.push('theirs');
    });
    await sleep(50);
    expect(order).toEqual(['mine']);
    release();
    await Promise.all([held, waiting]);
    expect(order).toEqual(['mine', 'mine done', 'theirs']);
    await mine.close();
    await theirs.close();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('leaves alone, and never writes into, a lock another process broke and took once it expired', async () => {
    const dir = folder();
    const ttl = 200;
    const slow = fileLocks((key) => join(dir, `satchel-${key}`), ttl, lockTrust);
    const other = fileLocks((key) => join(dir, `satchel-${key}`), 10_000, lockTrust);
    const key = newKey();
    let otherHolds!: () => void;
    let otherToken = '';
    let letOtherGo!: () => void;
    // Keeps the slow process busy so its token files stay pooled.
    let endBusy!: () => void;
    const busy = slow.withKey(newKey(), () => new Promise<void>((resolve) => (endBusy = resolve)));
    const slowHolder = slow.withKey(key, async () => {
      await sleep(ttl + 50);
      // Expired: the other process breaks the lock and takes it.
      const taken = other.withKey(key, async () => {
        otherToken = (JSON.parse(readFileSync(lockPath(dir, key), 'utf8')) as { token: string })
          .token;
        otherHolds();
        await new Promise<void>((resolve) => (letOtherGo = resolve));
      });
      await new Promise<void>((resolve) => (otherHolds = resolve));
      void taken;
    });
    await slowHolder;
    // The slow holder left the other's lock alone ...
    const text = () => JSON.parse(readFileSync(lockPath(dir, key), 'utf8')) as { token: string };
    expect(text().token).toBe(otherToken);
    // ... and its later locks never write into the file it held.
    for (let i = 0; i < 5; i++) await slow.withKey(newKey(), async () => {});
    expect(text().token).toBe(otherToken);
    letOtherGo();
    endBusy();
    await busy;
    await other.close();
    await slow.close();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('replaces a pooled token file whose name was removed while idle', async () => {
    const dir = folder();
    const locks = fileLocks((key) => join(dir, `satchel-${key}`), 10_000, lockTrust);
    let endBusy!: () => void;
    const busy = locks.withKey(newKey(), () => new Promise<void>((resolve) => (endBusy = resolve)));
    await sleep(10);
    await locks.withKey(newKey(), async () => {});
    // An idle token file in the pool: remove it, as another process's clearExpired may.
    const idle = readdirSync(dir).filter(
      (name) => name.endsWith('.tmp') && statSync(join(dir, name)).nlink === 1,
    );
    expect(idle).toHaveLength(1);
    unlinkSync(join(dir, idle[0]!));
    const key = newKey();
    await locks.withKey(key, async () => {
      expect(statSync(lockPath(dir, key)).nlink).toBe(2);
    });
    endBusy();
    await busy;
    await locks.close();
    expect(readdirSync(dir)).toEqual([]);
  });
});
