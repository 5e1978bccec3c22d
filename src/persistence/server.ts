import { EXPIRY_KEY, ownerOf, replay, type SessionMap } from '../changes.js';
import type { DataCodec, DecodedId, IdCodec } from '../codec.js';
import { SessionInterruptedError, StoreUnavailableError } from '../errors.js';
import type { Events } from '../events.js';
import {
  computeExpiresAt,
  type ExpiryPolicy,
  expiresOnSave,
  isExpired,
  isSliding,
} from '../expiry.js';
import { storeKey } from '../ids.js';
import type { SessionLocks } from '../locks.js';
import type { SessionParts } from '../session.js';
import { type SessionStore, type StoredSession, type SyncAccess, syncAccess } from '../store.js';
import type { StoreCall, StoreCallNow } from './call.js';
import { type CommitOutcome, CommitQueue } from './commits.js';
import { ParsedCache } from './parsed.js';
import type { IncomingRequest, IncomingValue } from '../transports/types.js';
import type { Persistence } from './types.js';

export interface ServerPersistenceOptions {
  store: SessionStore;
  codec: DataCodec;
  ids: IdCodec;
  policy: ExpiryPolicy;
  events: Events;
  call: StoreCall;
  callNow: StoreCallNow;
  locks: SessionLocks;
  /** Milliseconds between touches of a session that was only read. */
  touchMs: number;
  maxRetries: number;
  retryTimeout: number;
  /** Notes an incoming value that was not a usable ID (for the signing-rollout log). */
  rejected(reason: 'malformed' | 'unsigned' | 'signed'): void;
  /** Tries the legacy importers for a request without a live session. */
  importLegacy?(parts: SessionParts, cookieHeader: string | undefined): Promise<void>;
}

/**
 * Sessions kept on the server under a random ID: the cookie carries the ID,
 * the store keeps the record under its hash. Saves are compare-and-set
 * (`commits.ts`); cycleKey creates the new record before deleting the old.
 */
export class ServerPersistence implements Persistence {
  readonly store: SessionStore;
  readonly keepsRecords = true;
  readonly #o: ServerPersistenceOptions;
  readonly #commits: CommitQueue;
  readonly #parsed: ParsedCache;

  constructor(options: ServerPersistenceOptions) {
    this.#o = options;
    this.store = options.store;
    this.#parsed = new ParsedCache(options.codec.serializer);
    this.#commits = new CommitQueue({ ...options, parsed: this.#parsed });
  }

  /** Takes a live, readable record into the session; corrupt data is logged and read as a new session. */
  #adopt(parts: SessionParts, key: string, record: StoredSession): boolean {
    if (isExpired(this.#o.policy, record, Date.now())) return false;
    const data = this.#parsed.read(key, record.data) ?? this.#parse(key, record);
    if (!data) {
      parts.identity.corrupt = true;
      return false;
    }
    parts.changes.data = data;
    parts.flash.adopt(data);
    return true;
  }

  /** Parses a record this process has not seen as it is now, and keeps the result for the next load. */
  #parse(key: string, record: StoredSession): SessionMap | undefined {
    const data = this.#o.codec.parse(record);
    if (data) this.#parsed.keep(key, this.#parsed.snapshot(record.data, data), record);
    return data;
  }

