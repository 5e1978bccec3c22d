/**
 * The file store's lock files against the races of stale-lock breaking and
 * against clock steps: never two holders of one key, and a lock nobody holds
 * always expires within lockTtlMs. (node:fs/promises is wrapped so a test can
 * pause an open, a rename, a link or an unlink half-way, as a slow process would.)
 */
import { linkSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { FileLocks } from '../../src/stores/file/locks.js';
import { lockTrust, writeAged, writeStaleLock } from '../support/file-locks.js';
import { tempFolders } from '../support/folders.js';

type Hook = (from: string, to: string) => Promise<void>;
const hooks: {
  beforeOpen?: (path: string) => Promise<void>;
  beforeRename?: Hook;
  beforeLink?: Hook;
  beforeUnlink?: (path: string) => Promise<void>;
  refuseTokenLinks?: boolean;
} = {};
vi.mock('node:fs/promises', async (original) => {
  const real = (await original()) as typeof import('node:fs/promises');
  return {
    ...real,
    default: real,
    open: async (path: string, ...rest: unknown[]) => {
      await hooks.beforeOpen?.(path);
      return (real.open as (...args: unknown[]) => Promise<unknown>)(path, ...rest);
    },
    rename: async (from: string, to: string) => {
      await hooks.beforeRename?.(from, to);
      return real.rename(from, to);
    },
    link: async (from: string, to: string) => {
      if (hooks.refuseTokenLinks && from.includes('lock-token')) {
        throw Object.assign(new Error('operation not permitted'), { code: 'EPERM' });
      }
      await hooks.beforeLink?.(from, to);
      return real.link(from, to);
    },
    unlink: async (path: string) => {
      await hooks.beforeUnlink?.(path);
      return real.unlink(path);
    },
  };
});
const { fileLocks } = await import('../../src/stores/file/locks.js');
const { fileStore } = await import('../../src/stores/file.js');
const { newKey, newRecord } = await import('./conformance.js');

const { folder } = tempFolders('store-test-file-locks-');

afterEach(() => {
  hooks.beforeOpen = undefined;
  hooks.beforeRename = undefined;
  hooks.beforeLink = undefined;
  hooks.beforeUnlink = undefined;
  hooks.refuseTokenLinks = false;
});

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

/** True once `promise` settles within `ms`; false after `ms` (the step did not happen). */
function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return Promise.race([promise.then(() => true), sleep(ms).then(() => false)]);
}

/** The expiry a lock file shows, in ms from now; undefined when there is none. */
function shownExpiry(path: string): number | undefined {
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { expiresAt: number }).expiresAt - Date.now();
  } catch {
    return undefined;
  }
}

/**
 * Critical sections that count how many run at once and each add one to a
 * counter file by read-modify-write, as a compare-and-set would: two at once
 * lose an update. Each waits for `hold` before its read.
 */
function criticalSections(dir: string) {
  const counter = join(dir, 'counter');
  writeFileSync(counter, '0');
  const hold = gate();
  let inside = 0;
  let most = 0;
  const section = (entered: () => void) => async () => {
    inside++;
    most = Math.max(most, inside);
    entered();
    await hold.opened;
    const value = Number(readFileSync(counter, 'utf8'));
    await sleep(5);
    writeFileSync(counter, String(value + 1));
    inside--;
  };
  return { section, hold, most: () => most, count: () => Number(readFileSync(counter, 'utf8')) };
}

/** Pauses the first call on `path` until `go` opens; `reached` opens when it is paused. */
function pauseFirst(path: string) {
  const [reached, go] = [gate(), gate()];
  let armed = true;
  const hook = async (from: string) => {
    if (from !== path || !armed) return;
    armed = false;
    reached.open();
    await go.opened;
  };
  return { hook, reached, go, disarm: () => (armed = false) };
}

/** Makes lock tables on keys' files in `dir`, each as another process's would be. */
function lockTables(dir: string, ttl: number): () => FileLocks {
  return () => fileLocks((k: string) => join(dir, `satchel-${k}`), ttl, lockTrust);
}

/**
 * A fresh folder with the expired lock on K a crashed process left behind,
 * critical sections counting in it, and `locks()` to make lock tables on it.
 */
function crashedHolderFolder(ttl: number) {
  const dir = folder();
  const lockPath = join(dir, 'satchel-K.lock');
  writeStaleLock(lockPath);
  return { dir, lockPath, locks: lockTables(dir, ttl), cs: criticalSections(dir) };
}

/**
 * All `count` critical sections ran, one at a time, and once `tables` are
 * closed nothing is left in `dir` but the counter.
 */
async function expectOneAtATimeLeavingNothing(
  dir: string,
  cs: ReturnType<typeof criticalSections>,
  count: number,
  tables: FileLocks[],
): Promise<void> {
  expect(cs.most()).toBe(1);
  expect(cs.count()).toBe(count);
  for (const l of tables) await l.close();
  expect(readdirSync(dir)).toEqual(['counter']);
}

