import { type ChangeLog, DEVICE_KEY, EXPIRY_KEY, OWNER_KEY, RESERVED_PREFIX } from './changes.js';
import { computeExpiresAt, type ExpiryPolicy, expirySetting, isBrowserSession } from './expiry.js';
import type { Flash } from './flash.js';
import { guardHabits } from './habits.js';
import type { Identity, IssuedId } from './identity.js';
import type { Linker } from './transports/types.js';

/**
 * The shape of your session data, declared once for the whole app:
 *
 * ```ts
 * declare module 'satchel' {
 *   interface SessionData { cart: string[]; userId: string }
 * }
 * ```
 *
 * Left empty, every key is a `string` and every value `any`, as in Django and
 * express-session; declare the shape to have `get`, `set` and `update` checked.
 */
// biome-ignore lint/suspicious/noEmptyInterface: filled in by declaration merging
export interface SessionData {}

/** `D` itself once declared; any string key with `any` values while it is empty. */
export type Shape<D> = [keyof D] extends [never] ? Record<string, any> : D;
export type SessionKey<D> = keyof Shape<D> & string;

const TEST_COOKIE_KEY = `${RESERVED_PREFIX}testcookie`;
const TEST_COOKIE_VALUE = 'worked';

/** What an app chooses to record about the device a session belongs to, for "your devices" pages. */
export interface DeviceInfo {
  /** e.g. the User-Agent header. */
  userAgent?: string;
  /** The client IP, if the app chooses to keep it (personal data: your call). */
  ip?: string;
  /** Anything else, e.g. a label the user gave the device. */
  [key: string]: string | undefined;
}

/** What a session needs from the manager that made it; one per manager. */
export interface SessionRuntime {
  readonly policy: ExpiryPolicy;
  issueId(): IssuedId;
  /** Saves what the request changed (Session.save and the commit). */
  save(parts: SessionParts): Promise<void>;
}

/** @internal A session's parts, for the manager and the persistence. */
export interface SessionParts {
  readonly identity: Identity;
  readonly changes: ChangeLog;
  readonly flash: Flash;
  readonly runtime: SessionRuntime;
  /** Puts the session ID into links (URL transport, clients without cookies). */
  readonly links: Linker | undefined;
}

let partsOfSession!: (session: Session<any>) => SessionParts;

/** @internal The parts behind a session, for the manager. */
export function sessionParts(session: Session<any>): SessionParts {
  return partsOfSession(session);
}

/**
 * One visitor's session for one request: a dictionary-like API after Django's
 * SessionBase. It knows nothing of HTTP or stores; its change log records
 * what this request changed so the manager can save it without losing
 * anyone's update.
 */
export class Session<D extends object = SessionData> {
  readonly #p: SessionParts;

  static {
    partsOfSession = (session) => session.#p;
  }

  /** @internal Sessions are made by `createSessions().load()`, not by hand. */
  constructor(parts: SessionParts) {
    this.#p = parts;
  }

  /** The value at `key`, or `fallback` (not stored) when there is none. */
  get<K extends SessionKey<D>>(key: K): Shape<D>[K] | undefined;
  get<K extends SessionKey<D>>(key: K, fallback: Shape<D>[K]): Shape<D>[K];
  get(key: string, fallback?: unknown): unknown {
    const value = this.#p.changes.read(key);
    return value === undefined ? fallback : value;
  }

  /** Stores `value` at `key`. Last writer wins for this key only; other keys are never overwritten. */
  set<K extends SessionKey<D>>(key: K, value: Shape<D>[K]): this {
    this.#p.changes.write({ t: 'set', k: key, v: value });
    return this;
  }

  has(key: SessionKey<D>): boolean {
    return this.#p.changes.has(key);
  }

  /** Removes `key`; true when it was there. */
  delete(key: SessionKey<D>): boolean {
    const had = this.has(key);
    this.#p.changes.write({ t: 'delete', k: key });
    return had;
  }

  /** Removes `key` and returns what it held, or `fallback`. */
  pop<K extends SessionKey<D>>(key: K): Shape<D>[K] | undefined;
  pop<K extends SessionKey<D>>(key: K, fallback: Shape<D>[K]): Shape<D>[K];
  pop(key: string, fallback?: unknown): unknown {
    const changes = this.#p.changes;
    const had = changes.data.has(key);
    const value = changes.read(key);
    if (had) changes.write({ t: 'delete', k: key });
    return had ? value : fallback;
  }