  async #lookUp(parts: SessionParts, id: string, lock: boolean): Promise<void> {
    const { store, call, locks } = this.#o;
    const key = storeKey(id);
    // Looked up before any lock is taken: a forged ID costs one read, never a lock write.
    let record = await call('get', () => store.get(key));
    if (!record) return;
    if (lock) {
      parts.identity.lock = await locks.acquire(key);
      // Whoever held the lock may have changed or ended the session meanwhile.
      record = await call('get', () => store.get(key));
      if (!record) return;
    }
    return this.#take(parts, id, key, record);
  }

  /** `#lookUp` through the store's synchronous `get`: undefined when nothing is left to wait for. */
  #lookUpNow(parts: SessionParts, id: string, sync: SyncAccess): Promise<void> | undefined {
    const key = storeKey(id);
    const record = this.#o.callNow('get', () => sync.get(key));
    return record && this.#take(parts, id, key, record);
  }

  /** Adopts the record found; one past its absolute timeout, or unreadable, goes now rather than at its expiry. */
  #take(
    parts: SessionParts,
    id: string,
    key: string,
    record: StoredSession,
  ): Promise<void> | undefined {
    if (this.#adopt(parts, key, record)) parts.identity.adopt(id, key, record);
    else if (record.expiresAt > Date.now()) return this.#discard(parts, key);
  }

  async #discard(parts: SessionParts, key: string): Promise<void> {
    const { store, call, events } = this.#o;
    this.#parsed.forget(key);
    await call('destroy', () => store.destroy(key));
    if (parts.identity.corrupt)
      events.emit('destroyed', () => ({ handle: key, reason: 'corrupt' }));
    else events.emit('expired', () => ({ handle: key, via: 'load' }));
  }

  async #create(parts: SessionParts, data: SessionMap, announce = true): Promise<void> {
    const { store, codec, ids, policy, events, call } = this.#o;
    const { identity, changes } = parts;
    const now = Date.now();
    const text = codec.serialize(data);
    const snapshot = this.#parsed.snapshot(text, data);
    for (let attempt = 0; ; attempt++) {
      if (identity.id === undefined || identity.key === undefined || attempt > 0) {
        identity.assign(ids.issue());
      }
      const key = identity.key!;
      const record: StoredSession = {
        data: text,
        version: 1,
        createdAt: now,
        expiresAt: computeExpiresAt(policy, data.get(EXPIRY_KEY), now, now),
        ...ownerOf(data),
      };
      // false only if 256 random bits collided with a live session: draw again.
      if (await call('create', () => store.create(key, record))) {
        this.#parsed.keep(key, snapshot, record);
        identity.record = record;
        identity.outcome = 'set';
        changes.saved(data);
        if (announce) events.emit('created', () => ({ handle: key, owner: record.owner }));
        return;
      }
      if (attempt >= 2) {
        throw new StoreUnavailableError(store.name, 'create kept reporting an existing key');
      }
    }
  }

  /** flush() or cycleKey(): the old record goes; after a cycle its newest data moves to the new ID first. */
  async #retire(parts: SessionParts, keepData: boolean): Promise<void> {
    const { store, codec, events, call } = this.#o;
    const { identity, changes } = parts;
    const oldKey = identity.retired!;
    if (identity.cycled && keepData && identity.record) {
      const latest = await call('get', () => store.get(oldKey));
      if (!latest) throw new SessionInterruptedError();
      const data = replay(codec.parse(latest) ?? new Map(), changes.ops, codec.clone);
      identity.record = undefined;
      if (data.size > 0) await this.#create(parts, data, false);
    } else if (identity.cycled) {
      identity.record = undefined;
    }
    // Created first, destroyed second: a failure in between never loses the session.
    this.#parsed.forget(oldKey);
    await call('destroy', () => store.destroy(oldKey));
    const record = identity.record;
    if (record) {
      const handle = identity.key!;
      events.emit('rotated', () => ({ oldHandle: oldKey, handle, owner: record.owner }));
    } else {
      events.emit('destroyed', () => ({ handle: oldKey, reason: 'flush' }));
      identity.outcome = 'delete';
    }
    identity.retiredHandled();
  }

  /** The session expired as it was saved: its record goes, and the cookie with it. */
  async #end(parts: SessionParts): Promise<void> {
    const { store, events, call } = this.#o;
    const { identity, changes } = parts;
    const key = identity.key;
    if (identity.record && key !== undefined) {
      this.#parsed.forget(key);
      await call('destroy', () => store.destroy(key));
      events.emit('expired', () => ({ handle: key, via: 'save' }));
    }
    identity.record = undefined;
    if (identity.hadIncomingId) identity.outcome = 'delete';
    changes.saved(changes.data);
  }

  /** A session that was only read: push its sliding expiry back, at most once per touch interval. */
  #touch(parts: SessionParts, record: StoredSession): Promise<void> | undefined {
    const { policy, touchMs } = this.#o;
    const setting = parts.changes.data.get(EXPIRY_KEY);
    if (!isSliding(setting)) return;
    const next = computeExpiresAt(policy, setting, record.createdAt, Date.now());
    if (next - record.expiresAt >= touchMs) return this.#moveExpiry(parts, record, next);
  }

  async #moveExpiry(parts: SessionParts, record: StoredSession, next: number): Promise<void> {
    const { store, call } = this.#o;
    const { identity } = parts;
    await call('touch', () => store.touch(identity.key!, next));
    identity.record = { ...record, expiresAt: next };
    identity.outcome = 'set';
  }

  /**
   * Undefined when the session is open already: a store with synchronous
   * access (`SessionStore.sync`) and nothing else to wait for (no lock, no
   * record to discard, no legacy import) is opened with no await.
   */
  open(
    parts: SessionParts,
    request: IncomingRequest,
    incoming: IncomingValue,
    lock: boolean,
  ): Promise<void> | undefined {
    const decoded = incoming.raw === undefined ? undefined : this.#o.ids.decode(incoming.raw);
    if (decoded && 'rejected' in decoded) this.#o.rejected(decoded.rejected);
    else if (decoded) {
      const sync = lock ? undefined : syncAccess(this.#o.store);
      const looking = sync
        ? this.#lookUpNow(parts, decoded.id, sync)
        : this.#lookUp(parts, decoded.id, lock);
      if (!looking) return this.#opened(parts, request, incoming, decoded);
      // A lock taken for a session that turned out gone is released if the importers fail too.
      return looking
        .then(() => this.#opened(parts, request, incoming, decoded))
        .catch(async (err: unknown) => {
          await this.release(parts);
          throw err;
        });
    }
    return this.#o.importLegacy?.(parts, request.header('cookie'));
  }

  /** After the look-up: a live session keeps its ID; otherwise the legacy importers may find one. */
  #opened(
    parts: SessionParts,
    request: IncomingRequest,
    incoming: IncomingValue,
    decoded: DecodedId,
  ): Promise<void> | undefined {
    const { identity } = parts;
    if (!identity.record) return this.#o.importLegacy?.(parts, request.header('cookie'));
    identity.resign = decoded.resign;
    if (incoming.via === 'url') identity.urlId = decoded.id;
  }

  /** Undefined when saved already: see `open`; the common save is one synchronous compare-and-set. */
  save(parts: SessionParts): Promise<void> | undefined {
    const { identity, changes, flash } = parts;
    identity.retries = 0;
    if (identity.resign && identity.record) identity.outcome = 'set';
    identity.resign = false;
    const flashOp = flash.drain();
    if (flashOp) changes.write(flashOp);
    changes.recordNestedChanges();
    if (identity.retired === undefined) return this.#write(parts);
    return this.#retire(parts, true).then(() => this.#write(parts));
  }

  /** Writes what the request changed: the record ends, is created, touched, or compare-and-set. */
  #write(parts: SessionParts): Promise<void> | undefined {
    const { identity, changes } = parts;
    const now = Date.now();
    if (
      expiresOnSave(
        this.#o.policy,
        changes.data.get(EXPIRY_KEY),
        identity.record?.createdAt ?? now,
        now,
      )
    ) {
      return this.#end(parts);
    }
    const record = identity.record;
    if (!record) {
      if (changes.data.size > 0) {
        return this.#create(parts, changes.data).then(() => changes.saved(changes.data));
      }
      if (identity.hadIncomingId) identity.outcome = 'delete';
      changes.saved(changes.data);
      return;
    }
    if (changes.ops.length === 0) return this.#touch(parts, record);
    const outcome = this.#commits.commit(identity.key!, {
      base: record,
      data: changes.data,
      ops: changes.ops,
    });
    if (outcome instanceof Promise) return outcome.then((done) => this.#committed(parts, done));
    this.#committed(parts, outcome);
  }

  #committed(parts: SessionParts, outcome: CommitOutcome): void {
    const { identity, changes } = parts;
    identity.record = outcome.record;
    identity.retries = outcome.retries;
    identity.outcome = outcome.record ? 'set' : 'delete';
    if (typeof outcome.data === 'function') {
      changes.savedLazily(outcome.data, outcome.setting);
    } else changes.saved(outcome.data);
  }

  async saveDeletions(parts: SessionParts): Promise<void> {
    if (parts.identity.retired !== undefined) await this.#retire(parts, false);
  }

  outgoing(parts: SessionParts): string | undefined {
    const { id } = parts.identity;
    return id === undefined ? undefined : this.#o.ids.encode(id);
  }

  async release(parts: SessionParts): Promise<void> {
    const lock = parts.identity.lock;
    if (!lock) return;
    parts.identity.lock = undefined;
    await this.#o.locks.release(lock);
  }

  close(): Promise<void> {
    return this.store.close();
  }
}
