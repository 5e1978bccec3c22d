import { randomBytes } from 'node:crypto';
import fsCallbacks from 'node:fs';
import { link, open, rename, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
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
        // EEXIST: taken again meanwhile. ENOENT: clearExpired removed the
        // name aside (a minute-old .tmp): nothing is left to put back.
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EEXIST' && code !== 'ENOENT') throw err;
      });
    }
    await unlink(aside).catch(ignoreNotFound);
    return true;
  };

  const tokens = tokenFiles(base('lock-token'));
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
          return tryCreate(path);
        }
        throw err;
      }
    }
  };

  /** Takes the lock at `path` by creating it with O_EXCL; where hard links are not available. */
  const tryCreate = async (path: string): Promise<Held | undefined> => {
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
  };

  const acquire = async (key: string): Promise<Held> => {
    const path = `${base(key)}.lock`;
    const deadline = Date.now() + lockWaitMs;
    let delay = 1;
    for (;;) {
      const held = linkable ? await tryLink(path) : await tryCreate(path);
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

/** A lock this process holds: what its file says, and the token file linked to it (none when created with O_EXCL). */
interface Held extends LockContent {
  file?: TokenFile;
}

/** A token file: a regular file of this process's, open, that a lock file is a hard link to. */
interface TokenFile {
  path: string;
  fd: number;
  /** What it holds; undefined until first written. */
  content: LockContent | undefined;
  /** A token no other token file of this process ever shows. */
  nextToken(): string;
  /**
   * Rewrites the file in place with `held`, padded to a fixed width so no
   * older, longer text survives. Only while no lock file links to it.
   */
  write(held: LockContent): Promise<void>;
}

/**
 * A token file's text is reused for another lock while at least this share
 * of the lock lifetime is left before the expiry it shows.
 */
const REUSE_WHILE = 0.8;

/** Lock file text is padded with spaces (valid JSON) to this width. */
const TOKEN_FILE_BYTES = 96;
/** How many idle token files a store keeps (each holds a file descriptor). */
const IDLE_TOKEN_FILES = 32;

/**
 * The pool of token files a store's locks link to, named
 * `<stem>.<hex>.tmp`, which clearExpired takes for a dead write's temp file
 * once it is a minute old: so a crashed process leaves none for long, and
 * one removed while idle is simply replaced (its link fails with ENOENT).
 */
function tokenFiles(stem: string) {
  const idle: TokenFile[] = [];
  const processToken = randomBytes(9).toString('base64url');
  let count = 0;
  let closed = false;
  /** Token files taken and not yet given back or retired. */
  let busy = 0;

  const create = async (): Promise<TokenFile> => {
    for (;;) {
      const path = `${stem}.${randomBytes(6).toString('hex')}.tmp`;
      let fd: number;
      try {
        // O_EXCL: never a file someone planted.
        fd = await fsOpen(path, 'wx', 0o600);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw err;
      }
      const buffer = Buffer.alloc(TOKEN_FILE_BYTES, 0x20);
      const file: TokenFile = {
        path,
        fd,
        content: undefined,
        nextToken: () => {
          count = (count + 1) % Number.MAX_SAFE_INTEGER;
          return `${processToken}${count.toString(36)}`;
        },
        write: (held) =>
          new Promise((resolve, reject) => {
            buffer.fill(0x20);
            const text = JSON.stringify(held);
            if (buffer.write(text, 'utf8') !== text.length) {
              reject(new Error('lock token too long'));
              return;
            }
            // Unknown until the write succeeds: a failed one retires the file.
            file.content = undefined;
            fsCallbacks.write(fd, buffer, 0, buffer.length, 0, (err, written) => {
              if (err !== null) reject(err);
              else if (written !== buffer.length) reject(new Error('short write of a lock token'));
              else {
                file.content = held;
                resolve();
              }
            });
          }),
      };
      return file;
    }
  };

  /** Once no lock of this process is taken (or the store closed), removes the idle ones. */
  const drain = (): Promise<unknown> =>
    busy === 0 || closed ? Promise.all(idle.splice(0).map(retireNow)) : Promise.resolve();

  return {
    take: (): Promise<TokenFile> => {
      busy++;
      const file = idle.pop();
      return file !== undefined
        ? Promise.resolve(file)
        : create().catch((err: unknown) => {
            busy--;
            throw err;
          });
    },
    /**
     * Returns a token file for reuse. Once no lock of this process is taken,
     * they are all removed: an idle store leaves only its records in the
     * folder, and token files are only kept across overlapping locks.
     */
    give(file: TokenFile): Promise<void> {
      busy--;
      if (closed || busy === 0 || idle.length >= IDLE_TOKEN_FILES) {
        return Promise.all([retireNow(file), drain()]).then(() => {});
      }
      idle.push(file);
      return Promise.resolve();
    },
    /** Removes a token file for good: a breaker may have linked another name to it. */
    retire(file: TokenFile): Promise<void> {
      busy--;
      return Promise.all([retireNow(file), drain()]).then(() => {});
    },
    async close(): Promise<void> {
      closed = true;
      await drain();
    },
  };
}

/** True when no name but its own links to the token file. */
async function soleName(file: TokenFile): Promise<boolean> {
  const stats = await fsFstat(file.fd).catch(() => undefined);
  return stats?.nlink === 1;
}

/** Closes a token file and removes its name; it is never written again. */
async function retireNow(file: TokenFile): Promise<void> {
  await fsClose(file.fd).catch(() => {});
  await unlink(file.path).catch(() => {});
}

const fsOpen = promisify(fsCallbacks.open);
const fsClose = promisify(fsCallbacks.close);
const fsFstat = promisify(fsCallbacks.fstat);
