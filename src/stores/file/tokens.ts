import { randomBytes } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { fdClose, fdOpen, fdStat, fdWrite } from './fd.js';
import type { LockContent } from './format.js';

/** A token file: a regular file of this process's, open, that a lock file is a hard link to. */
export interface TokenFile {
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
export function tokenFiles(stem: string) {
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
        fd = await fdOpen(path, 'wx', 0o600);
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
        async write(held) {
          buffer.fill(0x20);
          const text = JSON.stringify(held);
          if (buffer.write(text, 'utf8') !== text.length) throw new Error('lock token too long');
          // Unknown until the write succeeds: a failed one retires the file.
          file.content = undefined;
          const written = await fdWrite(fd, buffer, 0, buffer.length, 0);
          if (written !== buffer.length) throw new Error('short write of a lock token');
          file.content = held;
        },
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
    /**
     * Removes a token file for good: a lock file may still link to it (one
     * released late may be left for the breakers), so it is never written again.
     */
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

/**
 * True when no name but its own links to the token file. This version never
 * leaves another on a pooled one; an older one sharing the folder could (its
 * breakers linked locks back), see tryLink.
 */
export async function soleName(file: TokenFile): Promise<boolean> {
  const stats = await fdStat(file.fd).catch(() => undefined);
  return stats?.nlink === 1;
}

/** Closes a token file and removes its name; it is never written again. */
async function retireNow(file: TokenFile): Promise<void> {
  await fdClose(file.fd).catch(() => {});
  await unlink(file.path).catch(() => {});
}
