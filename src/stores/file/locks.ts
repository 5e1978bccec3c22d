import { randomBytes } from 'node:crypto';
import { link, lstat, open, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { StoreUnavailableError } from '../../errors.js';
import { KeyedMutex } from '../../locks.js';
import { type LockContent, parseLock } from './format.js';
import { type FileRead, ignoreNotFound, isNotFound, readSafe, type Trust } from './fs.js';
import { breakFiles, type BreakFiles, removeFolder, tempPath } from './breaks.js';
import { soleName, type TokenFile, tokenFiles } from './tokens.js';

/**
 * The short per-key lock taken around each compare-and-set, across processes:
 * a `<base>.lock` file holding a token and an expiry: a hard link to a token
 * file of the holder's (`tokens.ts`), or, where links are refused, a file
 * created with O_EXCL.
 * A lock past its expiry belongs to a crashed process and is broken; so is a
 * lock file the store cannot trust (another user's, a symlink, a FIFO, a
 * folder).
 *
 * Why two callers never hold one lock: a lock file is only ever created where
 * there is none (link and O_EXCL fail with EEXIST), and only ever removed
 * - by its holder well before its expiry (lockReleaser), or
 * - by whoever holds the key's break file, `<base>.lock.break`, which only
 *   one process holds at a time (see breakFiles): a breaker, once the lock
 *   has expired, or a holder finishing late, if the lock is still its own.
 * So an expired lock file stays the same file until the one process holding
 * the break file removes it by name.
 *
 * What this assumes, as any lock built on expiries must:
 * - no process stalls for lockTtlMs / 2 between two steps of a lock
 *   operation (a holder between checking the time and releasing; a breaker
 *   taking over a dead break file between finding it dead and replacing
 *   it), and no breaker holds its break file for lockTtlMs (it is then
 *   taken for dead, and two breakers may race);
 * - every process sharing the folder uses the same lockTtlMs: each judges
 *   a break file dead, and waits before keeping one it took over, by its
 *   own value, so with several values the smallest lockTtlMs / 2 is the
 *   real bound on the stalls above;
 * - `fn` ends before the lock's expiry: nothing renews the lock, and past
 *   its expiry a breaker may hand the key to another caller while `fn` runs;
 * - the wall clock never steps forward by as much as a lock's remaining
 *   life: a live lock would then read as expired and be broken, as with any
 *   lease judged by the wall clock (steps back are handled, see tryLink);
 * - every process runs this version: during a rolling upgrade, older
 *   versions' breakers ignore the break file (they move a stale lock aside
 *   and link it back), so none of the above holds against them.
 */
export interface FileLocks {
  /** Runs `fn` holding `key`'s lock, in this process and across processes. */
  withKey<T>(key: string, fn: () => Promise<T>): Promise<T>;
  /** Removes the lock file at `path` when it has expired; true when it is gone. */
  breakIfStale(key: string, path: string): Promise<boolean>;
  /**
   * Removes `key`'s break file when its breaker died holding it (after the
   * wait a takeover takes, see breakFiles); leaves a live one to its
   * breaker. clearExpired calls it for every break file it finds.
   */
  clearDeadBreak(key: string): Promise<void>;
  /** Resolves once no lock is held or awaited in this process. */
  idle(): Promise<void>;
  /** Waits for idle, then closes and removes this process's token files. */
  close(): Promise<void>;
}

export function fileLocks(
  base: (key: string) => string,
  lockTtlMs: number,
  trust: Trust,
): FileLocks {
  // Waiting twice the lock's lifetime outlasts any holder that crashed.
  const lockWaitMs = 2 * lockTtlMs;
  const mutex = new KeyedMutex();

  const breaks = breakFiles(base, lockTtlMs, trust);
  const breakIfStale = staleBreaker(base, breaks, lockTtlMs, trust);

  const tokens = tokenFiles(base('lock-token'));
  const take = lockTaker(tokens, lockTtlMs);

  const acquire = async (key: string): Promise<Held> => {
    const path = `${base(key)}.lock`;
    const deadline = Date.now() + lockWaitMs;
    let delay = 1;
    for (;;) {
      const held = await take(path);
      if (held !== undefined) return held;
      if (await breakIfStale(key, path)) continue;
      if (Date.now() >= deadline) {
        throw new StoreUnavailableError(
          'file',
          `could not lock a session file within ${lockWaitMs} ms`,
        );
      }
      await sleep(delay + Math.random() * delay);
      delay = Math.min(delay * 2, 50);
    }
  };

  const release = lockReleaser(base, tokens, breaks, lockTtlMs, trust);

  return {
    withKey: (key, fn) =>
      mutex.run(key, async () => {
        const held = await acquire(key);
        try {
          return await fn();
        } finally {
          await release(key, held);
        }
      }),
    breakIfStale,
    async clearDeadBreak(key) {
      // Taking it replaces it if dead; a live one is left to its breaker.
      await (await breaks.take(key))?.release();
    },
    idle: () => mutex.idle(),
    async close() {
      await mutex.idle();
      await tokens.close();
    },
  };
}

/** Removes a lock this process holds, or leaves it to expire when that cannot be done safely. */
function lockReleaser(
  base: (key: string) => string,
  tokens: ReturnType<typeof tokenFiles>,
  breaks: BreakFiles,
  lockTtlMs: number,
  trust: Trust,
): (key: string, held: Held) => Promise<void> {
  /**
   * Past its expiry, or near it, a breaker may be removing the lock, or may
   * have removed it and another caller taken it: checking its token, then
   * removing it, could remove the other's. Holding the break file, nothing
   * can change it between the two (breakers wait; takers only create it
   * where it is absent). With the break file busy, the lock is left for its
   * breaker, or to expire, at most lockTtlMs / 2 off, and be broken then.
   */
  const releaseLate = async (key: string, path: string, held: Held): Promise<void> => {
    // The lock file may still link to the token file: never written again.
    if (held.file !== undefined) await tokens.retire(held.file);
    const hold = await breaks.take(key, false);
    if (hold === undefined) return;
    try {
      const found = await readSafe(path, trust);
      if (found.state === 'ok' && parseLock(found.text)?.token === held.token) {
        await unlink(path).catch(ignoreNotFound);
      }
    } finally {
      await hold.release();
    }
  };

  return async (key, held) => {
    const path = `${base(key)}.lock`;
    // Nobody breaks a lock before its expiry, so well before it the file is
    // still ours.
    if (Date.now() >= held.expiresAt - lockTtlMs / 2) return releaseLate(key, path, held);
    try {
      await unlink(path);
    } catch (err) {
      if (held.file !== undefined) await tokens.retire(held.file);
      if (isNotFound(err)) return;
      throw err;
    }
    // Pooled for reuse: released well before its expiry. It is rewritten
    // only after a check that no other name links to it (see tryLink).
    if (held.file !== undefined) await tokens.give(held.file);
  };
}

/** Takes the lock file at `path`: by hard link while the folder allows it, else with O_EXCL. */
function lockTaker(
  tokens: ReturnType<typeof tokenFiles>,
  lockTtlMs: number,
): (path: string) => Promise<Held | undefined> {
  /** False once this folder refused a hard link: locks are then created with O_EXCL instead. */
  let linkable = true;

  /**
   * Takes the lock at `path` by hard-linking one of this process's token
   * files to it, which fails with EEXIST while anyone holds it, atomically,
   * as O_EXCL would; the token file already holds a token and an expiry.
   * A link allocates no inode and needs no write after it, so taking and
   * releasing a lock mostly costs two thread pool round trips, not four,
   * and no inode churn (which ext4 without a journal pays for on every
   * create). Others see a regular file holding `{ token, expiresAt }`, as
   * before. Resolves to undefined while someone else holds it.
   */
  const tryLink = async (path: string): Promise<Held | undefined> => {
    for (;;) {
      const file = await tokens.take();
      const now = Date.now();
      let held = file.content;
      try {
        // Its text stays while its expiry is far enough off: most locks then
        // cost the link alone. Nobody breaks a lock before the expiry it
        // shows, so one taken with REUSE_WHILE of its lifetime ahead keeps
        // at least that long, and release (below) goes by that expiry.
        // Never an expiry beyond a lock's lifetime either: after the clock
        // steps back, text written before the step would show one far off.
        const left = held === undefined ? 0 : held.expiresAt - now;
        if (held === undefined || left < lockTtlMs * REUSE_WHILE || left > lockTtlMs) {
          if (held !== undefined && !(await soleName(file))) {
            // Another name links to it, which this version never leaves
            // (its breakers only unlink, and a late release retires the
            // file), but an older one sharing the folder could: its
            // breakers moved locks aside and linked them back. Rewritten,
            // that lock would show a fresh expiry for ever; left, it expires.
            await tokens.retire(file);
            continue;
          }
          held = { token: file.nextToken(), expiresAt: now + lockTtlMs };
          await file.write(held);
        }
        await link(file.path, path);
        return { ...held, file };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') {
          await tokens.give(file);
          return undefined;
        }
        await tokens.retire(file);
        // Its name was removed (clearExpired takes an idle one for a
        // dead write's temp file): try again with another.
        if (code === 'ENOENT') continue;
        if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') {
          // A file system without hard links.
          linkable = false;
          return createLockFile(path, lockTtlMs);
        }
        throw err;
      }
    }
  };

  return (path) => (linkable ? tryLink(path) : createLockFile(path, lockTtlMs));
}

