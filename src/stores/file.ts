import { randomBytes } from 'node:crypto';
import { mkdirSync, statSync } from 'node:fs';
import { link, open, opendir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, SatchelError, StoreUnavailableError } from '../errors.js';
import type { SessionStore, StoredSession, UpdateResult } from '../store.js';
import { KeyedMutex } from './lock.js';

export interface FileStoreOptions {
  /**
   * The folder holding one file per session, created (mode 0700) if absent.
   * The default is shared by every user of the machine: session files are
   * written with mode 0600, but a folder of your own is better in production.
   * @default os.tmpdir()
   */
  dir?: string;
  /**
   * Starts every file name this store writes (`${prefix}${key}`), so the
   * store, and `clearExpired` above all, only ever touches its own files.
   * Letters, digits, `_`, `-` and `.` only.
   * @default 'satchel-'
   */
  prefix?: string;
  /**
   * How long the short lock taken around each compare-and-set lives. A lock
   * file older than this is taken to belong to a crashed process and is
   * broken, so it must comfortably exceed the time one write takes.
   * @default 10_000
   */
  lockTtlMs?: number;
}

const KEY = /^[A-Za-z0-9_-]{1,128}$/;
const PREFIX = /^[A-Za-z0-9_.-]{1,64}$/;
const KEY_PART = '[A-Za-z0-9_-]{1,128}';
const TMP_NAME = new RegExp(`^${KEY_PART}(\\.applock)?\\.[0-9a-f]+\\.tmp$`);
const APPLOCK_NAME = new RegExp(`^(${KEY_PART})\\.applock$`);
const LOCK_NAME = new RegExp(`^(${KEY_PART})\\.lock$`);
const MAGIC = 'satchel1';
const HEADER = /^satchel1 (\S+) (\S+) (\S+)$/;
/** Enough for the header line: three numbers of up to ~20 characters. */
const HEADER_BYTES = 128;
/** How many files clearExpired handles at once. */
const CLEAR_CONCURRENCY = 16;
/** A temp file older than this belongs to a write that died. */
const TMP_MAX_AGE_MS = 60_000;

interface Header {
  expiresAt: number;
  version: number;
  createdAt: number;
}

interface LockContent {
  token: string;
  expiresAt: number;
}

/**
 * Keeps each session in its own file, as Django's `SESSION_ENGINE = 'file'`.
 * Writes are atomic (temp file, fsync, rename) and every compare-and-set runs
 * under a per-key lock that holds across processes, so several processes may
 * share the folder on one machine. Each file starts with a one-line header
 * (`satchel1 <expiresAt> <version> <createdAt>`) so `clearExpired` reads only
 * a few bytes per file.
 */
