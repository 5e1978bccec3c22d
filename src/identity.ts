import type { StoredSession } from './store.js';

/** Shared by every request that imported nothing (most): no array per request. */
const NONE: readonly string[] = Object.freeze([]);

/** A fresh session ID and the key its record is stored under (a hash of it). */
export interface IssuedId {
  id: string;
  key: string;
}

/** A per-session lock held from load to commit (`lock: true`). */
export interface HeldLock {
  key: string;
  token: string;
  release(): void;
}

/**
 * Which session this request is about: the ID and store key, the record it
 * was loaded from (or last saved as), and what the response must do with the
 * cookie. The data itself is the change log's.
 */
export class Identity {
  id: string | undefined;
  key: string | undefined;
  /** The record as loaded or last saved; undefined for a session not stored yet. */
  record: StoredSession | undefined;
  /** Key of a stored record to delete at save (flush or cycleKey). */
  retired: string | undefined;
  /** cycleKey was called on a stored session: keep the data (newest, merged) under the new ID. */
  cycled = false;
  /** What the response must do with the cookie, decided at save. */
  outcome: 'set' | 'delete' | undefined;
  lock: HeldLock | undefined;
  /** The loaded record could not be read (and was deleted). */
  corrupt = false;
  /** An unsigned ID accepted during a signing rollout: the response re-sends it signed. */
  resign = false;
  /** Compare-and-set retries the latest save needed (for the `satchel:commit` channel). */
  retries = 0;
  /** Set-Cookie headers deleting a legacy session cookie that was just imported. */
  legacyCookies: readonly string[] = NONE;
  /** The ID that arrived in this request's URL, which is never written into a cookie. */
  urlId: string | undefined;

  constructor(
    /** The request carried a session ID (valid or not): a cookie may need deleting. */
    readonly hadIncomingId: boolean,
    /** The request came over HTTPS (for cookie.secure: 'auto'). */
    readonly secure: boolean,
  ) {}

  adopt(id: string | undefined, key: string | undefined, record: StoredSession): void {
    this.id = id;
    this.key = key;
    this.record = record;
  }

  assign(fresh: IssuedId): void {
    this.id = fresh.id;
    this.key = fresh.key;
  }

  /** cycleKey(): a new ID now; the stored record moves to it at save. */
  cycle(fresh: IssuedId): void {
    if (this.record !== undefined) {
      this.retired ??= this.key;
      this.cycled = true;
    }
    this.assign(fresh);
  }

  /** flush() was called in this request. */
  flushed = false;

  /** flush(): no ID and no record; the stored one is deleted at save. */
  flush(): void {
    this.flushed = true;
    if (this.record !== undefined) this.retired ??= this.key;
    this.cycled = false;
    this.id = undefined;
    this.key = undefined;
    this.record = undefined;
  }

  /** The retired record was dealt with at save. */
  retiredHandled(): void {
    this.retired = undefined;
    this.cycled = false;
  }
}
