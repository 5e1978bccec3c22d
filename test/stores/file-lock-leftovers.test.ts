/**
 * What the file store's locks find in place of their own files: a folder
 * planted where a lock or a break file goes, and break files their
 * breakers died holding. None may keep a key from its callers for good,
 * and clearing may never remove a break file a live breaker holds.
 */
import { chownSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileStore } from '../../src/stores/file/index.js';
import { fileLocks } from '../../src/stores/file/locks.js';
import { lockTrust, writeAged, writeStaleLock } from '../support/file-locks.js';
import { tempFolders } from '../support/folders.js';

const { folder } = tempFolders('store-test-file-lock-leftovers-');
/** Another user's uid: nobody. Only root can give a folder away; others plant their own. */
const NOBODY = 65534;

/** Plants a folder at `path`, another user's where the test may, with `entries` in it. */
function plantFolder(path: string, entries: string[]): void {
  mkdirSync(path, { mode: 0o755 });
  for (const entry of entries) writeFileSync(join(path, entry), 'planted');
  if (process.getuid?.() === 0) chownSync(path, NOBODY, NOBODY);
}

/** Runs three callers of `key` in turn: what each got, or the error code it failed with. */
async function threeCallers(locks: ReturnType<typeof fileLocks>, key: string): Promise<string[]> {
  const results: string[] = [];
  for (let i = 0; i < 3; i++) {
    results.push(
      await locks.withKey(key, async () => 'ok').catch((e: NodeJS.ErrnoException) => e.code ?? ''),
    );
  }
  return results;
}

/**
 * In a fresh folder, `plant`s what is left at K's lock path, then has three
 * callers of K take it in turn: each must get it. Returns the folder and
 * K's lock path, the lock table closed.
 */
async function expectThreeCallersGetK(
  plant: (lockPath: string) => void,
): Promise<{ dir: string; lockPath: string }> {
  const dir = folder();
  const locks = fileLocks((k: string) => join(dir, `satchel-${k}`), 400, lockTrust);
  const lockPath = join(dir, 'satchel-K.lock');
  plant(lockPath);
  expect(await threeCallers(locks, 'K')).toEqual(['ok', 'ok', 'ok']);
  await locks.close();
  return { dir, lockPath };
}

describe('file store locks, against what is left in their place', () => {
  it.each([
    ['an empty one', []],
    ['one with entries, which it moves aside and leaves', ['notes.txt']],
  ])(
    'recovers a key whose lock path another user planted a directory at: %s',
    async (_, entries: string[]) => {
      const { dir } = await expectThreeCallersGetK((lockPath) => plantFolder(lockPath, entries));
      const left = readdirSync(dir);
      if (entries.length === 0) expect(left).toEqual([]);
      else {
        // Out of the key's way, named like a temp file; its entries untouched.
        expect(left).toEqual([expect.stringMatching(/^satchel-K\.[0-9a-f]+\.tmp$/)]);
        expect(readdirSync(join(dir, left[0]!))).toEqual(entries);
      }
    },
  );

  it.each([
    ['an empty one', []],
    ['one with entries', ['notes.txt']],
  ])(
    'recovers a key whose break file path another user planted a directory at, beside a stale lock: %s',
    async (_, entries: string[]) => {
      const { lockPath } = await expectThreeCallersGetK((path) => {
        writeStaleLock(path);
        plantFolder(`${path}.break`, entries);
      });
      expect(existsSync(lockPath)).toBe(false);
      expect(existsSync(`${lockPath}.break`)).toBe(false);
    },
  );

  it('clears a break file its breaker died holding, with no lock beside it, and never a live one', async () => {
    const ttl = 1_000;
    const dir = folder();
    const store = fileStore({ dir, lockTtlMs: ttl });
    // Breakers that died long ago, of a session's lock and of an owner index's.
    const dead = ['satchel-K.lock.break', 'satchel-abc.owner.lock.break'];
    for (const name of dead) writeAged(join(dir, name), '', 3_600_000);
    // One a live breaker holds (created just now): its breaker removes it.
    const live = join(dir, 'satchel-L.lock.break');
    writeAged(live, '', 0);
    const inode = statSync(live).ino;
    await store.clearExpired();
    expect(readdirSync(dir)).toEqual(['satchel-L.lock.break']);
    // The very file: not replaced by one of the store's either.
    expect(statSync(live).ino).toBe(inode);
    await store.close();
  });
});
