import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXPIRY_KEY, type Op, ownerOf, replay, type SessionMap } from '../changes.js';
import type { DataCodec } from '../codec.js';
import { type ConflictMessage, channels } from '../diagnostics.js';
import { ConflictError, SatchelError, SessionInterruptedError } from '../errors.js';
import type { Events } from '../events.js';
import { computeExpiresAt, type ExpiryPolicy, savedExpiry } from '../expiry.js';
import { type SessionStore, type StoredSession, type SyncAccess, syncAccess } from '../store.js';
import type { StoreCall, StoreCallNow } from './call.js';
import type { Parsed, ParsedCache } from './parsed.js';

/** One request's changes to a stored session. */
export interface CommitRequest {
  /** The record the request loaded (or last saved). */
  base: StoredSession;
  /** The request's view of the data: `base` with `ops` applied. */
  data: SessionMap;
  ops: Op[];
}

export interface CommitOutcome {
  /**
   * The data as saved (this request's changes merged into the newest), or
   * empty when emptied; for the other sessions of a group, a function that
   * reads it back from the record when (and if) that session needs it.
   */
  data: SessionMap | (() => SessionMap);
  /** The record written; undefined when the session was emptied and deleted. */
  record: StoredSession | undefined;
  /** Compare-and-set retries it took. */
  retries: number;
  /** The saved data's per-session expiry setting. */
  setting: unknown;
}

export interface CommitOptions {
  store: SessionStore;
  codec: DataCodec;
  policy: ExpiryPolicy;
  events: Events;
  call: StoreCall;
  callNow: StoreCallNow;
  /** Compare-and-set attempts before ConflictError. */
  maxRetries: number;
  /** Milliseconds of retrying before ConflictError. */
  retryTimeout: number;
  /** An idle expiry moves forward at most once per this many milliseconds. */
  touchMs: number;
  /** What this process last read or wrote, parsed (a copy instead of a parse). */
  parsed: ParsedCache;
}

/** Where a write stands: what it writes over which record, at which attempt. */
interface WriteState {
  /** Every request's operations, in arrival order. */
  readonly ops: Op[];
  base: StoredSession;
  /** `base`'s data with `ops` applied. */
  data: SessionMap;
  attempt: number;
  readonly started: number;
  /** The last compare-and-set on `base` conflicted: the newest record is read before the next. */
  stale: boolean;
}

interface Waiter {
  request: CommitRequest;
  resolve(outcome: CommitOutcome): void;
  reject(err: unknown): void;
}

/**
 * Group commit: the commits of one session in this process form a queue,
 * and whatever has queued while a write was in flight goes out as ONE
 * compare-and-set, every request's changes replayed in arrival order. In one
 * process commits then never conflict with each other; across processes a
 * conflicting write means another request saved first: reload and re-apply
 * our changes (DESIGN.md, "Concurrency").
 */
export class CommitQueue {
  readonly #o: CommitOptions;
  readonly #waiting = new Map<string, Waiter[]>();
  /** The newest record this process wrote per key, while its queue is active. */
  readonly #written = new Map<string, StoredSession>();

  constructor(options: CommitOptions) {
    this.#o = options;
  }

  /** The outcome at once when the store answers synchronously (`SessionStore.sync`). */
  commit(key: string, request: CommitRequest): CommitOutcome | Promise<CommitOutcome> {
    const queue = this.#waiting.get(key);
    if (queue) return behind(queue, request);
    // No queue: nothing of this process's is in flight, but it may have saved since this load.
    const at = this.#start(key, [request], this.#o.parsed.record(key));
    const sync = syncAccess(this.#o.store);
    const outcome = sync && this.#writeNow(key, sync, at);
    if (outcome) return outcome;
    // A listener the attempt called (diagnostics, events) may have begun a write of this session.
    const begun = this.#waiting.get(key);
    if (begun) return behind(begun, request);
    this.#waiting.set(key, []);
    return this.#writeFirst(key, at);
  }

  /** The commit that found no queue writes at once; whatever queued behind it drains next. */
  async #writeFirst(key: string, at: WriteState): Promise<CommitOutcome> {
    try {
      return await this.#write(key, at);
    } finally {
      if (this.#waiting.get(key)!.length > 0) void this.#drain(key);
      else this.#idle(key);
    }
  }

  /** Nothing is queued for `key` any more. */
  #idle(key: string): void {
    this.#waiting.delete(key);
    this.#written.delete(key);
  }

