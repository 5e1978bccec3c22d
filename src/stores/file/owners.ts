import { createHash } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { OwnedRecord, StoredSession } from '../../store.js';
import { encodeIndex, KEY, parseIndex } from './format.js';
import { eachLimited, ignoreNotFound, readHeader, readText, type Trust } from './fs.js';

/** How many parsed owner indexes a store keeps for reuse. */
const PARSED_INDEXES = 16;

/** What the owner index needs from the store around it. */
export interface OwnerIndexContext {
  dir: string;
  prefix: string;
  trust: Trust;
  /** How many files are handled at once. */
  concurrency: number;
  base(key: string): string;
  withKey<T>(key: string, fn: () => Promise<T>): Promise<T>;
  readRecord(key: string): Promise<StoredSession | undefined>;
  readLive(key: string): Promise<StoredSession | undefined>;
  writeAtomic(target: string, content: string, syncFolder?: boolean): Promise<void>;
  eachFile(visit: (name: string) => Promise<void>): Promise<void>;
}

export interface OwnerIndex {
  /** The lock name (and, under `base`, the file name) of `owner`'s index. */
  ownerId(owner: string): string;
  /** Adds `key` to `owner`'s index; the caller holds `key`'s lock. */
  add(owner: string, key: string): Promise<void>;
  /** Removes `key` from `owner`'s index; the caller holds `key`'s lock. */
  remove(owner: string, key: string): Promise<void>;
  /** The live sessions in `owner`'s index, in its order; prunes the lines that are not. */
  list(owner: string): Promise<OwnedRecord[]>;
  /** Prunes the index in file `name` of sessions that are gone or expired; leaves an unreadable one. */
  pruneFile(name: string, hash: string): Promise<void>;
}

/** Reading, rebuilding and rewriting one owner's index file. */
function indexFiles(ctx: OwnerIndexContext) {
  const { base } = ctx;
  const ownerId = (owner: string) =>
    `${createHash('sha256').update(owner).digest('base64url')}.owner`;

  // The last parse of recently read indexes, reused while the file's text is
  // unchanged: an owner with thousands of sessions is read on every write.
  const parsedIndexes = new Map<string, { text: string; keys: ReadonlySet<string> }>();

  /** The keys in `owner`'s index: empty when it has none, undefined when it cannot be parsed. */
  const readIndex = async (owner: string): Promise<ReadonlySet<string> | undefined> => {
    const id = ownerId(owner);
    const text = await readText(base(id), ctx.trust);
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
    await ctx.eachFile(async (name) => {
      const key = name.slice(ctx.prefix.length);
      if (!KEY.test(key)) return;
      const header = await readHeader(join(ctx.dir, name), ctx.trust);
      if (header === undefined || header.expiresAt <= now) return;
      const record = await ctx.readRecord(key);
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
      await ctx.writeAtomic(path, encodeIndex(owner, keys), false);
    } else {
      await unlink(path).catch(ignoreNotFound);
    }
  };

  return { ownerId, readIndex, scanOwned, applyIndex };
}

/**
 * Each owner has an index file, `<prefix><hash>.owner`, where `<hash>` is the
 * SHA-256 of the owner in base64url: a first line `satchel-owner1 <owner as
 * JSON>`, then the keys of the owner's sessions, one a line. The rules that
 * keep it from ever hiding a live session are in the file store's JSDoc.
 */
export function ownerIndex(ctx: OwnerIndexContext): OwnerIndex {
  const { withKey, concurrency } = ctx;
  const { ownerId, readIndex, scanOwned, applyIndex } = indexFiles(ctx);

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
  const add = async (owner: string, key: string): Promise<void> => {
    if ((await readIndex(owner))?.has(key)) return;
    await changeIndex(owner, key, true);
  };
  const remove = async (owner: string, key: string): Promise<void> => {
    if ((await readIndex(owner))?.has(key) === false) return;
    await changeIndex(owner, key, false);
  };

  /** Removes from `owner`'s index each of `keys` whose session is gone, expired or another's. */
  const prune = (owner: string, keys: string[]): Promise<void> =>
    eachLimited(keys, concurrency, (key) =>
      withKey(key, async () => {
        const record = await ctx.readLive(key);
        if (record?.owner !== owner) await remove(owner, key);
      }),
    );

  const list = async (owner: string): Promise<OwnedRecord[]> => {
    const now = Date.now();
    let keys = await readIndex(owner);
    if (keys === undefined) {
      // Unreadable: rebuilt (or deleted when the owner has nothing live).
      await withKey(ownerId(owner), () => applyIndex(owner, new Map()));
      keys = (await readIndex(owner)) ?? (await scanOwned(owner));
    }
    const listed = [...keys];
    const records = new Array<StoredSession | undefined>(listed.length);
    await eachLimited(listed, concurrency, async (key, i) => {
      records[i] = await ctx.readRecord(key);
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

  const pruneFile = async (name: string, hash: string): Promise<void> => {
    const text = await readText(join(ctx.dir, name), ctx.trust);
    const parsed = text === undefined ? undefined : parseIndex(text);
    if (parsed === undefined || ownerId(parsed.owner) !== `${hash}.owner`) return;
    const now = Date.now();
    const stale: string[] = [];
    await eachLimited([...parsed.keys], concurrency, async (key) => {
      const header = await readHeader(ctx.base(key), ctx.trust);
      if (header === undefined || header.expiresAt <= now) stale.push(key);
    });
    await prune(parsed.owner, stale);
  };

  return { ownerId, add, remove, list, pruneFile };
}
