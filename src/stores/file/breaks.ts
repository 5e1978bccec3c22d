import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { type FileHandle, lstat, mkdir, open, rename, rmdir, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ignoreNotFound, type Trust } from './fs.js';

/**
 * Removes the folder at `path`, and never a file that took its place since
 * it was seen: rmdir removes only an empty folder, and a rename over an
 * empty folder (made at `aside` for it) fails for anything but a folder.
 * One with entries is thus moved aside, out of the key's way, and left
 * there (clearExpired passes folders by): its entries are not the store's
 * to remove.
 */
export async function removeFolder(path: string, aside: string): Promise<void> {
  const code = (err: unknown) => (err as NodeJS.ErrnoException).code;
  try {
    await rmdir(path);
    return;
  } catch (err) {
    if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return;
    if (code(err) !== 'ENOTEMPTY' && code(err) !== 'EEXIST') throw err;
  }
  await mkdir(aside, 0o700);
  try {
    await rename(path, aside);
  } catch (err) {
    await rmdir(aside).catch(() => {});
    // Gone, or no longer a folder: nothing of the kind left to remove.
    if (code(err) !== 'ENOENT' && code(err) !== 'EISDIR' && code(err) !== 'ENOTDIR') throw err;
  }
}

/** A fresh name next to `key`'s files that clearExpired takes for a temp file. */
export function tempPath(base: (key: string) => string, key: string): string {
  return `${base(key)}.${randomBytes(6).toString('hex')}.tmp`;
}

/** A break file this process holds. */
export interface BreakHold {
  /** True while the break file is still the one this process created. */
  stillOurs(): Promise<boolean>;
  /** Removes it (if still ours) and closes it. */
  release(): Promise<void>;
}

export type BreakFiles = ReturnType<typeof breakFiles>;

/**
 * Per-key break files, `<base>.lock.break`: a breaker creates one with
 * O_EXCL before it decides on and removes an expired lock, and removes it
 * when done, so breakers of one key take turns. One older than lockTtlMs
 * (by mtime, either way, after a clock step) belongs to a breaker that died
 * and is taken over. The file stays open while held: its inode number, which
 * no other file can take meanwhile, tells whether it is still ours.
 */
export function breakFiles(base: (key: string) => string, lockTtlMs: number, trust: Trust) {
  const dead = (stats: Stats): boolean =>
    !stats.isFile() ||
    (trust.uid !== undefined && stats.uid !== trust.uid) ||
    Math.abs(Date.now() - stats.mtimeMs) >= lockTtlMs;

  return {
    /**
     * Takes `key`'s break file; undefined while another breaker holds it.
     * One found dead is taken over only with `takeOver` (which waits).
     */
    async take(key: string, takeOver = true): Promise<BreakHold | undefined> {
      const path = `${base(key)}.lock.break`;
      // Tried again once when what was in the way is gone: its breaker
      // released it, or it was a folder, removed below.
      for (let tries = 0; tries < 2; tries++) {
        try {
          return breakHold(path, await open(path, 'wx', 0o600));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
        const stats = await lstat(path).catch(ignoreNotFound);
        if (stats === undefined) continue;
        // A break file is a regular file, so a folder there is nobody's, and
        // a rename cannot replace it: removed, or every caller would fail.
        if (stats.isDirectory()) {
          await removeFolder(path, tempPath(base, key));
          continue;
        }
        if (!takeOver || !dead(stats)) return undefined;
        return replaceDead(path, tempPath(base, key), lockTtlMs);
      }
      return undefined;
    },
  };
}

/**
 * Replaces the dead break file at `path` with one of ours, made at `temp`,
 * by rename, which never removes anyone else's by mistake, the way an unlink
 * after a check could (two breakers finding the same dead one). Two may
 * still replace it in turn: each waits lockTtlMs / 2, longer than any stall
 * between finding it dead and renaming, and then keeps it only if it is
 * still the one it put there (Fischer's timed mutual exclusion).
 */
async function replaceDead(
  path: string,
  temp: string,
  lockTtlMs: number,
): Promise<BreakHold | undefined> {
  const handle = await open(temp, 'wx', 0o600);
  try {
    await rename(temp, path);
  } catch (err) {
    await handle.close().catch(() => {});
    await unlink(temp).catch(ignoreNotFound);
    throw err;
  }
  await sleep(lockTtlMs / 2);
  const hold = breakHold(path, handle);
  if (!(await hold.stillOurs().catch(() => false))) {
    await handle.close().catch(() => {});
    return undefined;
  }
  try {
    // Aged from now, as one just created: the wait is not the breaker's time.
    const now = new Date();
    await handle.utimes(now, now);
  } catch (err) {
    // Left as it is, it would read as dead halfway through the breaker's time.
    await hold.release();
    throw err;
  }
  return hold;
}

/** The break file at `path`, created by this process and open as `handle`. */
function breakHold(path: string, handle: FileHandle): BreakHold {
  const stillOurs = async (): Promise<boolean> => {
    const [mine, named] = await Promise.all([handle.stat(), lstat(path).catch(ignoreNotFound)]);
    return named !== undefined && named.ino === mine.ino && named.dev === mine.dev;
  };
  return {
    stillOurs,
    async release() {
      const ours = await stillOurs().catch(() => false);
      // Closed before the unlink: on Windows a name removed while open
      // cannot be created again until it is closed.
      await handle.close().catch(() => {});
      if (ours) await unlink(path).catch(ignoreNotFound);
    },
  };
}
