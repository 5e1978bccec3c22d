import { EXPIRY_KEY } from '../changes.js';
import type { DataCodec } from '../codec.js';
import type { ResolvedCookieOptions } from '../cookies.js';
import { computeExpiresAt, type ExpiryPolicy, isExpired } from '../expiry.js';
import { storeKey } from '../ids.js';
import { readLegacySession } from '../import/run.js';
import type { LegacyImporter, LegacySession } from '../import/types.js';
import type { Logger } from '../options.js';
import type { SessionParts } from '../session.js';
import type { SessionStore, StoredSession } from '../store.js';
import type { StoreCall } from './call.js';

/** A session imported this long ago is still joined by requests that raced its import. */
const RACE_WINDOW_MS = 60_000;

export interface LegacyImportOptions {
  importers: readonly LegacyImporter[];
  store: SessionStore;
  codec: DataCodec;
  policy: ExpiryPolicy;
  call: StoreCall;
  cookie: ResolvedCookieOptions;
  logger: Logger;
}

/**
 * Moving to satchel without logging anyone out: a request with no live
 * satchel session but a legacy cookie an importer verifies (express-session,
 * Django) gets the legacy data as a new satchel session. Its ID is derived
 * from the legacy one (`idSeed`), so concurrent first requests, in any
 * process, meet in one satchel session: the first `create` wins and the
 * others load what it stored.
 */
export function legacyImport(o: LegacyImportOptions) {
  const { store, call } = o;
  const recentlyImported = async (idSeed: string): Promise<boolean> => {
    const record = await call('get', () => store.get(storeKey(idSeed)));
    return record !== undefined && record.createdAt > Date.now() - RACE_WINDOW_MS;
  };

  async function stored(legacy: LegacySession, key: string): Promise<StoredSession | undefined> {
    if (!legacy.alreadyImported) {
      const data = new Map(Object.entries(legacy.data));
      const now = Date.now();
      const ours = computeExpiresAt(o.policy, data.get(EXPIRY_KEY), now, now);
      const record: StoredSession = {
        data: o.codec.serialize(data),
        version: 1,
        createdAt: now,
        expiresAt: Math.min(ours, legacy.expiresAt ?? ours),
      };
      if (await call('create', () => store.create(key, record))) return record;
    }
    // Another request imported it first: join that session.
    return call('get', () => store.get(key));
  }

  return async (parts: SessionParts, cookieHeader: string | undefined): Promise<void> => {
    const legacy = await readLegacySession(o.importers, cookieHeader, Date.now(), {
      ownCookie: o.cookie,
      recentlyImported,
    });
    if (!legacy) return;
    const key = storeKey(legacy.idSeed);
    const record = await stored(legacy, key);
    if (!record || isExpired(o.policy, record, Date.now())) return;
    const data = o.codec.parse(record);
    if (!data) return;
    const { identity, changes, flash } = parts;
    changes.data = data;
    flash.adopt(data);
    identity.adopt(legacy.idSeed, key, record);
    identity.outcome = 'set';
    identity.legacyCookies = legacy.clearCookies;
    try {
      await legacy.finish();
    } catch (err) {
      // The satchel session is stored; the legacy record goes at its own expiry instead.
      o.logger.warn(
        `[satchel] [import] ${legacy.importer}: the legacy record could not be removed`,
        {
          error: err instanceof Error ? err.message : String(err),
        },
      );
    }
  };
}
