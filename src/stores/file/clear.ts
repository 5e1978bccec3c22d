import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClearExpiredOptions } from '../../store.js';
import {
  APPLOCK_NAME,
  BREAK_NAME,
  decode,
  headerOf,
  KEY,
  LOCK_NAME,
  OWNER_NAME,
  parseLock,
  TMP_NAME,
} from './format.js';
import { ignoreNotFound, isNotFound, readHeader, readText, removeIfOld, type Trust } from './fs.js';
import type { FileLocks } from './locks.js';
import type { OwnerIndex } from './owners.js';

/** clearExpired reports progress after each this many files examined. */
const PROGRESS_EVERY = 256;
/** A temp file older than this belongs to a write that died. */
const TMP_MAX_AGE_MS = 60_000;

/** What clearing needs from the store. */
export interface ClearContext {
  dir: string;
  prefix: string;
  trust: Trust;
  base(key: string): string;
  locks: FileLocks;
  owners: OwnerIndex;
  eachFile(visit: (name: string) => Promise<void>): Promise<void>;
}

/**
 * Removes expired sessions, stale locks, break files of breakers that died
 * and temp files of writes that died, then prunes the owner indexes;
 * reports progress every PROGRESS_EVERY files.
 */
export async function clearExpired(
  ctx: ClearContext,
  now: number,
  options: ClearExpiredOptions | undefined,
): Promise<number> {
  const { locks, owners, prefix, dir, base } = ctx;
  const tmpCutoff = Date.now() - TMP_MAX_AGE_MS;
  let removed = 0;
  let examined = 0;

  const removeIfExpired = async (key: string): Promise<boolean> => {
    const path = base(key);
    const header = await readHeader(path, ctx.trust);
    if (header === undefined || header.expiresAt > now) return false;
    return locks.withKey(key, async () => {
      // Re-check: it may have been renewed since the unlocked read.
      const text = await readText(path, ctx.trust);
      const again = text === undefined ? undefined : headerOf(text);
      if (again === undefined || again.expiresAt > now) return false;
      try {
        await unlink(path);
      } catch (err) {
        if (isNotFound(err)) return false;
        throw err;
      }
      const owner = decode(text!)?.owner;
      if (owner !== undefined) await owners.remove(owner, key);
      return true;
    });
  };

  const removeAppLockIfExpired = (key: string): Promise<void> =>
    locks.withKey(key, async () => {
      const path = `${base(key)}.applock`;
      const content = await readText(path, ctx.trust);
      const held = content === undefined ? undefined : parseLock(content);
      if (content !== undefined && (held === undefined || held.expiresAt <= now)) {
        await unlink(path).catch(ignoreNotFound);
      }
    });

  await ctx.eachFile(async (name) => {
    const rest = name.slice(prefix.length);
    if (KEY.test(rest)) {
      if (await removeIfExpired(rest)) removed++;
    } else if (TMP_NAME.test(rest)) {
      await removeIfOld(join(dir, name), tmpCutoff);
    } else {
      const appLock = APPLOCK_NAME.exec(rest)?.[1];
      const lock = LOCK_NAME.exec(rest)?.[1];
      const breakOf = BREAK_NAME.exec(rest)?.[1];
      if (appLock !== undefined) await removeAppLockIfExpired(appLock);
      else if (lock !== undefined) await locks.breakIfStale(lock, join(dir, name));
      // Taken over as a breaker would, not removed if old: checking its age,
      // then unlinking it, could remove one another breaker just replaced.
      else if (breakOf !== undefined) await locks.clearDeadBreak(breakOf);
    }
    if (++examined % PROGRESS_EVERY === 0) options?.onProgress?.({ removed });
  });
  // Then the indexes, whose lines for the sessions removed above are
  // already gone: this finds what a crash or a hand left behind.
  await ctx.eachFile(async (name) => {
    const ownerHash = OWNER_NAME.exec(name.slice(prefix.length))?.[1];
    if (ownerHash !== undefined) await owners.pruneFile(name, ownerHash);
  });
  options?.onProgress?.({ removed });
  return removed;
}
