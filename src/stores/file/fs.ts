import { randomBytes } from 'node:crypto';
import { constants, lstatSync, mkdirSync, statSync } from 'node:fs';
import { lstat, opendir, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ConfigError } from '../../errors.js';
import { fdClose, fdDatasync, fdOpen, fdRead, fdStat, fdSync, fdWrite } from './fd.js';
import { headerOf, type Header, HEADER_BYTES } from './format.js';

/**
 * The file store's file system helpers. Everything it reads goes through
 * `readSafe`, which trusts only what this process's user could have written:
 * a symbolic link, a FIFO, a device, a folder, a file owned by another user
 * or one above the size cap is never read (a FIFO never blocks: it is opened
 * non-blocking and refused after fstat), and reads as absent.
 */

/** Which files the store reads. */
export interface Trust {
  /** The uid files must belong to; undefined where there are no uids (Windows). */
  uid: number | undefined;
  /** Files larger than this are refused. */
  maxBytes: number;
  /** Told about every refused file, with why. */
  refuse(path: string, reason: string): void;
}

export type FileRead =
  | { state: 'ok'; text: string; mtimeMs: number }
  | { state: 'absent' }
  | { state: 'refused' };

const ABSENT: FileRead = { state: 'absent' };
const REFUSED: FileRead = { state: 'refused' };

// O_NOFOLLOW: a planted symlink fails with ELOOP instead of being followed.
// O_NONBLOCK: opening a FIFO returns at once instead of parking a libuv thread.
const READ_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);

/**
 * Reads the file at `path` if it is a regular file owned by `trust.uid` and
 * within the size cap; at most `limit` bytes when given.
 */
