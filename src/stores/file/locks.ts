import { randomBytes } from 'node:crypto';
import { link, open, rename, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { StoreUnavailableError } from '../../errors.js';
import { KeyedMutex } from '../../locks.js';
import { type LockContent, parseLock } from './format.js';
import { ignoreNotFound, isNotFound, readSafe, readText, type Trust } from './fs.js';
import { soleName, type TokenFile, tokenFiles } from './tokens.js';

/**
 * The short per-key lock taken around each compare-and-set, across processes:
 * a `<base>.lock` file holding a token and an expiry: a hard link to a token
 * file of the holder's (`tokens.ts`), or, where links are refused, a file
 * created with O_EXCL.
 * A lock past its expiry belongs to a crashed process and is broken; so is a
 * lock file the store cannot trust (another user's, a symlink, a FIFO).
 */
export interface FileLocks {
  /** Runs `fn` holding `key`'s lock, in this process and across processes. */
  withKey<T>(key: string, fn: () => Promise<T>): Promise<T>;
  /** Removes the lock file at `path` when it has expired; true when it is gone. */
  breakIfStale(key: string, path: string): Promise<boolean>;
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

  const breakIfStale = staleBreaker(base, lockTtlMs, trust);

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

  const release = async (key: string, held: Held): Promise<void> => {
    const path = `${base(key)}.lock`;
    // Nobody breaks a lock before its expiry, so well before it the file is
    // still ours. Past that, remove it only if it still holds our token: it
    // may have been broken and taken by another holder.
    if (Date.now() >= held.expiresAt - lockTtlMs / 2) {
      // A breaker may also hold a link to the token file (moved aside, then
      // linked back): it is never written again.
      if (held.file !== undefined) await tokens.retire(held.file);
      const content = await readText(path, trust);
      if (content === undefined || parseLock(content)?.token !== held.token) return;
      await unlink(path).catch(ignoreNotFound);
      return;
    }
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
    idle: () => mutex.idle(),
    async close() {
      await mutex.idle();
      await tokens.close();
    },
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
            // A breaker that had moved one of its locks aside linked it back
            // (two stale-lock breakers racing): rewritten, that lock would
            // show a fresh expiry for ever. Left as it is, it expires.
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
 * trusted); true when it is gone.
 */
function staleBreaker(
  base: (key: string) => string,
  lockTtlMs: number,
  trust: Trust,
): (key: string, path: string) => Promise<boolean> {
  return async (key, path) => {
    const found = await readSafe(path, trust);
    if (found.state === 'absent') return true;
    if (found.state === 'ok') {
      // Empty: its holder died between creating and writing it. Age it by mtime.
      const expiresAt = parseLock(found.text)?.expiresAt ?? found.mtimeMs + lockTtlMs;
      if (expiresAt > Date.now()) return false;
    }
    // Move it aside first and check that what moved is the stale (or
    // refused) lock read above, not a fresh one another process took in between.
    const aside = `${base(key)}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await rename(path, aside);
    } catch (err) {
      if (isNotFound(err)) return true;
      throw err;
    }
    const moved = await readSafe(aside, trust);
    if (moved.state === 'ok' && (found.state !== 'ok' || moved.text !== found.text)) {
      await link(aside, path).catch((err: unknown) => {
        // EEXIST: taken again meanwhile. ENOENT: clearExpired removed the
        // name aside (a minute-old .tmp): nothing is left to put back.
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EEXIST' && code !== 'ENOENT') throw err;
      });
    }
    await unlink(aside).catch(ignoreNotFound);
    return true;
  };
}

/** Takes the lock at `path` by creating it with O_EXCL; where hard links are not available. */
async function createLockFile(path: string, lockTtlMs: number): Promise<Held | undefined> {
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

/** A lock this process holds: what its file says, and the token file linked to it (none when created with O_EXCL). */
interface Held extends LockContent {
  file?: TokenFile;
}

/**
 * A token file's text is reused for another lock while at least this share
 * of the lock lifetime is left before the expiry it shows.
 */
const REUSE_WHILE = 0.8;
