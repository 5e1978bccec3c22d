import { unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, SatchelError, StoreUnavailableError } from '../../errors.js';
import type {
  ClearExpiredOptions,
  SessionStore,
  StoredSession,
  UpdateResult,
} from '../../store.js';
import {
  checkOptions,
  closedError,
  consoleLogger,
  openGuard,
  positiveInteger,
  type StoreLogger,
} from '../kit.js';
import { decode, encode, KEY, PREFIX, parseLock } from './format.js';
import {
  eachFile,
  eachLimited,
  folderSyncs,
  ignoreNotFound,
  readText,
  resolveFolder,
  type Trust,
  writeAtomic,
} from './fs.js';
import { type ClearContext, clearExpired } from './clear.js';
import { fileLocks } from './locks.js';
import { ownerIndex } from './owners.js';

/** Where the file store reports files it refused to read; the manager's `logger` fits. */
export type FileStoreLogger = StoreLogger;

export interface FileStoreOptions {
  /**
   * The folder holding one file per session, created (mode 0700) if absent.
   * When it is shared — sticky, as `/tmp`, the default — sessions go in a
   * private subfolder of it, `satchel-sessions-<uid>`
   * (mode 0700, this user's): any local user can create files in a shared
   * folder, and a planted session file would sign its author in as anyone.
   * A subfolder of that name that is not this user's, or is open to others,
   * is refused at creation, as OpenSSH refuses a key file others can write;
   * so is a world-writable folder without the sticky bit, where anyone
   * could rename that subfolder away. A folder of your own is still better
   * in production.
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
   * broken, so it must comfortably exceed the time one write takes. (A
   * lock file shows an expiry at least 0.8 × this ahead when taken: a
   * process reuses its lock text while that holds, see `./locks.ts`.)
   * @default 10_000
   */
  lockTtlMs?: number;
  /**
   * The largest file the store reads. A larger one reads as absent (and is
   * logged), so a file grown or planted in the folder cannot make the
   * process read without bound. 8 MiB is eight times the manager's default
   * `maxPayloadBytes` (1 MiB): room for JSON escaping of any payload the
   * manager accepts by default. Raise it with `maxPayloadBytes`.
   * @default 8_388_608
   */
  maxFileBytes?: number;
  /**
   * Create `dir` (and the private subfolder) when missing. `false` refuses a
   * missing folder with a ConfigError instead, for tools that must not
   * create what a typo names.
   * @default true
   */
  createDir?: boolean;
  /**
   * Where files the store refuses to read are reported: a symbolic link, a
   * FIFO or another non-regular file, a file owned by another user, or one
   * above `maxFileBytes`. Each path is reported once.
   * @default console.warn
   */
  logger?: FileStoreLogger;
}

const KNOWN: (keyof FileStoreOptions)[] = [
  'dir',
  'prefix',
  'lockTtlMs',
  'maxFileBytes',
  'createDir',
  'logger',
];
/** How many files clearExpired and listings handle at once. */
const CONCURRENCY = 16;
/** How many refused paths are remembered, so each is logged once. */
const REFUSALS_REMEMBERED = 1_000;

/** What the store's operations share. */
interface Context extends ClearContext {
  run<T>(op: string, key: string | null, fn: () => Promise<T>): Promise<T>;
  readRecord(key: string): Promise<StoredSession | undefined>;
  readLive(key: string): Promise<StoredSession | undefined>;
  write(target: string, content: string, syncFolder?: boolean): Promise<void>;
}

