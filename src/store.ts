/**
 * The store contract. Stores persist opaque records under a key that is
 * already a hash of the session ID: they never see raw IDs, never parse
 * session data and never decide policy (expiry windows, retries, merging).
 */
export interface StoredSession {
  /** The serialized payload, opaque to the store. */
  data: string;
  /** Bumped by the manager on every successful write; compare-and-set compares it. */
  version: number;
  /** Milliseconds since the epoch; the record is gone for every reader after it. */
  expiresAt: number;
  /** Milliseconds since the epoch when the session was first saved. */
  createdAt: number;
  /** Optional owner (user id), for listing and revoking a user's sessions. */
  owner?: string;
}

export type UpdateResult = 'ok' | 'conflict' | 'missing';

export interface SessionStore {
  /** Short name used in errors and logs: `[satchel] [sqlite] …`. */
  readonly name: string;
  /**
   * Optional: `get` and `update` answered synchronously, for a store whose
   * records are at hand (this process's memory, an embedded database with a
   * synchronous driver). The manager then loads and saves a session without
   * an await per store call (bench/RESULTS.md, run 8).
   * It calls them only while `get` and `update` are the forwarders
   * `forwardingTo(sync)` made, so a wrapper that replaces either (to count,
   * delay or fail calls) is never bypassed.
   */
  readonly sync?: SyncAccess;
  /** The record, or undefined when absent or expired. Never creates anything. */
  get(key: string): Promise<StoredSession | undefined>;
  /** Inserts the record; false (and no change) when a live record already has this key. */
  create(key: string, record: StoredSession): Promise<boolean>;
  /**
   * Atomic compare-and-set: writes `record` (whose `version` is the new one)
   * only if the stored version equals `expectedVersion`. `missing` when there
   * is no live record, `conflict` when the version differs.
   */
  update(key: string, record: StoredSession, expectedVersion: number): Promise<UpdateResult>;
  /** Moves the expiry of a live record without changing its version; no-op when absent. */
  touch(key: string, expiresAt: number): Promise<void>;
  /** Removes the record; no-op when absent. */
  destroy(key: string): Promise<void>;
  /**
   * Removes records whose expiresAt <= now, in bounded batches; resolves to how many.
   * `onProgress`, when given, is called after each batch with the running count
   * (and the total to examine, when the store knows it cheaply).
   */
  clearExpired(now?: number, options?: ClearExpiredOptions): Promise<number>;
  /** Releases connections, handles and timers. */
  close(): Promise<void>;
  /**
   * Optional cross-process advisory lock with expiry, for `lock: true`.
   * Resolves true when `token` now holds the lock on `key`; false when another
   * holder has it. A lock is gone after `ttlMs` even if never released.
   */
  lock?(key: string, token: string, ttlMs: number): Promise<boolean>;
  /** Releases the lock if `token` holds it. */
  unlock?(key: string, token: string): Promise<void>;
  /**
   * Optional owner index: the live records whose `owner` is `owner`, with
   * their keys. The manager turns them into summaries (stores never parse
   * data), so this returns records rather than DESIGN.md's summaries.
   */
  listByOwner?(owner: string): Promise<OwnedRecord[]>;
  /** Optional: removes every record of `owner` except `exceptKey`; resolves to how many. */
  destroyByOwner?(owner: string, exceptKey?: string): Promise<number>;
  /**
   * Optional: how many live records there are at `now`. Only stores that can
   * answer without reading every record implement it (SQL, memory).
   */
  count?(now: number): Promise<number>;
}

/**
 * The synchronous twins of a store's `get` and `update`: each behaves exactly
 * as its asynchronous twin, except that a failure is thrown instead of
 * rejected. The conformance suite runs every case against both.
 */
export interface SyncAccess {
  get(key: string): StoredSession | undefined;
  update(key: string, record: StoredSession, expectedVersion: number): UpdateResult;
}

export interface ClearExpiredOptions {
  /** Called after each batch: `removed` so far, and `total` records to examine when known. */
  onProgress?(progress: { removed: number; total?: number }): void;
}

export interface OwnedRecord {
  key: string;
  record: StoredSession;
}

/**
 * A store that keeps the whole record in the cookie, sealed (encrypted and
 * authenticated), instead of on the server. The manager seals at commit and
 * unseals at load; there is no ID, no compare-and-set and no server-side
 * revocation.
 */
export interface CookieStore {
  readonly name: string;
  readonly kind: 'cookie';
  /** The cookie value carrying `record`, expiry included. */
  seal(record: StoredSession): string;
  /** The record, or undefined when the value is malformed, forged, sealed by an unknown key or expired at `now`. */
  unseal(value: string, now: number): StoredSession | undefined;
  close(): Promise<void>;
}

export function isCookieStore(store: SessionStore | CookieStore): store is CookieStore {
  return (store as CookieStore).kind === 'cookie';
}

const FORWARDS = Symbol('satchel.forwardsToSync');

type Forwarder = { [FORWARDS]?: SyncAccess };

/**
 * A store's `sync`, with `get` and `update` that answer through it (each
 * looks its twin up at every call), marked so the manager may call the twins
 * directly: spread these into a store that offers synchronous access.
 */
export function forwardingTo(
  sync: SyncAccess,
): Required<Pick<SessionStore, 'sync' | 'get' | 'update'>> {
  const get = async (key: string) => sync.get(key);
  const update = async (key: string, record: StoredSession, expectedVersion: number) =>
    sync.update(key, record, expectedVersion);
  (get as Forwarder)[FORWARDS] = sync;
  (update as Forwarder)[FORWARDS] = sync;
  return { sync, get, update };
}

/** The store's synchronous twins, if its `get` and `update` are still the forwarders to them. */
export function syncAccess(store: SessionStore): SyncAccess | undefined {
  const sync = store.sync;
  return sync !== undefined &&
    (store.get as Forwarder)[FORWARDS] === sync &&
    (store.update as Forwarder)[FORWARDS] === sync
    ? sync
    : undefined;
}
