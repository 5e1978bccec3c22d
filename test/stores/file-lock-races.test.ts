/**
 * The file store's lock files against the races of stale-lock breaking and
 * against clock steps: a lock nobody holds must always expire within
 * lockTtlMs. (node:fs/promises is wrapped so a test can pause a rename or a
 * link half-way, as a slow process would.)
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, vi } from 'vitest';
import type { Trust } from '../../src/stores/file/fs.js';
import { tempFolders } from '../support/folders.js';

type Hook = (from: string, to: string) => Promise<void>;
const hooks: { beforeRename?: Hook; beforeLink?: Hook; refuseTokenLinks?: boolean } = {};
vi.mock('node:fs/promises', async (original) => {
  const real = (await original()) as typeof import('node:fs/promises');
  return {
    ...real,
    default: real,
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
  };
});
const { fileLocks } = await import('../../src/stores/file/locks.js');
const { fileStore } = await import('../../src/stores/file.js');
const { newKey, newRecord } = await import('./conformance.js');

const { folder } = tempFolders('store-test-file-locks-');
const trust: Trust = { uid: process.getuid?.(), maxBytes: 1 << 20, refuse() {} };

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

/** The expiry a lock file shows, in ms from now; undefined when there is none. */
function shownExpiry(path: string): number | undefined {
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { expiresAt: number }).expiresAt - Date.now();
  } catch {
    return undefined;
  }
}

describe('file store locks, racing and after clock steps', () => {
  it('lets a lock put back by a slow stale-lock breaker expire, never renewing it under its name', async () => {
    const ttl = 400;
    const dir = folder();
    const locks = () => fileLocks((k: string) => join(dir, `satchel-${k}`), ttl, trust);
    const [a, breaker, c, d] = [locks(), locks(), locks(), locks()];
    const lockPath = join(dir, 'satchel-K.lock');
    // A lock a crashed process left behind.
    writeFileSync(lockPath, JSON.stringify({ token: 'dead', expiresAt: Date.now() - 1 }), {
      mode: 0o600,
    });
    // The breaker reads the stale lock, then is slow to move it aside and to link it back.
    const [renameGo, renameReached, linkGo, linkReached] = [gate(), gate(), gate(), gate()];
    let renames = 0;
    hooks.beforeRename = async (from) => {
      if (from !== lockPath || renames++ > 0) return;
      renameReached.open();
      await renameGo.opened;
    };
    hooks.beforeLink = async (from, to) => {
      if (to !== lockPath || from.includes('lock-token')) return;
      linkReached.open();
      await linkGo.opened;
    };
    const breaking = breaker.breakIfStale('K', lockPath);
    await renameReached.opened;
    // A busy process (a lock held on another key keeps its token files pooled)...
    let endBusy!: () => void;
    const busy = a.withKey('busy', () => new Promise<void>((resolve) => (endBusy = resolve)));
    await sleep(10);
    // ...breaks the stale lock itself and takes K; the slow breaker moves A's
    // lock aside, and C takes K in the gap (the breaking race itself).
    const [aIn, aGo, cIn, cGo] = [gate(), gate(), gate(), gate()];
    const aDone = a.withKey('K', async () => {
      aIn.open();
      await aGo.opened;
    });
    await aIn.opened;
    renameGo.open();
    await linkReached.opened;
    const cDone = c.withKey('K', async () => {
      cIn.open();
      await cGo.opened;
    });
    await cIn.opened;
    aGo.open();
    await aDone;
    cGo.open();
    await cDone;
    // The breaker links A's token file back under K.lock.
    linkGo.open();
    await breaking;
    hooks.beforeRename = undefined;
    hooks.beforeLink = undefined;
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
    for (const l of [a, breaker, c, d]) await l.close();
  });

  it('never shows an expiry beyond lockTtlMs after the clock steps back, so a dead holder blocks a key for at most that', async () => {
    const ttl = 1_000;
    const dir = folder();
    const locks = () => fileLocks((k: string) => join(dir, `satchel-${k}`), ttl, trust);
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