/**
 * Keeps each session in its own file, as Django's `SESSION_ENGINE = 'file'`.
 * Writes are atomic and durable (temp file written with O_DSYNC, rename,
 * then a folder fsync that concurrent writes share: see `writeAtomic` and
 * `folderSyncs` in `./fs.ts`) and every compare-and-set runs under a per-key
 * lock that holds across processes, so several processes may share the
 * folder on one machine. A lock file is a hard link to a token file of the
 * process holding it (`<prefix>lock-token.<hex>.tmp`, removed once the
 * process holds no lock; see `./locks.ts`). Each file starts with a one-line header
 * (`satchel1 <expiresAt> <version> <createdAt>`) so `clearExpired` reads only
 * a few bytes per file.
 *
 * The store reads only regular files owned by its own user and below
 * `maxFileBytes`, opened without following symbolic links and without
 * blocking; anything else in the folder reads as absent and is logged.
 *
 * Each owner has an index file, `<prefix><hash>.owner` (see `./owners.ts`).
 * The `.owner` suffix keeps it apart from session files (keys never contain a
 * dot), and its name comes from a hash only, so no owner string reaches a
 * path. It changes under its own lock, by atomic rewrite, and is deleted when
 * it empties. The rules that keep it from ever hiding a live session:
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
export function fileStore(options?: FileStoreOptions): SessionStore {
  const given = checkOptions('file', options, KNOWN);
  const prefix = given.prefix ?? 'satchel-';
  if (!PREFIX.test(prefix)) {
    throw new ConfigError(`file store: prefix must match ${PREFIX}; got ${JSON.stringify(prefix)}`);
  }
  const lockTtlMs = positiveInteger('file store: ', 'lockTtlMs', given.lockTtlMs ?? 10_000);
  const maxBytes = positiveInteger('file store: ', 'maxFileBytes', given.maxFileBytes ?? 8_388_608);
  const logger = given.logger ?? consoleLogger;
  const uid = process.getuid?.();
  const dir = openFolder(resolve(given.dir ?? tmpdir()), uid, given.createDir ?? true);

  const refused = new Set<string>();
  const trust: Trust = {
    uid,
    maxBytes,
    refuse(path, reason) {
      if (refused.has(path)) return;
      if (refused.size >= REFUSALS_REMEMBERED) refused.clear();
      refused.add(path);
      logger.warn(`[satchel] [file] ignored ${path}: ${reason}`, { store: 'file', path, reason });
    },
  };
  const guard = openGuard('file');
  const pending = new Set<Promise<unknown>>();
  const base = (key: string) => join(dir, `${prefix}${key}`);
  const syncFolder = folderSyncs(dir);
  const write = (target: string, content: string, sync = true) =>
    writeAtomic(target, content, sync ? syncFolder : undefined);
  const readRecord = async (key: string) => {
    const text = await readText(base(key), trust);
    return text === undefined ? undefined : decode(text);
  };
  const readLive = async (key: string) => {
    const record = await readRecord(key);
    return record !== undefined && record.expiresAt > Date.now() ? record : undefined;
  };
  const each = (visit: (name: string) => Promise<void>) =>
    eachFile(dir, prefix, CONCURRENCY, visit);
  const locks = fileLocks(base, lockTtlMs, trust);
  const owners = ownerIndex({
    dir,
    prefix,
    trust,
    concurrency: CONCURRENCY,
    base,
    withKey: locks.withKey,
    readRecord,
    readLive,
    writeAtomic: write,
    eachFile: each,
  });

  /** Validates the key before any fs call, then runs `fn` with fs errors wrapped. */
  const run = <T>(op: string, key: string | null, fn: () => Promise<T>): Promise<T> => {
    if (key !== null && (typeof key !== 'string' || !KEY.test(key))) {
      return Promise.reject(new TypeError('[satchel] [file] invalid store key'));
    }
    if (guard.closed) return Promise.reject(closedError('file'));
    const promise = fn().catch((err: unknown) => {
      if (SatchelError.is(err)) throw err;
      throw new StoreUnavailableError('file', `${op} failed: ${(err as Error).message}`, err);
    });
    pending.add(promise);
    const done = () => pending.delete(promise);
    promise.then(done, done);
    return promise;
  };

  const ctx: Context = {
    dir,
    prefix,
    trust,
    base,
    locks,
    owners,
    run,
    readRecord,
    readLive,
    write,
    eachFile: each,
  };
  return {
    name: 'file',
    ...recordOps(ctx),
    ...ownerOps(ctx),
    ...lockOps(ctx),
    clearExpired: (now = Date.now(), opts?: ClearExpiredOptions) =>
      run('clearExpired', null, () => clearExpired(ctx, now, opts)),
    async close() {
      if (!guard.close()) return;
      await Promise.allSettled([...pending]);
      await locks.close();
    },
  };
}