export async function readSafe(path: string, trust: Trust, limit?: number): Promise<FileRead> {
  let fd: number;
  try {
    fd = await fdOpen(path, READ_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return ABSENT;
    // ELOOP (Linux, macOS) or EMLINK (FreeBSD): a symbolic link.
    if (code === 'ELOOP' || code === 'EMLINK') {
      trust.refuse(path, 'it is a symbolic link');
      return REFUSED;
    }
    throw err;
  }
  try {
    const stats = await fdStat(fd);
    const reason = !stats.isFile()
      ? 'it is not a regular file'
      : trust.uid !== undefined && stats.uid !== trust.uid
        ? `it is owned by uid ${stats.uid}, not ${trust.uid}`
        : stats.size > trust.maxBytes
          ? `it is larger than maxFileBytes (${stats.size} > ${trust.maxBytes})`
          : undefined;
    if (reason !== undefined) {
      trust.refuse(path, reason);
      return REFUSED;
    }
    const buffer = Buffer.allocUnsafe(Math.min(limit ?? stats.size, stats.size));
    let filled = 0;
    while (filled < buffer.length) {
      const bytesRead = await fdRead(fd, buffer, filled, buffer.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    const text = buffer.toString(limit === undefined ? 'utf8' : 'latin1', 0, filled);
    return { state: 'ok', text, mtimeMs: stats.mtimeMs };
  } finally {
    await fdClose(fd);
  }
}

/** The text of a trusted file; undefined when absent or refused. */
export async function readText(path: string, trust: Trust): Promise<string | undefined> {
  const read = await readSafe(path, trust);
  return read.state === 'ok' ? read.text : undefined;
}

/** The header of the session file at `path`, reading only its first bytes; undefined when absent, refused or unparseable. */
export async function readHeader(path: string, trust: Trust): Promise<Header | undefined> {
  const read = await readSafe(path, trust, HEADER_BYTES);
  return read.state === 'ok' ? headerOf(read.text) : undefined;
}

/**
 * Replaces `target` with `content` atomically: a temp file next to it,
 * written and made durable, then renamed over `target`. With `syncFolder`,
 * resolves only once a folder sync that began after the rename has ended,
 * so the rename is durable too.
 *
 * The temp file is opened with O_DSYNC where the platform has it: each
 * write() then returns only once its data and the metadata needed to read
 * that data back (size, block allocation) are on disk, as fdatasync()
 * promises; Linux implements it as exactly that, a datasync of the range
 * written. For a file created by this call that is all fsync() would add
 * to it too, bar its timestamps, which the store never relies on (the
 * expiry lives in the header), and it saves a thread pool round trip per
 * write. Where there is no O_DSYNC (Windows) the file is datasync()ed.
 */
export async function writeAtomic(
  target: string,
  content: string,
  syncFolder?: () => Promise<void>,
): Promise<void> {
  const temp = `${target}.${tempSuffix()}.tmp`;
  // O_CREAT | O_EXCL ('wx'): it never follows or reuses anything planted.
  const fd = await fdOpen(temp, WRITE_FLAGS, 0o600);
  try {
    const data = Buffer.from(content, 'utf8');
    let written = 0;
    while (written < data.length) {
      const bytes = await fdWrite(fd, data, written, data.length - written, written);
      if (bytes === 0) throw new Error(`no progress writing ${temp}`);
      written += bytes;
    }
    if (constants.O_DSYNC === undefined) await fdDatasync(fd);
  } catch (err) {
    await fdClose(fd).catch(() => {});
    await unlink(temp).catch(() => {});
    throw err;
  }
  try {
    await fdClose(fd);
    await rename(temp, target);
  } catch (err) {
    await unlink(temp).catch(() => {});
    throw err;
  }
  if (syncFolder !== undefined) await syncFolder();
}

// O_DSYNC: see writeAtomic. Absent on Windows, where datasync() follows the writes.
const WRITE_FLAGS =
  constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_DSYNC ?? 0);

/**
 * Unique temp file suffixes, hex (what clearExpired recognises): random per
 * process, then a counter. They need to be unique, not secret: the temp
 * file is created with O_EXCL, so a name taken only fails that one write.
 */
const TEMP_PREFIX = randomBytes(6).toString('hex');
let tempCounter = 0;
function tempSuffix(): string {
  tempCounter = (tempCounter + 1) % Number.MAX_SAFE_INTEGER;
  return `${TEMP_PREFIX}${tempCounter.toString(16)}`;
}

/**
 * Group commit of the syncs of one folder: the function it returns resolves
 * once a sync of `dir` that *began after the call* has ended, so a caller
 * whose rename completed before calling it knows the rename is durable.
 * At most one sync is in flight; callers arriving while one runs share the
 * next one, which starts when it ends and covers every rename done by then.
 * So N concurrent writes cost about two folder syncs, not N.
 */
export function folderSyncs(
  dir: string,
  sync: (dir: string) => Promise<void> = syncDir,
): () => Promise<void> {
  let running: Promise<void> | undefined;
  let queued: Promise<void> | undefined;
  const start = (): Promise<void> => {
    const current = sync(dir);
    running = current;
    const ended = () => {
      if (running === current) running = undefined;
    };
    current.then(ended, ended);
    return current;
  };
  return () => {
    // Not begun yet: it begins after this caller's rename, so it covers it.
    if (queued !== undefined) return queued;
    if (running === undefined) return start();
    // The one running may have begun before this caller's rename: wait for
    // the next, which begins once it has ended, failed or not.
    const next = running.then(start, start);
    queued = next;
    const begun = () => {
      if (queued === next) queued = undefined;
    };
    // Cleared as the next one begins: a later caller must wait for one after it.
    running.then(begun, begun);
    return next;
  };
}

/** Makes the renames done so far in `dir` durable. Best effort: some platforms cannot open or sync a folder. */
export async function syncDir(dir: string): Promise<void> {
  try {
    const fd = await fdOpen(dir, constants.O_RDONLY);
    try {
      await fdSync(fd);
    } finally {
      await fdClose(fd);
    }
  } catch {
    // Not durable on this platform; the rename itself is still atomic.
  }
}

/** Removes the regular file at `path` when it was last changed before `before`. */
export async function removeIfOld(path: string, before: number): Promise<void> {
  const stats = await lstat(path).catch(ignoreNotFound);
  if (stats?.isFile() && stats.mtimeMs < before) {
    await unlink(path).catch(ignoreNotFound);
  }
}

/**
 * The folder records go in. `dir` itself, created (0700) if absent — unless
 * it is shared (sticky and world-writable, as /tmp), where any local user
 * could plant files: then a private subfolder of it,
 * `satchel-sessions-<uid>`, created 0700 and refused, as OpenSSH's
 * StrictModes does, when it exists as anything but a folder of this user's
 * with no access for others. A world-writable folder without the sticky bit
 * is refused: anyone could rename the private subfolder away.
 */
export function resolveFolder(dir: string, uid: number | undefined, create: boolean): string {
  ensureDir(dir, create);
  if (uid === undefined) return dir;
  const mode = statSync(dir).mode;
  if ((mode & 0o1002) === 0) return dir;
  if ((mode & 0o1000) === 0) {
    // Without the sticky bit anyone may rename or replace even this user's
    // entries, the private subfolder included.
    throw new ConfigError(
      `file store: refusing dir ${JSON.stringify(dir)}: it is world-writable without the sticky bit, so any user could replace its contents; use a folder of your own, or chmod +t it`,
    );
  }
  const own = join(dir, `satchel-sessions-${uid}`);
  const where = `the private folder ${JSON.stringify(own)} (dir ${JSON.stringify(dir)} is shared, so sessions are kept in a folder of this user's inside it)`;
  if (create) {
    try {
      mkdirSync(own, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  let stats: ReturnType<typeof lstatSync>;
  try {
    stats = lstatSync(own);
  } catch (err) {
    if (isNotFound(err)) throw new ConfigError(`file store: ${where} does not exist`);
    throw err;
  }
  if (!stats.isDirectory()) {
    throw new ConfigError(`file store: refusing ${where}: it is not a folder (a symlink or file)`);
  }
  if (stats.uid !== uid) {
    throw new ConfigError(
      `file store: refusing ${where}: it is owned by uid ${stats.uid}, not this process's uid ${uid}; remove it, or pass a dir of your own`,
    );
  }
  if ((stats.mode & 0o077) !== 0) {
    throw new ConfigError(
      `file store: refusing ${where}: its mode is 0${(stats.mode & 0o777).toString(8)}, wider than 0700; run chmod 700 on it, or remove it`,
    );
  }
  return own;
}

/**
 * Creates `dir` and missing parents, mode 0700 (or, with `create` false,
 * refuses a missing one). Not `mkdirSync` with `recursive: true`: on Node 20
 * that never returns for some paths, such as a folder under /proc.
 */
function ensureDir(dir: string, create: boolean): void {
  try {
    if (statSync(dir).isDirectory()) return;
    throw new Error('not a folder');
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  if (!create)
    throw new ConfigError(`file store: the folder ${JSON.stringify(dir)} does not exist`);
  const parent = dirname(dir);
  if (parent !== dir) ensureDir(parent, create);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    // Another process may have created it in between.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

/**
 * Runs `visit` on the name of every entry of `dir` that starts with `prefix`
 * and is not a folder, `limit` at a time. opendir streams the folder, so
 * memory stays flat however many files it holds.
 */
export async function eachFile(
  dir: string,
  prefix: string,
  limit: number,
  visit: (name: string) => Promise<void>,
): Promise<void> {
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
    if (inFlight.size >= limit) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (failed) throw failure;
}

/** Runs `fn` on every item, at most `limit` at once; rejects with the first failure. */
export async function eachLimited<T>(
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

export function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

export function ignoreNotFound(err: unknown): undefined {
  if (!isNotFound(err)) throw err;
  return undefined;
}