  /** The value at `key`; when absent, stores `fallback` there and returns it. */
  setDefault<K extends SessionKey<D>>(key: K, fallback: Shape<D>[K]): Shape<D>[K] {
    if (this.has(key)) return this.#p.changes.read(key) as Shape<D>[K];
    this.set(key, fallback);
    return fallback;
  }

  /**
   * A read-modify-write that is never lost under concurrency: `fn` gets the
   * current value (undefined when absent) and returns the new one. If another
   * request saved first, `fn` runs again on the newest value at commit, so it
   * must be pure. Returns the value as this request sees it now.
   */
  update<K extends SessionKey<D>>(
    key: K,
    fn: (current: Shape<D>[K] | undefined) => Shape<D>[K],
  ): Shape<D>[K] {
    const changes = this.#p.changes;
    changes.write({ t: 'update', k: key, fn });
    return changes.data.get(key) as Shape<D>[K];
  }

  /** Removes every key (flash values and expiry included); the ID stays. */
  clear(): void {
    this.#p.changes.write({ t: 'clear' });
  }

  keys(): SessionKey<D>[] {
    const changes = this.#p.changes;
    changes.accessed = true;
    return [...changes.data.keys()].filter(
      (k) => !k.startsWith(RESERVED_PREFIX),
    ) as SessionKey<D>[];
  }

