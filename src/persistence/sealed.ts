import { EXPIRY_KEY, ownerOf } from '../changes.js';
import type { DataCodec } from '../codec.js';
import {
  computeExpiresAt,
  type ExpiryPolicy,
  expiresOnSave,
  isExpired,
  isSliding,
} from '../expiry.js';
import type { CookieStore, SessionStore } from '../store.js';
import type { Persistence } from './types.js';

export interface SealedPersistenceOptions {
  sealer: CookieStore;
  codec: DataCodec;
  policy: ExpiryPolicy;
  /** Milliseconds between re-sent cookies of a session that was only read. */
  touchMs: number;
}

/**
 * The cookie store (Django's signed_cookies, React Router's
 * createCookieSessionStorage): the whole record travels sealed in the cookie,
 * so a save is only a decision to send a new sealed cookie, or to delete it.
 * There is no ID, no compare-and-set and no server-side revocation: the last
 * response wins.
 */
export function sealedPersistence({
  sealer,
  codec,
  policy,
  touchMs,
}: SealedPersistenceOptions): Persistence {
  return {
    store: keepsNothing(sealer),
    keepsRecords: false,

    async open(parts, _request, incoming) {
      const now = Date.now();
      const record = incoming.raw === undefined ? undefined : sealer.unseal(incoming.raw, now);
      if (!record || isExpired(policy, record, now)) return;
      const data = codec.parse(record);
      if (!data) return;
      parts.changes.data = data;
      parts.flash.adopt(data);
      parts.identity.record = record;
    },

    async save(parts) {
      const { identity, changes, flash } = parts;
      const flashOp = flash.drain();
      if (flashOp) changes.write(flashOp);
      changes.recordNestedChanges();
      const now = Date.now();
      const renewed = identity.cycled || identity.retired !== undefined;
      identity.retiredHandled();
      const loaded = identity.record;
      const gone = expiresOnSave(
        policy,
        changes.data.get(EXPIRY_KEY),
        loaded?.createdAt ?? now,
        now,
      );
      if (changes.data.size === 0 || gone) {
        if (loaded || identity.hadIncomingId) identity.outcome = 'delete';
        identity.record = undefined;
      } else {
        const setting = changes.data.get(EXPIRY_KEY);
        const createdAt = loaded && !renewed ? loaded.createdAt : now;
        const expiresAt = computeExpiresAt(policy, setting, createdAt, now);
        const stale = loaded && isSliding(setting) && expiresAt - loaded.expiresAt >= touchMs;
        if (!loaded || renewed || changes.ops.length > 0 || stale) {
          identity.record = {
            data: codec.serialize(changes.data),
            version: (loaded?.version ?? 0) + 1,
            createdAt,
            expiresAt,
            ...ownerOf(changes.data),
          };
          identity.outcome = 'set';
        }
      }
      changes.saved(changes.data);
    },

    async saveDeletions(parts) {
      // A logout deletes the cookie whatever the status; there is no record to delete.
      const { identity } = parts;
      if (identity.flushed && identity.hadIncomingId) identity.outcome = 'delete';
    },

    outgoing(parts) {
      const record = parts.identity.record;
      return record ? sealer.seal(record) : undefined;
    },

    async release() {},

    close: () => sealer.close(),
  };
}

/**
 * What `sessions.store` is for the cookie store: nothing lives on the server,
 * so there is nothing to clear; the manager never calls the record methods.
 */
function keepsNothing(sealer: CookieStore): SessionStore {
  const never = async (): Promise<never> => {
    throw new Error('[satchel] [cookie] the cookie store keeps no server-side records');
  };
  return {
    name: sealer.name,
    get: never,
    create: never,
    update: never,
    touch: never,
    destroy: never,
    clearExpired: async () => 0,
    close: () => sealer.close(),
  };
}