export function fileStore(options: FileStoreOptions = {}): SessionStore {
  const dir = resolve(options.dir ?? tmpdir());
  const prefix = options.prefix ?? 'satchel-';
  const lockTtlMs = options.lockTtlMs ?? 10_000;
  if (!PREFIX.test(prefix)) {
    throw new ConfigError(`file store: prefix must match ${PREFIX}; got ${JSON.stringify(prefix)}`);
  }
  if (!Number.isSafeInteger(lockTtlMs) || lockTtlMs < 1) {
    throw new ConfigError(
      `file store: lockTtlMs must be a positive integer; got ${String(lockTtlMs)}`,
    );
  }
  try {
    ensureDir(dir);
  } catch (err) {
    throw new ConfigError(
      `file store: cannot use dir ${JSON.stringify(dir)}: ${(err as Error).message}`,
    );
  }
  // Waiting twice the lock's lifetime outlasts any holder that crashed.
  const lockWaitMs = 2 * lockTtlMs;

  const mutex = new KeyedMutex();
  const pending = new Set<Promise<unknown>>();
  let closed = false;

  const base = (key: string) => join(dir, `${prefix}${key}`);

  /** Validates the key before any fs call, then runs `fn` with fs errors wrapped. */
  const run = <T>(op: string, key: string | null, fn: () => Promise<T>): Promise<T> => {
    if (key !== null && (typeof key !== 'string' || !KEY.test(key))) {
      return Promise.reject(new TypeError('[satchel] [file] invalid store key'));
    }
    if (closed) return Promise.reject(new StoreUnavailableError('file', 'the store is closed'));
    const promise = fn().catch((err: unknown) => {
      if (SatchelError.is(err)) throw err;
      throw new StoreUnavailableError('file', `${op} failed: ${(err as Error).message}`, err);
    });
    pending.add(promise);
    const done = () => pending.delete(promise);
    promise.then(done, done);
    return promise;
  };

  const writeAtomic = async (target: string, content: string): Promise<void> => {
    const temp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(content, 'utf8');
      await handle.sync();
      await handle.close();
      await rename(temp, target);
    } catch (err) {
      await handle.close().catch(() => {});
      await unlink(temp).catch(() => {});
      throw err;
    }
    await syncDir(dir);
  };

  const readLive = async (key: string): Promise<StoredSession | undefined> => {
    const text = await readIfExists(base(key));
    if (text === undefined) return undefined;
    const record = decode(text);
    return record !== undefined && record.expiresAt > Date.now() ? record : undefined;
  };

  /**
   * Removes the lock file at `path` when it has expired. Resolves true when
   * the caller should try to take the lock again at once.
   */
  const breakIfStale = async (key: string, path: string): Promise<boolean> => {
    const content = await readIfExists(path);
    if (content === undefined) return true;
    let expiresAt = parseLock(content)?.expiresAt;
    if (expiresAt === undefined) {
      // Empty: its holder died between creating and writing it. Age it by mtime.
      const stats = await stat(path).catch(ignoreNotFound);
      if (stats === undefined) return true;
      expiresAt = stats.mtimeMs + lockTtlMs;
    }
    if (expiresAt > Date.now()) return false;
    // Move it aside first and check that what moved is the stale lock read
    // above, not a fresh one another process took in between.
    const aside = `${base(key)}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await rename(path, aside);
    } catch (err) {
      if (isNotFound(err)) return true;
      throw err;
    }
    const moved = await readIfExists(aside);
    if (moved !== undefined && moved !== content) {
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
      const content = await readIfExists(path);
      if (content === undefined || parseLock(content)?.token !== held.token) return;
    }
    await unlink(path).catch(ignoreNotFound);
  };

  /** Runs `fn` holding the key's lock, in this process and across processes. */
  const withKey = <T>(key: string, fn: () => Promise<T>): Promise<T> =>
    mutex.run(key, async () => {
      const held = await acquire(key);
      try {
        return await fn();
      } finally {
        await release(key, held);
      }
    });

  const removeIfExpired = async (key: string, now: number): Promise<boolean> => {
    const path = base(key);
    const header = await readHeader(path);
    if (header === undefined || header.expiresAt > now) return false;
    return withKey(key, async () => {
      // Re-check: it may have been renewed since the unlocked read.
      const again = await readHeader(path);
      if (again === undefined || again.expiresAt > now) return false;
      try {
        await unlink(path);
        return true;
      } catch (err) {
        if (isNotFound(err)) return false;
        throw err;
      }
    });
  };

  const removeAppLockIfExpired = (key: string, now: number): Promise<void> =>
    withKey(key, async () => {
      const path = `${base(key)}.applock`;
      const content = await readIfExists(path);
      const held = content === undefined ? undefined : parseLock(content);
      if (content !== undefined && (held === undefined || held.expiresAt <= now)) {
        await unlink(path).catch(ignoreNotFound);
      }
    });

  const removeIfOld = async (path: string, before: number): Promise<void> => {
    const stats = await stat(path).catch(ignoreNotFound);
    if (stats?.isFile() && stats.mtimeMs < before) {
      await unlink(path).catch(ignoreNotFound);
    }
  };

  return {
    name: 'file',

    get(key) {
      return run('get', key, () => readLive(key));
    },

    create(key, record) {
      return run('create', key, () =>
        withKey(key, async () => {
          if ((await readLive(key)) !== undefined) return false;
          await writeAtomic(base(key), encode(record));
          return true;
        }),
      );
    },

    update(key, record, expectedVersion) {
      return run('update', key, () =>
        withKey(key, async (): Promise<UpdateResult> => {
          const current = await readLive(key);
          if (current === undefined) return 'missing';
          if (current.version !== expectedVersion) return 'conflict';
          await writeAtomic(base(key), encode(record));
          return 'ok';
        }),
      );
    },

    touch(key, expiresAt) {
      return run('touch', key, () =>
        withKey(key, async () => {
          const current = await readLive(key);
          if (current !== undefined)
            await writeAtomic(base(key), encode({ ...current, expiresAt }));
        }),
      );
    },

    destroy(key) {
      return run('destroy', key, () =>
        withKey(key, async () => {
          await unlink(base(key)).catch(ignoreNotFound);
        }),
      );
    },

    clearExpired(now = Date.now()) {
      return run('clearExpired', null, async () => {
        const tmpCutoff = Date.now() - TMP_MAX_AGE_MS;
        /** Resolves to 1 when it removed an expired session, else 0. */
        const visit = async (name: string): Promise<number> => {
          const rest = name.slice(prefix.length);
          if (KEY.test(rest)) return (await removeIfExpired(rest, now)) ? 1 : 0;
          if (TMP_NAME.test(rest)) {
            await removeIfOld(join(dir, name), tmpCutoff);
            return 0;
          }
          const appLock = APPLOCK_NAME.exec(rest)?.[1];
          if (appLock !== undefined) {
            await removeAppLockIfExpired(appLock, now);
            return 0;
          }
          const lock = LOCK_NAME.exec(rest)?.[1];
          if (lock !== undefined) await breakIfStale(lock, join(dir, name));
          return 0;
        };

        let removed = 0;
        let failed = false;
        let failure: unknown;
        const inFlight = new Set<Promise<void>>();
        // opendir streams the folder and at most CLEAR_CONCURRENCY files are
        // handled at once: memory stays flat however many files it holds.
        for await (const entry of await opendir(dir, { bufferSize: 64 })) {
          if (failed) break;
          if (!entry.name.startsWith(prefix) || entry.isDirectory()) continue;
          const task: Promise<void> = visit(entry.name).then(
            (count) => {
              removed += count;
              inFlight.delete(task);
            },
            (err: unknown) => {
              if (!failed) failure = err;
              failed = true;
              inFlight.delete(task);
            },
          );
          inFlight.add(task);
          if (inFlight.size >= CLEAR_CONCURRENCY) await Promise.race(inFlight);
        }
        await Promise.all(inFlight);
        if (failed) throw failure;
        return removed;
      });
    },

    async close() {
      closed = true;
      await Promise.allSettled([...pending]);
      await mutex.idle();
    },

    lock(key, token, ttlMs) {
      return run('lock', key, () =>
        withKey(key, async () => {
          const path = `${base(key)}.applock`;
          const now = Date.now();
          const content = await readIfExists(path);
          const held = content === undefined ? undefined : parseLock(content);
          if (held !== undefined && held.token !== token && held.expiresAt > now) return false;
          await writeAtomic(path, JSON.stringify({ token, expiresAt: now + ttlMs }));
          return true;
        }),
      );
    },

    unlock(key, token) {
      return run('unlock', key, () =>
        withKey(key, async () => {
          const path = `${base(key)}.applock`;
          const content = await readIfExists(path);
          if (content !== undefined && parseLock(content)?.token === token) {
            await unlink(path).catch(ignoreNotFound);
          }
        }),
      );
    },
  };
}

function encode(record: StoredSession): string {
  const body: { data: string; owner?: string } = { data: record.data };
  if (record.owner !== undefined) body.owner = record.owner;
  return `${MAGIC} ${record.expiresAt} ${record.version} ${record.createdAt}\n${JSON.stringify(body)}`;
}

/** The record in `text`, or undefined when it cannot be parsed (it then reads as absent). */
function decode(text: string): StoredSession | undefined {
  const newline = text.indexOf('\n');
  if (newline === -1) return undefined;
  const header = parseHeader(text.slice(0, newline));
  if (header === undefined) return undefined;
  let body: unknown;
  try {
    body = JSON.parse(text.slice(newline + 1));
  } catch {
    return undefined;
  }
  if (typeof body !== 'object' || body === null) return undefined;
  const { data, owner } = body as { data?: unknown; owner?: unknown };
  if (typeof data !== 'string') return undefined;
  if (owner !== undefined && typeof owner !== 'string') return undefined;
  const record: StoredSession = { data, ...header };
  if (owner !== undefined) record.owner = owner;
  return record;
}

function parseHeader(line: string): Header | undefined {
  const match = HEADER.exec(line);
  if (match === null) return undefined;
  const [expiresAt, version, createdAt] = [match[1], match[2], match[3]].map(Number);
  if (expiresAt === undefined || version === undefined || createdAt === undefined) return undefined;
  if (Number.isNaN(expiresAt) || Number.isNaN(version) || Number.isNaN(createdAt)) return undefined;
  return { expiresAt, version, createdAt };
}

/** The header of the session file at `path`, reading only its first bytes; undefined when absent or unparseable. */
async function readHeader(path: string): Promise<Header | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  try {
    const buffer = Buffer.alloc(HEADER_BYTES);
    // A folder that merely looks like a session file is not ours: skip it.
    const read = await handle.read(buffer, 0, HEADER_BYTES, 0).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'EISDIR') return undefined;
      throw err;
    });
    if (read === undefined) return undefined;
    const { bytesRead } = read;
    const text = buffer.toString('latin1', 0, bytesRead);
    const newline = text.indexOf('\n');
    return newline === -1 ? undefined : parseHeader(text.slice(0, newline));
  } finally {
    await handle.close();
  }
}

function parseLock(content: string): LockContent | undefined {
  try {
    const parsed: unknown = JSON.parse(content);
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    const { token, expiresAt } = parsed as { token?: unknown; expiresAt?: unknown };
    if (typeof token !== 'string' || typeof expiresAt !== 'number') return undefined;
    return { token, expiresAt };
  } catch {
    return undefined;
  }
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/**
 * Creates `dir` and missing parents, mode 0700. Not `mkdirSync` with
 * `recursive: true`: on Node 20 that never returns for some paths, such as
 * a folder under /proc.
 */
function ensureDir(dir: string): void {
  try {
    if (statSync(dir).isDirectory()) return;
    throw new Error('not a folder');
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  const parent = dirname(dir);
  if (parent !== dir) ensureDir(parent);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    // Another process may have created it in between.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

/** Makes a rename durable. Best effort: some platforms cannot open or sync a folder. */
async function syncDir(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Not durable on this platform; the rename itself is still atomic.
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

function ignoreNotFound(err: unknown): undefined {
  if (!isNotFound(err)) throw err;
  return undefined;
}