/**
 * Removes the lock file at `path` when it has expired (or cannot be
 * trusted); true when it is gone, false while it is held or another breaker
 * is at work (the caller retries).
 */
function staleBreaker(
  base: (key: string) => string,
  breaks: BreakFiles,
  lockTtlMs: number,
  trust: Trust,
): (key: string, path: string) => Promise<boolean> {
  const stale = (found: FileRead, now: number): boolean => {
    if (found.state !== 'ok') return true;
    // Empty: its holder died between creating and writing it. Age it by mtime.
    const expiresAt = parseLock(found.text)?.expiresAt ?? found.mtimeMs + lockTtlMs;
    return expiresAt <= now;
  };
  return async (key, path) => {
    // A first look without the break file: waiting callers poll here while
    // the lock is held, and most find it live. It only decides whether to
    // take the break file, never what to remove.
    const seen = await readSafe(path, trust);
    if (seen.state === 'absent') return true;
    if (!stale(seen, Date.now())) return false;
    const hold = await breaks.take(key);
    if (hold === undefined) return false;
    try {
      // Decided again, alone, on this read only: the lock seen above may have
      // been broken and taken since. Timed before the read, so a lock judged
      // expired had expired by the time it was read.
      const now = Date.now();
      const found = await readSafe(path, trust);
      if (found.state === 'absent') return true;
      if (!stale(found, now)) return false;
      // Best effort: a breaker stalled for lockTtlMs holding the break file
      // may have been taken for dead and replaced. This narrows the window
      // in which it would act on that, no more (it may stall right after):
      // the assumptions in FileLocks are what rule it out.
      if (!(await hold.stillOurs())) return false;
      // Removed by name, not moved aside: an expired lock file changes only
      // through the holder of the break file (see FileLocks), which is us.
      // But a folder there, refused, is no lock (locks are regular files),
      // so nobody holds it, and unlink cannot remove it.
      const refused =
        found.state === 'refused' ? await lstat(path).catch(ignoreNotFound) : undefined;
      if (refused?.isDirectory()) await removeFolder(path, tempPath(base, key));
      else await unlink(path).catch(ignoreNotFound);
      return true;
    } finally {
      await hold.release();
    }
  };
}

/** A lock this process holds: what its file says, and the token file linked to it (none when created with O_EXCL). */
interface Held extends LockContent {
  file?: TokenFile;
}

/**
 * A token file's text is reused for another lock while at least this share
 * of the lock lifetime is left before the expiry it shows.
 */
const REUSE_WHILE = 0.8;

/**
 * Takes the lock at `path` by creating it with O_EXCL, holding a token of
 * its own: where hard links to token files are not available.
 */
async function createLockFile(path: string, lockTtlMs: number): Promise<LockContent | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw err;
  }
  const held = {
    token: randomBytes(12).toString('base64url'),
    expiresAt: Date.now() + lockTtlMs,
  };
  try {
    await handle.writeFile(JSON.stringify(held));
    await handle.close();
  } catch (err) {
    await handle.close().catch(() => {});
    await unlink(path).catch(() => {});
    throw err;
  }
  return held;
}
