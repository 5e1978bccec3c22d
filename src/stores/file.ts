import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, statSync } from 'node:fs';
import { link, open, opendir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, SatchelError, StoreUnavailableError } from '../errors.js';
import type { OwnedRecord, SessionStore, StoredSession, UpdateResult } from '../store.js';
import { KeyedMutex } from '../locks.js';

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
const TMP_NAME = new RegExp(`^${KEY_PART}(\\.applock|\\.owner)?\\.[0-9a-f]+\\.tmp$`);
const APPLOCK_NAME = new RegExp(`^(${KEY_PART})\\.applock$`);
const LOCK_NAME = new RegExp(`^(${KEY_PART}(?:\\.owner)?)\\.lock$`);
const OWNER_NAME = new RegExp(`^(${KEY_PART})\\.owner$`);
const MAGIC = 'satchel1';
/** The lines after an owner index's first: keys, each ended by a newline. */
const INDEX_BODY = /^(?:[A-Za-z0-9_-]{1,128}\n)*$/;
/** Starts the first line of an owner index, followed by the owner as JSON. */
const OWNER_MAGIC = 'satchel-owner1';
const HEADER = /^satchel1 (\S+) (\S+) (\S+)$/;
/** Enough for the header line: three numbers of up to ~20 characters. */
const HEADER_BYTES = 128;
/** How many parsed owner indexes a store keeps for reuse. */
const PARSED_INDEXES = 16;
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
 *
 * Each owner has an index file, `<prefix><hash>.owner`, where `<hash>` is the
 * SHA-256 of the owner in base64url: a first line `satchel-owner1 <owner as
 * JSON>`, then the keys of the owner's sessions, one a line. The `.owner`
 * suffix keeps it apart from session files (keys never contain a dot), and
 * its name comes from a hash only, so no owner string reaches a path. It
 * changes under its own lock (`<prefix><hash>.owner.lock`), by atomic
 * rewrite, and is deleted when it empties. The rules that keep it from ever
 * hiding a live session:
 * - a write adds the key to its new owner's index *before* writing the
 *   session, and removes it from the old owner's after, all under the
 *   session's lock; a crash in between leaves only an extra line;
 * - a key leaves an index only under its session's lock, after checking the
 *   session file, so a listing that finds a line for a session that is gone,
 *   expired or someone else's prunes it without racing the session's writers;
 * - an index that cannot be parsed (damaged by hand, say) is rebuilt from a
 *   scan of the session files the first time it is needed. `clearExpired`
 *   prunes the lines of sessions it removes or finds expired, and leaves
 *   an unreadable index for that rebuild.
 * Locks are always taken session first, then owner, never the other way.
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
  /** The lock name (and, under `base`, the file name) of `owner`'s index. */
  const ownerId = (owner: string) =>
    `${createHash('sha256').update(owner).digest('base64url')}.owner`;

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

  /** Replaces `target` with `content`: temp file, fsync, rename, then (unless told not to) fsync the folder. */
  const writeAtomic = async (target: string, content: string, syncFolder = true): Promise<void> => {
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
    if (syncFolder) await syncDir(dir);
  };

  /** The session in `key`'s file, expired or not; undefined when absent or unparseable. */
  const readRecord = async (key: string): Promise<StoredSession | undefined> => {
    const text = await readIfExists(base(key));
    return text === undefined ? undefined : decode(text);
  };

  const readLive = async (key: string): Promise<StoredSession | undefined> => {
    const record = await readRecord(key);
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

  /**
   * Runs `visit` on the name of every entry of the folder that starts with
   * the prefix and is not a folder, CLEAR_CONCURRENCY at a time. opendir
   * streams the folder, so memory stays flat however many files it holds.
   */
  const eachFile = async (visit: (name: string) => Promise<void>): Promise<void> => {
    let failed = false;
    let failure: unknown;
    const inFlight = new Set<Promise<void>>();
    for await (const entry of await opendir(dir, { bufferSize: 64 })) {
      if (failed) break;
      if (!entry.name.startsWith(prefix) || entry.isDirectory()) continue;
      const task: Promise<void> = visit(entry.name).then(
        () => {
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
  };

  // --- The owner index -------------------------------------------------

  // The last parse of recently read indexes, reused while the file's text is
  // unchanged: an owner with thousands of sessions is read on every write.
  const parsedIndexes = new Map<string, { text: string; keys: ReadonlySet<string> }>();

  /** The keys in `owner`'s index: empty when it has none, undefined when it cannot be parsed. */
  const readIndex = async (owner: string): Promise<ReadonlySet<string> | undefined> => {
    const id = ownerId(owner);
    const text = await readIfExists(base(id));
    if (text === undefined) return new Set();
    const cached = parsedIndexes.get(id);
    if (cached?.text === text) return cached.keys;
    const parsed = parseIndex(text);
    if (parsed?.owner !== owner) return undefined;
    parsedIndexes.delete(id);
    parsedIndexes.set(id, { text, keys: parsed.keys });
    if (parsedIndexes.size > PARSED_INDEXES)
      parsedIndexes.delete(parsedIndexes.keys().next().value!);
    return parsed.keys;
  };

  /** The keys of the live sessions `owner` holds, from every session file: an index rebuilt. */
  const scanOwned = async (owner: string): Promise<Set<string>> => {
    const keys = new Set<string>();
    const now = Date.now();
    await eachFile(async (name) => {
      const key = name.slice(prefix.length);
      if (!KEY.test(key)) return;
      const header = await readHeader(join(dir, name));
      if (header === undefined || header.expiresAt <= now) return;
      const record = await readRecord(key);
      if (record?.owner === owner && record.expiresAt > now) keys.add(key);
    });
    return keys;
  };

  /** Applies `changes` (key -> true to add, false to remove) to `owner`'s index; holds its lock. */
  const applyIndex = async (owner: string, changes: Map<string, boolean>): Promise<void> => {
    const path = base(ownerId(owner));
    const read = await readIndex(owner);
    let changed = read === undefined;
    // Unreadable: rebuilt from the session files. This runs under the
    // index's lock, and every writer adds its key under it before writing.
    const keys = read === undefined ? await scanOwned(owner) : new Set(read);
    for (const [key, add] of changes) {
      if (keys.has(key) === add) continue;
      changed = true;
      if (add) keys.add(key);
      else keys.delete(key);
    }
    if (!changed) return;
    // The folder is not synced: an added key is followed by the session's
    // own write, whose folder sync makes this rename durable too, and a lost
    // removal or rebuild only leaves lines a later pass prunes again.
    if (keys.size > 0) {
      await writeAtomic(path, encodeIndex(owner, keys), false);
    } else {
      await unlink(path).catch(ignoreNotFound);
    }
  };

  // Changes to one index made at about the same time share one rewrite:
  // each waits for the batch it joined, and a batch takes the changes made
  // until it holds the index's lock.
  const batches = new Map<string, { changes: Map<string, boolean>; done: Promise<void> }>();
  const changeIndex = (owner: string, key: string, add: boolean): Promise<void> => {
    const id = ownerId(owner);
    let batch = batches.get(id);
    if (batch === undefined) {
      const changes = new Map<string, boolean>();
      const created = { changes, done: Promise.resolve() };
      const detach = () => {
        if (batches.get(id) === created) batches.delete(id);
      };
      created.done = withKey(id, () => {
        detach();
        return applyIndex(owner, changes);
      }).finally(detach);
      batches.set(id, created);
      batch = created;
    }
    batch.changes.set(key, add);
    return batch.done;
  };

  // Callers hold `key`'s lock, and a key leaves an index only under its own
  // lock: what the unlocked read shows about `key` stays true meanwhile.
  const indexAdd = async (owner: string, key: string): Promise<void> => {
    if ((await readIndex(owner))?.has(key)) return;
    await changeIndex(owner, key, true);
  };
  const indexRemove = async (owner: string, key: string): Promise<void> => {
    if ((await readIndex(owner))?.has(key) === false) return;
    await changeIndex(owner, key, false);
  };

  /**
   * Writes `record` under `key`, whose lock the caller holds and whose file
   * held `previous`, keeping the owner index in step.
   */
  const writeRecord = async (
    key: string,
    record: StoredSession,
    previous: StoredSession | undefined,
  ): Promise<void> => {
    // A record written already expired is nobody's to list.
    const indexed = record.expiresAt > Date.now() ? record.owner : undefined;
    if (indexed !== undefined) await indexAdd(indexed, key);
    await writeAtomic(base(key), encode(record));
    if (previous?.owner !== undefined && previous.owner !== indexed) {
      await indexRemove(previous.owner, key);
    }
  };

  /** Removes from `owner`'s index each of `keys` whose session is gone, expired or another's. */
  const prune = (owner: string, keys: string[]): Promise<void> =>
    eachLimited(keys, CLEAR_CONCURRENCY, (key) =>
      withKey(key, async () => {
        const record = await readLive(key);
        if (record?.owner !== owner) await indexRemove(owner, key);
      }),
    );

  /** The live sessions in `owner`'s index, in its order; prunes the lines that are not. */
  const listOwned = async (owner: string): Promise<OwnedRecord[]> => {
    const now = Date.now();
    let keys = await readIndex(owner);
    if (keys === undefined) {
      // Unreadable: rebuilt (or deleted when the owner has nothing live).
      await withKey(ownerId(owner), () => applyIndex(owner, new Map()));
      keys = (await readIndex(owner)) ?? (await scanOwned(owner));
    }
    const listed = [...keys];
    const records = new Array<StoredSession | undefined>(listed.length);
    await eachLimited(listed, CLEAR_CONCURRENCY, async (key, i) => {
      records[i] = await readRecord(key);
    });
    const out: OwnedRecord[] = [];
    const stale: string[] = [];
    listed.forEach((key, i) => {
      const record = records[i];
      if (record !== undefined && record.expiresAt > now && record.owner === owner) {
        out.push({ key, record });
      } else {
        stale.push(key);
      }
    });
    // Housekeeping only: the listing is right without it, and the next
    // listing or clearExpired tries again.
    await prune(owner, stale).catch(() => {});
    return out;
  };

  const removeIfExpired = async (key: string, now: number): Promise<boolean> => {
    const path = base(key);
    const header = await readHeader(path);
    if (header === undefined || header.expiresAt > now) return false;
    return withKey(key, async () => {
      // Re-check: it may have been renewed since the unlocked read.
      const text = await readIfExists(path);
      const newline = text?.indexOf('\n') ?? -1;
      const again = text === undefined ? undefined : parseHeader(text.slice(0, newline));
      if (again === undefined || newline === -1 || again.expiresAt > now) return false;
      try {
        await unlink(path);
      } catch (err) {
        if (isNotFound(err)) return false;
        throw err;
      }
      const owner = decode(text!)?.owner;
      if (owner !== undefined) await indexRemove(owner, key);
      return true;
    });
  };

  /** Prunes the index in file `name` of sessions that are gone or expired; leaves an unreadable one. */
  const pruneIndexFile = async (name: string, hash: string): Promise<void> => {
    const text = await readIfExists(join(dir, name));
    const parsed = text === undefined ? undefined : parseIndex(text);
    if (parsed === undefined || ownerId(parsed.owner) !== `${hash}.owner`) return;
    const now = Date.now();
    const stale: string[] = [];
    await eachLimited([...parsed.keys], CLEAR_CONCURRENCY, async (key) => {
      const header = await readHeader(base(key));
      if (header === undefined || header.expiresAt <= now) stale.push(key);
    });
    await prune(parsed.owner, stale);
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
          const previous = await readRecord(key);
          if (previous !== undefined && previous.expiresAt > Date.now()) return false;
          await writeRecord(key, record, previous);
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
          await writeRecord(key, record, current);
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
          const owner = (await readRecord(key))?.owner;
          await unlink(base(key)).catch(ignoreNotFound);
          if (owner !== undefined) await indexRemove(owner, key);
        }),
      );
    },

    listByOwner(owner) {
      return run('listByOwner', null, () => listOwned(owner));
    },

    destroyByOwner(owner, exceptKey) {
      return run('destroyByOwner', null, async () => {
        const keys = (await listOwned(owner))
          .map(({ key }) => key)
          .filter((key) => key !== exceptKey);
        let removed = 0;
        await eachLimited(keys, CLEAR_CONCURRENCY, (key) =>
          withKey(key, async () => {
            // Only while `owner` still holds it: a session that changed
            // hands since the listing is not this owner's to end.
            if ((await readLive(key))?.owner !== owner) return;
            await unlink(base(key)).catch(ignoreNotFound);
            removed++;
            await indexRemove(owner, key);
          }),
        );
        return removed;
      });
    },

    clearExpired(now = Date.now()) {
      return run('clearExpired', null, async () => {
        const tmpCutoff = Date.now() - TMP_MAX_AGE_MS;
        let removed = 0;
        await eachFile(async (name) => {
          const rest = name.slice(prefix.length);
          if (KEY.test(rest)) {
            if (await removeIfExpired(rest, now)) removed++;
            return;
          }
          if (TMP_NAME.test(rest)) {
            await removeIfOld(join(dir, name), tmpCutoff);
            return;
          }
          const appLock = APPLOCK_NAME.exec(rest)?.[1];
          if (appLock !== undefined) {
            await removeAppLockIfExpired(appLock, now);
            return;
          }
          const lock = LOCK_NAME.exec(rest)?.[1];
          if (lock !== undefined) await breakIfStale(lock, join(dir, name));
        });
        // Then the indexes, whose lines for the sessions removed above are
        // already gone: this finds what a crash or a hand left behind.
        await eachFile(async (name) => {
          const ownerHash = OWNER_NAME.exec(name.slice(prefix.length))?.[1];
          if (ownerHash !== undefined) await pruneIndexFile(name, ownerHash);
        });
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

function encodeIndex(owner: string, keys: Iterable<string>): string {
  let text = `${OWNER_MAGIC} ${JSON.stringify(owner)}\n`;
  for (const key of keys) text += `${key}\n`;
  return text;
}

/** The owner and keys of an index file, or undefined when any line is not what the store writes. */
function parseIndex(text: string): { owner: string; keys: Set<string> } | undefined {
  const lines = text.split('\n');
  const head = lines[0] ?? '';
  if (!head.startsWith(`${OWNER_MAGIC} `) || lines.at(-1) !== '') return undefined;
  let owner: unknown;
  try {
    owner = JSON.parse(head.slice(OWNER_MAGIC.length + 1));
  } catch {
    return undefined;
  }
  if (typeof owner !== 'string') return undefined;
  // Keys become paths: only what a key may be is accepted.
  if (!INDEX_BODY.test(text.slice(head.length + 1))) return undefined;
  return { owner, keys: new Set(lines.slice(1, -1)) };
}

/** Runs `fn` on every item, at most `limit` at once; rejects with the first failure. */
async function eachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const index = next++;
      try {
        await fn(items[index]!, index);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
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
