import { randomBytes } from 'node:crypto';
import { link, open, rename, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { StoreUnavailableError } from '../../errors.js';
import { KeyedMutex } from '../../locks.js';
import { type LockContent, parseLock } from './format.js';
import { ignoreNotFound, isNotFound, readSafe, readText, type Trust } from './fs.js';

/**
 * The short per-key lock taken around each compare-and-set, across processes:
 * a `<base>.lock` file created with O_EXCL and holding a token and an expiry.
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
}

export function fileLocks(
  base: (key: string) => string,
  lockTtlMs: number,
  trust: Trust,
): FileLocks {
  // Waiting twice the lock's lifetime outlasts any holder that crashed.
  const lockWaitMs = 2 * lockTtlMs;
  const mutex = new KeyedMutex();

  const breakIfStale = async (key: string, path: string): Promise<boolean> => {
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
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      });
    }
    await unlink(aside).catch(ignoreNotFound);
    return true;
  };

  const acquire = async (key: string): Promise<LockContent> => {
    const path = `${base(key)}.lock`;
    const token = randomBytes(12).toString('base64url');
    const deadline = Date.now() + lockWaitMs;
    let delay = 1;
    for (;;) {
      let handle: Awaited<ReturnType<typeof open>> | undefined;
      try {
        handle = await open(path, 'wx', 0o600);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      if (handle !== undefined) {
        const held = { token, expiresAt: Date.now() + lockTtlMs };
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

  const release = async (key: string, held: LockContent): Promise<void> => {
    const path = `${base(key)}.lock`;
    // Nobody breaks a lock before its expiry, so well before it the file is
    // still ours. Past that, remove it only if it still holds our token: it
    // may have been broken and taken by another holder.
    if (Date.now() >= held.expiresAt - lockTtlMs / 2) {
      const content = await readText(path, trust);
      if (content === undefined || parseLock(content)?.token !== held.token) return;
    }
    await unlink(path).catch(ignoreNotFound);
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
  };
}