  values(): Shape<D>[SessionKey<D>][] {
    return this.keys().map((k) => this.#p.changes.read(k)) as Shape<D>[SessionKey<D>][];
  }

  entries(): [SessionKey<D>, Shape<D>[SessionKey<D>]][] {
    return this.keys().map((k) => [k, this.#p.changes.read(k)]) as [
      SessionKey<D>,
      Shape<D>[SessionKey<D>],
    ][];
  }

  /** True when nothing is stored: no keys, no pending flash values. */
  isEmpty(): boolean {
    const changes = this.#p.changes;
    changes.accessed = true;
    return changes.data.size === 0 && !this.#p.flash.pending;
  }

  /**
   * Ties the session to a user (typically at login, with `cycleKey()`), so
   * `sessions.listByOwner(userId)` finds it and `revokeAllForOwner` ends it.
   * `device` is shown in those listings. `null` unties it.
   */
  setOwner(owner: string | null, device?: DeviceInfo): void {
    if (owner !== null && (typeof owner !== 'string' || owner.length === 0 || owner.length > 256)) {
      throw new TypeError('setOwner: owner must be a non-empty string of at most 256 characters');
    }
    const changes = this.#p.changes;
    if (owner === null) {
      changes.write({ t: 'delete', k: OWNER_KEY });
      changes.write({ t: 'delete', k: DEVICE_KEY });
      return;
    }
    changes.write({ t: 'set', k: OWNER_KEY, v: owner });
    if (device !== undefined) changes.write({ t: 'set', k: DEVICE_KEY, v: { ...device } });
  }

  /** The user this session belongs to (setOwner), if any. */
  get owner(): string | undefined {
    const owner = this.#p.changes.data.get(OWNER_KEY);
    return typeof owner === 'string' ? owner : undefined;
  }

  /**
   * An opaque handle naming this session in `listByOwner` results and for
   * `revoke` — not the session ID, and useless as a credential. Undefined
   * until the session is stored.
   */
  get handle(): string | undefined {
    const identity = this.#p.identity;
    return identity.record ? identity.key : undefined;
  }

  /** The session ID cookie would carry, or undefined for a new session nothing was stored in yet. */
  get id(): string | undefined {
    return this.#p.identity.id;
  }

  /** True when this request changed the data (nested changes to handed-out values included). */
  get modified(): boolean {
    const { changes, identity, flash } = this.#p;
    return (
      changes.ops.length > 0 ||
      identity.retired !== undefined ||
      flash.pending ||
      changes.hasNestedChanges()
    );
  }

  /** True when this request read or wrote the session; such responses carry `Vary: Cookie`. */
  get accessed(): boolean {
    return this.#p.changes.accessed;
  }

  /** True when the session was loaded from the store (not new in this request). */
  get isNew(): boolean {
    return this.#p.identity.record === undefined;
  }

  /** Deletes the data and the stored record and drops the ID (logout). A new ID is issued if data is set again. */
  flush(): void {
    this.#p.changes.reset();
    this.#p.flash.reset();
    this.#p.identity.flush();
  }

  /**
   * Keeps the data under a new ID and deletes the old record. Call it when
   * privileges change (login) so a planted ID is worth nothing (fixation).
   */
  cycleKey(): void {
    this.#p.changes.accessed = true;
    this.#p.identity.cycle(this.#p.runtime.issueId());
  }

  /**
   * Django's set_expiry: a number of seconds of inactivity, a `Date` to expire
   * at, `0` to expire when the browser closes, or `null` for the global policy.
   * The absolute timeout, when configured, still holds.
   */
  setExpiry(value: number | Date | null): void {
    const changes = this.#p.changes;
    if (value !== null) changes.write({ t: 'set', k: EXPIRY_KEY, v: expirySetting(value) });
    else if (changes.data.has(EXPIRY_KEY)) changes.write({ t: 'delete', k: EXPIRY_KEY });
    else changes.accessed = true;
  }

  /** Seconds until the session expires if saved now (Django's get_expiry_age). */
  get expiryAge(): number {
    return Math.max(0, Math.round((this.expiresAt.getTime() - Date.now()) / 1000));
  }

  /** When the session expires if saved now, the absolute timeout included (Django's get_expiry_date). */
  get expiresAt(): Date {
    const { changes, identity, runtime } = this.#p;
    const now = Date.now();
    const setting = changes.data.get(EXPIRY_KEY);
    return new Date(
      computeExpiresAt(runtime.policy, setting, identity.record?.createdAt ?? now, now),
    );
  }

  /** True when the cookie lasts until the browser closes (Django's get_expire_at_browser_close). */
  get expireAtBrowserClose(): boolean {
    return isBrowserSession(this.#p.runtime.policy, this.#p.changes.data.get(EXPIRY_KEY));
  }

  /** Django's test cookie trio: call set, then on a later request check it worked. */
  setTestCookie(): void {
    this.#p.changes.write({ t: 'set', k: TEST_COOKIE_KEY, v: TEST_COOKIE_VALUE });
  }

  testCookieWorked(): boolean {
    return this.#p.changes.read(TEST_COOKIE_KEY) === TEST_COOKIE_VALUE;
  }

  deleteTestCookie(): void {
    this.#p.changes.write({ t: 'delete', k: TEST_COOKIE_KEY });
  }

  /**
   * Stores a value for the next request that reads it (getFlash or flashes);
   * it is removed once read, so a request that never looks (an image, an API
   * call racing the page) does not swallow it.
   */
  flash(key: string, value: unknown): void {
    this.#p.changes.accessed = true;
    this.#p.flash.set(key, value);
  }

  /** Makes a flash value readable during this request only. */
  flashNow(key: string, value: unknown): void {
    this.#p.changes.accessed = true;
    this.#p.flash.setNow(key, value);
  }

  /** The flash value set by an earlier request (or by flashNow); reading it removes it at the end of this request. */
  getFlash<T = unknown>(key: string): T | undefined {
    this.#p.changes.accessed = true;
    return this.#p.flash.get(key) as T | undefined;
  }

  /** Every flash value readable in this request, e.g. to render messages. */
  flashes(): Record<string, unknown> {
    this.#p.changes.accessed = true;
    return this.#p.flash.all();
  }

  /** Keeps an incoming flash value (or, with no key, all of them) after it was read here, for one more read. */
  keepFlash(key?: string): void {
    this.#p.changes.accessed = true;
    this.#p.flash.keep(key);
  }

  /** Keeps every incoming flash value for one more read (Rails' flash.keep). */
  reflash(): void {
    this.keepFlash();
  }

  /**
   * The URL with the session ID added, for links and form actions, when the
   * URL transport is on and this client sent no session cookie; otherwise the
   * URL unchanged (Java's encodeURL).
   */
  encodeUrl(url: string): string {
    return this.#p.links ? this.#p.links.encode(url) : url;
  }

  /**
   * Saves now instead of when the response is sent, e.g. to render the merged
   * result of `update` after another request saved first.
   */
  async save(): Promise<void> {
    // biome-ignore lint/complexity/noArguments: catches express-session's save(callback)
    if (arguments.length > 0) guardHabits.saveCallback();
    await this.#p.runtime.save(this.#p);
  }
}

guardHabits.install(Session.prototype);