  async #drain(key: string): Promise<void> {
    for (;;) {
      const batch = this.#waiting.get(key)!.splice(0);
      if (batch.length === 0) return this.#idle(key);
      await this.#writeBatch(key, batch);
    }
  }

  async #writeBatch(key: string, batch: Waiter[]): Promise<void> {
    let outcome: CommitOutcome;
    try {
      outcome = await this.#write(
        key,
        this.#start(
          key,
          batch.map((w) => w.request),
          this.#written.get(key),
        ),
      );
    } catch (err) {
      if (batch.length > 1 && !isSessionWide(err)) {
        // One request's changes cannot be saved (too large, an updater threw): each on its own.
        for (const waiter of batch) await this.#writeBatch(key, [waiter]);
      } else for (const waiter of batch) waiter.reject(err);
      return;
    }
    batch[0]!.resolve(outcome);
    const { record } = outcome;
    // Each other session gets its own copy of the saved data, read only if it is used again.
    const data = () => (record ? this.#parse(key, record) : new Map());
    for (const waiter of batch.slice(1)) waiter.resolve({ ...outcome, data });
  }

  /** Where a write of `requests` starts: the newest record known, with their changes on it. */
  #start(key: string, requests: CommitRequest[], known: StoredSession | undefined): WriteState {
    const ops = requests.length === 1 ? requests[0]!.ops : requests.flatMap((r) => r.ops);
    const base = newestOf(requests, known);
    const data =
      requests.length === 1 && base.version === requests[0]!.base.version
        ? requests[0]!.data
        : replay(this.#parse(key, base), ops, this.#o.codec.clone);
    return { ops, base, data, attempt: 1, started: Date.now(), stale: false };
  }

  /** Writes the requests' changes as one compare-and-set, replaying them on newer data until it lands. */
  async #write(key: string, at: WriteState): Promise<CommitOutcome> {
    const { store, events, call, parsed } = this.#o;
    for (;;) {
      if (at.stale) {
        // Another process may be draining a queue of commits to this session:
        // back off with full jitter (up to 256 ms) so our turn comes between them.
        if (at.attempt > 1) await sleep(randomInt(1 + 2 ** Math.min(at.attempt + 1, 8)));
        this.#rebase(key, at, await call('get', () => store.get(key)));
      }
      if (at.data.size === 0) {
        // Emptied: the record goes, and the cookie with it.
        parsed.forget(key);
        await call('destroy', () => store.destroy(key));
        events.emit('destroyed', () => ({ handle: key, reason: 'emptied' }));
        return { data: at.data, record: undefined, retries: at.attempt - 1, setting: undefined };
      }
      const { record, snapshot } = this.#next(at.base, at.data);
      const result = await call('update', () => store.update(key, record, at.base.version));
      if (result === 'ok') {
        this.#written.set(key, record);
        return this.#landed(key, at, record, snapshot);
      }
      this.#conflicted(key, at, result);
    }
  }

  /**
   * `#write` through the store's synchronous twins, with no queue (none can
   * form: nothing else runs meanwhile). A conflict with a save that came
   * between this request's load and commit is replayed at once; what needs
   * waiting for (a backoff after a second conflict, the delete of an emptied
   * session) is left to `#write`: undefined, and `at` says where it stands.
   */
  #writeNow(key: string, sync: SyncAccess, at: WriteState): CommitOutcome | undefined {
    const { callNow } = this.#o;
    for (;;) {
      if (at.stale) {
        if (at.attempt > 1) return undefined;
        this.#rebase(
          key,
          at,
          callNow('get', () => sync.get(key)),
        );
      }
      if (at.data.size === 0) return undefined;
      const { record, snapshot } = this.#next(at.base, at.data);
      const result = callNow('update', () => sync.update(key, record, at.base.version));
      if (result === 'ok') return this.#landed(key, at, record, snapshot);
      this.#conflicted(key, at, result);
    }
  }

  #landed(
    key: string,
    at: WriteState,
    record: StoredSession,
    snapshot: Parsed | undefined,
  ): CommitOutcome {
    this.#o.parsed.keep(key, snapshot, record);
    return { data: at.data, record, retries: at.attempt - 1, setting: at.data.get(EXPIRY_KEY) };
  }

  /** A compare-and-set that did not land: the write goes on from the newest record, or ends here. */
  #conflicted(key: string, at: WriteState, result: 'conflict' | 'missing'): void {
    const { store, maxRetries, retryTimeout } = this.#o;
    if (result === 'missing') throw new SessionInterruptedError();
    if (at.attempt >= maxRetries || Date.now() - at.started >= retryTimeout) {
      throw new ConflictError(at.attempt);
    }
    if (channels.conflict.hasSubscribers) {
      const message: ConflictMessage = { store: store.name, handle: key, attempt: at.attempt };
      channels.conflict.publish(message);
    }
    at.stale = true;
  }

  /** The newest record, with the requests' changes replayed on it, is what the next attempt writes. */
  #rebase(key: string, at: WriteState, latest: StoredSession | undefined): void {
    if (!latest) throw new SessionInterruptedError();
    at.base = latest;
    at.data = replay(this.#parse(key, latest), at.ops, this.#o.codec.clone);
    at.attempt++;
    at.stale = false;
  }

  /** The record that saves `data` over `base`, and the parsed copy to keep once it is written. */
  #next(
    base: StoredSession,
    data: SessionMap,
  ): { record: StoredSession; snapshot: Parsed | undefined } {
    const { codec, policy, touchMs, parsed } = this.#o;
    const text = codec.serialize(data);
    // Copied before the write is awaited: the handler may still change its values.
    const snapshot = parsed.snapshot(text, data);
    const record: StoredSession = {
      data: text,
      version: base.version + 1,
      createdAt: base.createdAt,
      expiresAt: savedExpiry(
        base.expiresAt,
        computeExpiresAt(policy, data.get(EXPIRY_KEY), base.createdAt, Date.now()),
        touchMs,
      ),
      ...ownerOf(data),
    };
    return { record, snapshot };
  }

  /** A record's data, private to the caller: copied if this process knows its text, else parsed. */
  #parse(key: string, record: StoredSession): SessionMap {
    const { codec, parsed } = this.#o;
    return parsed.read(key, record.data) ?? codec.parse(record) ?? new Map();
  }
}

/** A commit queued behind the write in flight: it settles when its batch is written. */
function behind(queue: Waiter[], request: CommitRequest): Promise<CommitOutcome> {
  return new Promise((resolve, reject) => queue.push({ request, resolve, reject }));
}

/** The newest record among what the requests loaded and what this process knows of since. */
function newestOf(requests: CommitRequest[], known: StoredSession | undefined): StoredSession {
  let newest = requests[0]!.base;
  for (const { base } of requests) if (base.version > newest.version) newest = base;
  return known && known.version > newest.version ? known : newest;
}

/** Errors about the session or the store, not about one request's changes. */
function isSessionWide(err: unknown): boolean {
  return (
    SatchelError.is(err) &&
    (err.code === 'ERR_SATCHEL_STORE_UNAVAILABLE' ||
      err.code === 'ERR_SATCHEL_CONFLICT' ||
      err.code === 'ERR_SATCHEL_SESSION_INTERRUPTED')
  );
}