describe('file store locks, racing and after clock steps', () => {
  it('never lets two callers hold one key when three race to break a stale lock', async () => {
    const { dir, lockPath, locks, cs } = crashedHolderFolder(2_000);
    const [one, two, three] = [locks(), locks(), locks()];
    // The first breaker has read the stale lock and pauses at its decisive
    // step on it: moving it aside (as breakers once did) or removing it.
    const decisive = pauseFirst(lockPath);
    hooks.beforeRename = decisive.hook;
    hooks.beforeUnlink = decisive.hook;
    // ... and, had it moved a fresh lock aside, again before putting it back.
    const putBack = pauseFirst(lockPath);
    hooks.beforeLink = (from, to) =>
      from.includes('lock-token') ? Promise.resolve() : putBack.hook(to);
    const [in1, in2, in3] = [gate(), gate(), gate()];
    const first = one.withKey('K', cs.section(in1.open));
    await decisive.reached.opened;
    // The second breaker finds the same stale lock: it may break it and take K ...
    const second = two.withKey('K', cs.section(in2.open));
    await within(in2.opened, 200);
    // ... before the first, resumed, acts on what it read.
    decisive.go.open();
    await within(putBack.reached.opened, 200);
    // A third caller comes while the first is between its steps.
    const third = three.withKey('K', cs.section(in3.open));
    await within(in3.opened, 200);
    putBack.disarm();
    putBack.go.open();
    cs.hold.open();
    await Promise.all([first, second, third]);
    await expectOneAtATimeLeavingNothing(dir, cs, 3, [one, two, three]);
  });

  it('never lets a breaker that read a stale lock before another broke it remove the next holder’s lock', async () => {
    const { dir, lockPath, locks, cs } = crashedHolderFolder(2_000);
    const [z, y, u] = [locks(), locks(), locks()];
    // Breaker Z has read the stale lock (its first look, without the break
    // file) and stalls before taking the break file: for far less than
    // lockTtlMs / 2, as any process may.
    const stall = pauseFirst(`${lockPath}.break`);
    hooks.beforeOpen = stall.hook;
    const zBroke = z.breakIfStale('K', lockPath);
    await stall.reached.opened;
    // Meanwhile Y breaks the stale lock, frees the break file and takes K.
    const [inY, inU] = [gate(), gate()];
    const second = y.withKey('K', cs.section(inY.open));
    expect(await within(inY.opened, 1_000)).toBe(true);
    // Z resumes and takes the free break file: deciding on what it read
    // before, it would remove Y's lock, and U would take K beside Y.
    stall.go.open();
    const broke = await zBroke;
    const third = u.withKey('K', cs.section(inU.open));
    await within(inU.opened, 300);
    cs.hold.open();
    await Promise.all([second, third]);
    expect(broke).toBe(false);
    await expectOneAtATimeLeavingNothing(dir, cs, 2, [z, y, u]);
  });

  it('never lets a holder released after its expiry remove the lock of the caller who broke it', async () => {
    const dir = folder();
    const lockPath = join(dir, 'satchel-K.lock');
    const slowTtl = 200;
    const slow = lockTables(dir, slowTtl)();
    const locks = lockTables(dir, 10_000);
    const [two, three] = [locks(), locks()];
    const cs = criticalSections(dir);
    // The slow holder's release, past its expiry, pauses at any unlink of K.lock.
    let release = pauseFirst(lockPath);
    release.disarm();
    hooks.beforeUnlink = (path) => release.hook(path);
    const late = gate();
    const slowDone = slow.withKey('K', async () => {
      await sleep(slowTtl + 50);
      release = pauseFirst(lockPath);
      late.open();
    });
    await late.opened;
    await Promise.race([release.reached.opened, slowDone]);
    release.disarm();
    // Another caller breaks the expired lock and takes K ...
    const [in2, in3] = [gate(), gate()];
    const second = two.withKey('K', cs.section(in2.open));
    await within(in2.opened, 300);
    // ... then the slow holder's release resumes, and a third caller comes.
    release.go.open();
    await slowDone;
    const third = three.withKey('K', cs.section(in3.open));
    await within(in3.opened, 200);
    cs.hold.open();
    await Promise.all([second, third]);
    await expectOneAtATimeLeavingNothing(dir, cs, 2, [slow, two, three]);
  });

  it('never lets two callers hold one key when two breakers take over a break file its crashed breaker left', async () => {
    const ttl = 1_000;
    const { dir, lockPath, locks, cs } = crashedHolderFolder(ttl);
    const [one, two, three] = [locks(), locks(), locks()];
    const breakPath = `${lockPath}.break`;
    // A breaker died holding the break file, long ago.
    writeAged(breakPath, '', 10 * ttl);
    // Both breakers find it dead; the first to replace it pauses until the
    // second has, then replaces the second's ...
    const [firstAt, secondDone] = [gate(), gate()];
    let takeovers = 0;
    hooks.beforeRename = async (_from, to) => {
      if (to !== breakPath) return;
      if (takeovers++ > 0) {
        setTimeout(secondDone.open, 20);
        return;
      }
      firstAt.open();
      await within(secondDone.opened, ttl);
    };
    // ... and the first of them to remove the stale lock pauses before it does.
    const decisive = pauseFirst(lockPath);
    hooks.beforeUnlink = decisive.hook;
    const [in1, in2, in3] = [gate(), gate(), gate()];
    const first = one.withKey('K', cs.section(in1.open));
    await within(firstAt.opened, ttl);
    const second = two.withKey('K', cs.section(in2.open));
    await within(decisive.reached.opened, 2 * ttl);
    // Had both kept the break file, the other would break the lock and take K ...
    await within(Promise.race([in1.opened, in2.opened]), 200);
    // ... before the paused one removes what it takes for the stale lock,
    // and a third caller takes K in the gap.
    decisive.go.open();
    const third = three.withKey('K', cs.section(in3.open));
    await within(in3.opened, 200);
    cs.hold.open();
    await Promise.all([first, second, third]);
    expect(takeovers).toBe(2);
    await expectOneAtATimeLeavingNothing(dir, cs, 3, [one, two, three]);
  });

  it('lets a lock put back by a slow stale-lock breaker expire, never renewing it under its name', async () => {
    const ttl = 400;
    const dir = folder();
    const locks = lockTables(dir, ttl);
    const [a, d] = [locks(), locks()];
    const lockPath = join(dir, 'satchel-K.lock');
    // A busy process (a lock held on another key keeps its token files pooled).
    let endBusy!: () => void;
    const busy = a.withKey('busy', () => new Promise<void>((resolve) => (endBusy = resolve)));
    await sleep(10);
    // A slow stale-lock breaker of an older version (which moved locks
    // aside, then linked them back) sharing the folder: while A holds K,
    // another name comes to link A's token file, and is put back under
    // K.lock once A has released K and pooled the token file.
    const aside = join(dir, 'satchel-K.0a1b2c3d4e5f.tmp');
    await a.withKey('K', async () => linkSync(lockPath, aside));
    renameSync(aside, lockPath);
    // A keeps taking locks on other keys: never may it renew the text K.lock shows.
    let stop = false;
    let latest = -Infinity;
    const churn = (async () => {
      for (let i = 0; !stop; i++) {
        await a.withKey(`other${i % 4}`, () => sleep(5));
        latest = Math.max(latest, shownExpiry(lockPath) ?? -Infinity);
      }
    })();
    const started = Date.now();
    const got = await d.withKey('K', async () => 'got it');
    stop = true;
    await churn;
    expect(got).toBe('got it');
    expect(Date.now() - started).toBeLessThan(2 * ttl);
    expect(latest).toBeLessThanOrEqual(ttl);
    endBusy();
    await busy;
    for (const l of [a, d]) await l.close();
  });

  it('never shows an expiry beyond lockTtlMs after the clock steps back, so a dead holder blocks a key for at most that', async () => {
    const ttl = 1_000;
    const dir = folder();
    const locks = lockTables(dir, ttl);
    const [a, d] = [locks(), locks()];
    let endBusy!: () => void;
    const busy = a.withKey('busy', () => new Promise<void>((resolve) => (endBusy = resolve)));
    await sleep(10);
    await a.withKey('warm', async () => {}); // a token file with text goes back to the pool
    const real = Date.now.bind(Date);
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => real() - 3_600_000);
    try {
      let shown: number | undefined;
      // A takes K and never lets go: to D, the same as a process killed holding it.
      void a.withKey('K', async () => {
        shown = shownExpiry(join(dir, 'satchel-K.lock'));
        await new Promise(() => {});
      });
      await sleep(20);
      expect(shown).toBeLessThanOrEqual(ttl);
      await sleep(1.5 * ttl);
      expect(await d.withKey('K', async () => 'got it')).toBe('got it');
    } finally {
      clock.mockRestore();
      endBusy();
      await busy;
      await d.close();
    }
  });

  it('falls back to O_EXCL lock files where hard links are refused, still letting one caller of two stores win each compare-and-set', async () => {
    hooks.refuseTokenLinks = true;
    const dir = folder();
    const [one, two] = [fileStore({ dir }), fileStore({ dir })];
    try {
      const key = newKey();
      await one.create(key, newRecord({ version: 1 }));
      for (let version = 1; version <= 5; version++) {
        const results = await Promise.all(
          Array.from({ length: 8 }, (_, i) =>
            (i % 2 === 0 ? one : two).update(key, newRecord({ version: version + 1 }), version),
          ),
        );
        expect(results.filter((r) => r === 'ok')).toHaveLength(1);
        expect(results.filter((r) => r === 'conflict')).toHaveLength(7);
      }
      expect((await two.get(key))?.version).toBe(6);
    } finally {
      await one.close();
      await two.close();
      hooks.refuseTokenLinks = false;
    }
    expect(readdirSync(dir).filter((name) => /\.(tmp|lock)$/.test(name))).toEqual([]);
  });
});
