import type { OwnedRecord } from '../../store.js';
import { type Context, EXPIRY_MARGIN_MS } from './context.js';
import { scripts } from './scripts.js';

/** Records read at once while listing an owner's sessions. */
const LIST_BATCH = 500;
/**
 * The owner index: two keys per owner (see the store's JSDoc), written by
 * separate scripts in an order that never hides a live session.
 */
export interface OwnerIndex {
  /** Indexes `key` under `owner` before a write that may leave it live until `expiresAt`. */
  own(
    owner: string,
    key: string,
    version: number | string,
    expiresAt: number,
    now: number,
  ): Promise<void>;
  /** Removes `key` from `owner`'s index, unless a write later than `version` indexed it. */
  disown(owner: string, key: string, version: number | string): Promise<void>;
  /** The live records `owner` holds; removes the index members that are not. */
  list(owner: string): Promise<OwnedRecord[]>;
}

export function ownerIndex(ctx: Context): OwnerIndex {
  const { call, ownerKeys } = ctx;
  const own: OwnerIndex['own'] = async (owner, key, version, expiresAt, now) => {
    // Already expired: nobody will list it, so there is nothing to index.
    if (!(expiresAt > now)) return;
    const ttl = Math.ceil(expiresAt - now) + EXPIRY_MARGIN_MS;
    await call(scripts.own, ownerKeys(owner), [
      key,
      String(version),
      String(expiresAt),
      String(ttl),
      String(now - EXPIRY_MARGIN_MS),
    ]);
  };
  const disown: OwnerIndex['disown'] = async (owner, key, version) => {
    await call(scripts.disown, ownerKeys(owner), [key, String(version)]);
  };
  const list: OwnerIndex['list'] = async (owner) => {
    const keys = ownerKeys(owner);
    const now = Date.now();
    const members = (await call(scripts.list, keys, [String(now - EXPIRY_MARGIN_MS)])) as string[];
    const out: OwnedRecord[] = [];
    for (let start = 0; start < members.length; start += LIST_BATCH) {
      const batch = members.slice(start, start + LIST_BATCH);
      // In a Cluster each record may sit in another slot: one read per key.
      const records = await Promise.all(batch.map(ctx.read));
      const cleanup: Promise<unknown>[] = [];
      batch.forEach((key, i) => {
        const record = records[i];
        if (record === undefined || !(record.expiresAt > now)) {
          // Gone or expired. Not by version: a create may have indexed the
          // key and not yet written it. Its latest indexed expiry says
          // whether it can still be live.
          cleanup.push(call(scripts.drop, keys, [key, String(now)]));
        } else if (record.owner !== owner) {
          cleanup.push(disown(owner, key, record.version));
        } else {
          out.push({ key, record });
        }
      });
      await Promise.all(cleanup);
    }
    return out;
  };
  return { own, disown, list };
}