function openFolder(dir: string, uid: number | undefined, create: boolean): string {
  try {
    return resolveFolder(dir, uid, create);
  } catch (err) {
    if (SatchelError.is(err)) throw err;
    throw new ConfigError(
      `file store: cannot use dir ${JSON.stringify(dir)}: ${(err as Error).message}`,
    );
  }
}

/** get, create, update, touch and destroy. */
function recordOps(
  ctx: Context,
): Pick<SessionStore, 'get' | 'create' | 'update' | 'touch' | 'destroy'> {
  const { run, locks, owners, base } = ctx;

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
    if (indexed !== undefined) await owners.add(indexed, key);
    await ctx.write(base(key), encode(record));
    if (previous?.owner !== undefined && previous.owner !== indexed) {
      await owners.remove(previous.owner, key);
    }
  };

  return {
    get: (key) => run('get', key, () => ctx.readLive(key)),

    create: (key, record) =>
      run('create', key, () =>
        locks.withKey(key, async () => {
          const previous = await ctx.readRecord(key);
          if (previous !== undefined && previous.expiresAt > Date.now()) return false;
          await writeRecord(key, record, previous);
          return true;
        }),
      ),

    update: (key, record, expectedVersion) =>
      run('update', key, () =>
        locks.withKey(key, async (): Promise<UpdateResult> => {
          const current = await ctx.readLive(key);
          if (current === undefined) return 'missing';
          if (current.version !== expectedVersion) return 'conflict';
          await writeRecord(key, record, current);
          return 'ok';
        }),
      ),

    touch: (key, expiresAt) =>
      run('touch', key, () =>
        locks.withKey(key, async () => {
          const current = await ctx.readLive(key);
          if (current !== undefined) await ctx.write(base(key), encode({ ...current, expiresAt }));
        }),
      ),

    destroy: (key) =>
      run('destroy', key, () =>
        locks.withKey(key, async () => {
          const owner = (await ctx.readRecord(key))?.owner;
          await unlink(base(key)).catch(ignoreNotFound);
          if (owner !== undefined) await owners.remove(owner, key);
        }),
      ),
  };
}

/** listByOwner and destroyByOwner. */
function ownerOps(ctx: Context): Required<Pick<SessionStore, 'listByOwner' | 'destroyByOwner'>> {
  const { run, locks, owners } = ctx;
  return {
    listByOwner: (owner) => run('listByOwner', null, () => owners.list(owner)),

    destroyByOwner: (owner, exceptKey) =>
      run('destroyByOwner', null, async () => {
        const keys = (await owners.list(owner))
          .map(({ key }) => key)
          .filter((key) => key !== exceptKey);
        let removed = 0;
        await eachLimited(keys, CONCURRENCY, (key) =>
          locks.withKey(key, async () => {
            // Only while `owner` still holds it: a session that changed
            // hands since the listing is not this owner's to end.
            if ((await ctx.readLive(key))?.owner !== owner) return;
            await unlink(ctx.base(key)).catch(ignoreNotFound);
            removed++;
            await owners.remove(owner, key);
          }),
        );
        return removed;
      }),
  };
}

/** The application lock (`lock: true`): an `.applock` file per key. */
function lockOps(ctx: Context): Required<Pick<SessionStore, 'lock' | 'unlock'>> {
  const { run, locks } = ctx;
  return {
    lock: (key, token, ttlMs) =>
      run('lock', key, () =>
        locks.withKey(key, async () => {
          const path = `${ctx.base(key)}.applock`;
          const now = Date.now();
          const content = await readText(path, ctx.trust);
          const held = content === undefined ? undefined : parseLock(content);
          if (held !== undefined && held.token !== token && held.expiresAt > now) return false;
          await ctx.write(path, JSON.stringify({ token, expiresAt: now + ttlMs }));
          return true;
        }),
      ),

    unlock: (key, token) =>
      run('unlock', key, () =>
        locks.withKey(key, async () => {
          const path = `${ctx.base(key)}.applock`;
          const content = await readText(path, ctx.trust);
          if (content !== undefined && parseLock(content)?.token === token) {
            await unlink(path).catch(ignoreNotFound);
          }
        }),
      ),
  };
}
