import { EXPIRY_KEY, ownerOf, replay, type SessionMap } from '../changes.js';
import type { DataCodec, IdCodec } from '../codec.js';
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
import type { SessionStore, StoredSession } from '../store.js';
import type { StoreCall } from './call.js';
import { CommitQueue } from './commits.js';
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
    if (data) this.#parsed.keep(key, this.#parsed.snapshot(record.data, data));
    return data;
  }

  async #lookUp(parts: SessionParts, id: string, lock: boolean): Promise<void> {
    const { store, call, locks, events } = this.#o;
    const { identity } = parts;
    const key = storeKey(id);
    // Looked up before any lock is taken: a forged ID costs one read, never a lock write.
    let record = await call('get', () => store.get(key));
    if (!record) return;
    if (lock) {
      identity.lock = await locks.acquire(key);
      // Whoever held the lock may have changed or ended the session meanwhile.
      record = await call('get', () => store.get(key));
      if (!record) return;
    }
    if (this.#adopt(parts, key, record)) {
      identity.adopt(id, key, record);
    } else if (record.expiresAt > Date.now()) {
      // Past the absolute timeout, or unreadable: it goes now rather than at its expiry.
      this.#parsed.forget(key);
      await call('destroy', () => store.destroy(key));
      if (identity.corrupt) events.emit('destroyed', () => ({ handle: key, reason: 'corrupt' }));
      else events.emit('expired', () => ({ handle: key, via: 'load' }));
    }
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
        this.#parsed.keep(key, snapshot);
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
  async #touch(parts: SessionParts, record: StoredSession): Promise<void> {
    const { store, policy, call, touchMs } = this.#o;
    const { identity, changes } = parts;
    const setting = changes.data.get(EXPIRY_KEY);
    if (!isSliding(setting)) return;
    const next = computeExpiresAt(policy, setting, record.createdAt, Date.now());
    if (next - record.expiresAt < touchMs) return;
    await call('touch', () => store.touch(identity.key!, next));
    identity.record = { ...record, expiresAt: next };
    identity.outcome = 'set';
  }

  async open(
    parts: SessionParts,
    request: IncomingRequest,
    incoming: IncomingValue,
    lock: boolean,
  ): Promise<void> {
    const decoded = incoming.raw === undefined ? undefined : this.#o.ids.decode(incoming.raw);
    if (decoded && 'rejected' in decoded) this.#o.rejected(decoded.rejected);
    else if (decoded) {
      const { identity } = parts;
      try {
        await this.#lookUp(parts, decoded.id, lock);
      } catch (err) {
        await this.release(parts);
        throw err;
      }
      if (identity.record) {
        identity.resign = decoded.resign;
        if (incoming.via === 'url') identity.urlId = decoded.id;
        return;
      }
    }
    if (this.#o.importLegacy) await this.#o.importLegacy(parts, request.header('cookie'));
  }

  async save(parts: SessionParts): Promise<void> {
    const { identity, changes, flash } = parts;
    identity.retries = 0;
    if (identity.resign && identity.record) identity.outcome = 'set';
    identity.resign = false;
    const flashOp = flash.drain();
    if (flashOp) changes.write(flashOp);
    changes.recordNestedChanges();
    if (identity.retired !== undefined) await this.#retire(parts, true);
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
      if (changes.data.size > 0) await this.#create(parts, changes.data);
      else if (identity.hadIncomingId) identity.outcome = 'delete';
      changes.saved(changes.data);
      return;
    }
    if (changes.ops.length === 0) return this.#touch(parts, record);
    const outcome = await this.#commits.commit(identity.key!, {
      base: record,
      data: changes.data,
      ops: changes.ops,
    });
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
