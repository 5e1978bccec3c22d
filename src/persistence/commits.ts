import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXPIRY_KEY, type Op, ownerOf, replay, type SessionMap } from '../changes.js';
import type { DataCodec } from '../codec.js';
import { type ConflictMessage, channels } from '../diagnostics.js';
import { ConflictError, SatchelError, SessionInterruptedError } from '../errors.js';
import type { Events } from '../events.js';
import { computeExpiresAt, type ExpiryPolicy, savedExpiry } from '../expiry.js';
import type { SessionStore, StoredSession } from '../store.js';
import type { StoreCall } from './call.js';
import type { ParsedCache } from './parsed.js';

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
  /** Compare-and-set attempts before ConflictError. */
  maxRetries: number;
  /** Milliseconds of retrying before ConflictError. */
  retryTimeout: number;
  /** An idle expiry moves forward at most once per this many milliseconds. */
  touchMs: number;
  /** What this process last read or wrote, parsed (a copy instead of a parse). */
  parsed: ParsedCache;
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

  commit(key: string, request: CommitRequest): Promise<CommitOutcome> {
    const queue = this.#waiting.get(key);
    if (queue) return new Promise((resolve, reject) => queue.push({ request, resolve, reject }));
    this.#waiting.set(key, []);
    return this.#writeFirst(key, request);
  }

  /** The commit that found no queue writes at once; whatever queued behind it drains next. */
  async #writeFirst(key: string, request: CommitRequest): Promise<CommitOutcome> {
    try {
      return await this.#write(key, [request]);
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
        batch.map((w) => w.request),
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

  /** Writes the requests' changes as one compare-and-set, replaying them on newer data until it lands. */
  async #write(key: string, requests: CommitRequest[]): Promise<CommitOutcome> {
    const { store, codec, policy, events, call, maxRetries, retryTimeout, touchMs, parsed } =
      this.#o;
    const ops = requests.length === 1 ? requests[0]!.ops : requests.flatMap((r) => r.ops);
    let base = newestOf(this.#written.get(key), requests);
    let data =
      requests.length === 1 && base.version === requests[0]!.base.version
        ? requests[0]!.data
        : replay(this.#parse(key, base), ops, codec.clone);
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      if (data.size === 0) {
        // Emptied: the record goes, and the cookie with it.
        parsed.forget(key);
        await call('destroy', () => store.destroy(key));
        events.emit('destroyed', () => ({ handle: key, reason: 'emptied' }));
        return { data, record: undefined, retries: attempt - 1, setting: undefined };
      }
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
      const result = await call('update', () => store.update(key, record, base.version));
      if (result === 'ok') {
        this.#written.set(key, record);
        parsed.keep(key, snapshot);
        return { data, record, retries: attempt - 1, setting: data.get(EXPIRY_KEY) };
      }
      if (result === 'missing') throw new SessionInterruptedError();
      if (attempt >= maxRetries || Date.now() - started >= retryTimeout) {
        throw new ConflictError(attempt);
      }
      if (channels.conflict.hasSubscribers) {
        const message: ConflictMessage = { store: store.name, handle: key, attempt };
        channels.conflict.publish(message);
      }
      // Another process may be draining a queue of commits to this session:
      // back off with full jitter (up to 256 ms) so our turn comes between them.
      if (attempt > 1) await sleep(randomInt(1 + 2 ** Math.min(attempt + 1, 8)));
      const latest = await call('get', () => store.get(key));
      if (!latest) throw new SessionInterruptedError();
      base = latest;
      data = replay(this.#parse(key, latest), ops, codec.clone);
    }
  }

  /** A record's data, private to the caller: copied if this process knows its text, else parsed. */
  #parse(key: string, record: StoredSession): SessionMap {
    const { codec, parsed } = this.#o;
    return parsed.read(key, record.data) ?? codec.parse(record) ?? new Map();
  }
}

/** The newest record among what this process wrote and what the requests loaded. */
function newestOf(written: StoredSession | undefined, requests: CommitRequest[]): StoredSession {
  let newest = written;
  for (const { base } of requests) if (!newest || base.version > newest.version) newest = base;
  return newest!;
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
