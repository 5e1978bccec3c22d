import type { StoredSession } from './store.js';

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

/** Keys satchel keeps in the data for itself; hidden from keys(), values() and entries(). */
export const RESERVED_PREFIX = '_satchel_';
export const FLASH_KEY = `${RESERVED_PREFIX}flash`;
export const EXPIRY_KEY = `${RESERVED_PREFIX}expiry`;
export const OWNER_KEY = `${RESERVED_PREFIX}owner`;
export const DEVICE_KEY = `${RESERVED_PREFIX}device`;
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

/** setExpiry's upper bound: 100 years keeps every expiry a valid, sendable date. */
const MAX_EXPIRY_SECONDS = 100 * 365 * 24 * 3600;

/** Per-session expiry as stored: seconds of inactivity, 0 for browser close, or a fixed time. */
export type ExpirySetting = number | { at: number };

/** One recorded change; replayed in order on the newest data after a conflict. */
export type Op =
  | { t: 'set'; k: string; v: unknown }
  | { t: 'delete'; k: string }
  | { t: 'update'; k: string; fn: (value: any) => unknown }
  | { t: 'clear' }
  | { t: 'flash'; remove: string[] | 'all'; add: Record<string, unknown> };

/** What the manager needs to answer expiry questions; resolved once from the options. */
export interface ExpiryPolicy {
  /** Seconds of inactivity before a session expires. */
  idleTimeout: number;
  /** Seconds from creation after which a session always expires; null for none. */
  absoluteTimeout: number | null;
  expireAtBrowserClose: boolean;
}

/** State shared with the manager; not part of the public API. */
export interface SessionState {
  id: string | undefined;
  key: string | undefined;
  record: StoredSession | undefined;
  data: Map<string, unknown>;
  ops: Op[];
  /** Values handed out by reference, with their serialized form at that moment. */
  handedOut: Map<string, { ref: object; text: string }>;
  accessed: boolean;
  /** Key of a record to delete at commit (flush or cycleKey). */
  oldKey: string | undefined;
  /** cycleKey was called: keep the data (newest, merged) under the new ID. */
  cycled: boolean;
  /** The request carried a session ID (valid or not): a cookie may need deleting. */
  hadIncomingId: boolean;
  flashIn: Record<string, unknown>;
  flashNow: Record<string, unknown>;
  flashOut: Record<string, unknown>;
  flashKeep: Set<string> | 'all';
  /** Incoming flash keys read in this request: they are removed at commit (read once). */
  flashRead: Set<string>;
  /** Incoming flash keys already removed by an earlier save() in this request. */
  flashConsumed: Set<string>;
  policy: ExpiryPolicy;
  clone: (value: unknown) => unknown;
  stringifyValue: (value: unknown) => string;
  persist: (() => Promise<void>) | undefined;
  /** A fresh random ID and its store key. */
  issueId: () => { id: string; key: string };
  /** What the response must do with the cookie, decided at commit. */
  cookie: 'set' | 'delete' | undefined;
  lock: { key: string; token: string; release: () => void } | undefined;
  /** The request came over HTTPS (for cookie.secure: 'auto'). */
  secure: boolean;
  /** The stored record could not be read (and was deleted). */
  corrupt: boolean;
  /** The ID arrived in the URL (URL transport). */
  fromUrl: boolean;
  /** encodeUrl put the ID into a link of this response. */
  urlEncoded: boolean;
  /** Set by the URL transport for clients that sent no session cookie. */
  encodeUrl: ((url: string) => string) | undefined;
}

let stateOf!: (session: Session<any>) => SessionState;

/** @internal The manager's access to a session's state. */
export function sessionState(session: Session<any>): SessionState {
  return stateOf(session);
}

function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null;
}

/**
 * One visitor's session for one request: a dictionary-like API after Django's
 * SessionBase. It knows nothing of HTTP or stores; it records what this
 * request changed so the manager can save it without losing anyone's update.
 */
export class Session<D extends object = SessionData> {
  readonly #s: SessionState;

  static {
    stateOf = (session) => session.#s;
  }

  /** @internal Sessions are made by `createSessions().load()`, not by hand. */
  constructor(state: SessionState) {
    this.#s = state;
  }

  #read(key: string): unknown {
    const s = this.#s;
    s.accessed = true;
    const value = s.data.get(key);
    if (isObject(value) && !s.handedOut.has(key)) {
      // Handed out by reference: a nested change (cart.push(x)) is found at commit.
      s.handedOut.set(key, { ref: value, text: s.stringifyValue(value) });
    }
    return value;
  }

  #write(op: Op): void {
    const s = this.#s;
    s.accessed = true;
    s.ops.push(op);
    applyOp(s.data, op, (v) => v);
  }

  /** The value at `key`, or `fallback` (not stored) when there is none. */
  get<K extends SessionKey<D>>(key: K): Shape<D>[K] | undefined;
  get<K extends SessionKey<D>>(key: K, fallback: Shape<D>[K]): Shape<D>[K];
  get(key: string, fallback?: unknown): unknown {
    const value = this.#read(key);
    return value === undefined ? fallback : value;
  }

  /** Stores `value` at `key`. Last writer wins for this key only; other keys are never overwritten. */
  set<K extends SessionKey<D>>(key: K, value: Shape<D>[K]): this {
    this.#write({ t: 'set', k: key, v: value });
    return this;
  }

  has(key: SessionKey<D>): boolean {
    this.#s.accessed = true;
    return this.#s.data.has(key);
  }

  /** Removes `key`; true when it was there. */
  delete(key: SessionKey<D>): boolean {
    const had = this.has(key);
    this.#write({ t: 'delete', k: key });
    return had;
  }

  /** Removes `key` and returns what it held, or `fallback`. */
  pop<K extends SessionKey<D>>(key: K): Shape<D>[K] | undefined;
  pop<K extends SessionKey<D>>(key: K, fallback: Shape<D>[K]): Shape<D>[K];
  pop(key: string, fallback?: unknown): unknown {
    const had = this.#s.data.has(key);
    const value = this.#read(key);
    if (had) this.#write({ t: 'delete', k: key });
    return had ? value : fallback;
  }

  /** The value at `key`; when absent, stores `fallback` there and returns it. */
  setDefault<K extends SessionKey<D>>(key: K, fallback: Shape<D>[K]): Shape<D>[K] {
    if (this.has(key)) return this.#read(key) as Shape<D>[K];
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
    const s = this.#s;
    s.accessed = true;
    const op: Op = { t: 'update', k: key, fn };
    s.ops.push(op);
    applyOp(s.data, op, s.clone);
    return s.data.get(key) as Shape<D>[K];
  }

  /** Removes every key (flash values and expiry included); the ID stays. */
  clear(): void {
    this.#write({ t: 'clear' });
  }

  keys(): SessionKey<D>[] {
    this.#s.accessed = true;
    return [...this.#s.data.keys()].filter(
      (k) => !k.startsWith(RESERVED_PREFIX),
    ) as SessionKey<D>[];
  }

  values(): Shape<D>[SessionKey<D>][] {
    return this.keys().map((k) => this.#read(k)) as Shape<D>[SessionKey<D>][];
  }

  entries(): [SessionKey<D>, Shape<D>[SessionKey<D>]][] {
    return this.keys().map((k) => [k, this.#read(k)]) as [SessionKey<D>, Shape<D>[SessionKey<D>]][];
  }

  /** True when nothing is stored: no keys, no pending flash values. */
  isEmpty(): boolean {
    const s = this.#s;
    s.accessed = true;
    return s.data.size === 0 && Object.keys(s.flashOut).length === 0;
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
    if (owner === null) {
      this.#write({ t: 'delete', k: OWNER_KEY });
      this.#write({ t: 'delete', k: DEVICE_KEY });
      return;
    }
    this.#write({ t: 'set', k: OWNER_KEY, v: owner });
    if (device !== undefined) this.#write({ t: 'set', k: DEVICE_KEY, v: { ...device } });
  }

  /** The user this session belongs to (setOwner), if any. */
  get owner(): string | undefined {
    const owner = this.#s.data.get(OWNER_KEY);
    return typeof owner === 'string' ? owner : undefined;
  }

  /**
   * An opaque handle naming this session in `listByOwner` results and for
   * `revoke` — not the session ID, and useless as a credential. Undefined
   * until the session is stored.
   */
  get handle(): string | undefined {
    return this.#s.record ? this.#s.key : undefined;
  }

  /** The session ID cookie would carry, or undefined for a new session nothing was stored in yet. */
  get id(): string | undefined {
    return this.#s.id;
  }

  /** True when this request changed the data (nested changes to handed-out values included). */
  get modified(): boolean {
    const s = this.#s;
    if (s.ops.length > 0 || s.oldKey !== undefined || Object.keys(s.flashOut).length > 0)
      return true;
    for (const [key, { ref, text }] of s.handedOut) {
      if (s.data.get(key) === ref && s.stringifyValue(ref) !== text) return true;
    }
    return false;
  }

  /** True when this request read or wrote the session; such responses carry `Vary: Cookie`. */
  get accessed(): boolean {
    return this.#s.accessed;
  }

  /** True when the session was loaded from the store (not new in this request). */
  get isNew(): boolean {
    return this.#s.record === undefined;
  }

  /** Deletes the data and the stored record and drops the ID (logout). A new ID is issued if data is set again. */
  flush(): void {
    const s = this.#s;
    s.accessed = true;
    if (s.record !== undefined) s.oldKey ??= s.key;
    s.data.clear();
    s.ops = [];
    s.handedOut.clear();
    s.cycled = false;
    s.id = undefined;
    s.key = undefined;
    s.record = undefined;
    s.flashIn = {};
    s.flashNow = {};
    s.flashOut = {};
    s.flashKeep = new Set();
    s.flashRead = new Set();
    s.flashConsumed = new Set();
  }

  /**
   * Keeps the data under a new ID and deletes the old record. Call it when
   * privileges change (login) so a planted ID is worth nothing (fixation).
   */
  cycleKey(): void {
    const s = this.#s;
    s.accessed = true;
    if (s.record !== undefined) {
      s.oldKey ??= s.key;
      s.cycled = true;
    }
    const { id, key } = s.issueId();
    s.id = id;
    s.key = key;
  }

  /**
   * Django's set_expiry: a number of seconds of inactivity, a `Date` to expire
   * at, `0` to expire when the browser closes, or `null` for the global policy.
   * The absolute timeout, when configured, still holds.
   */
  setExpiry(value: number | Date | null): void {
    if (value === null) {
      if (this.#s.data.has(EXPIRY_KEY)) this.#write({ t: 'delete', k: EXPIRY_KEY });
      else this.#s.accessed = true;
      return;
    }
    let setting: ExpirySetting;
    if (value instanceof Date) {
      if (
        Number.isNaN(value.getTime()) ||
        value.getTime() > Date.now() + MAX_EXPIRY_SECONDS * 1000
      ) {
        throw new TypeError('setExpiry: the Date must be valid and at most 100 years ahead');
      }
      setting = { at: value.getTime() };
    } else {
      if (!Number.isFinite(value) || value < 0 || value > MAX_EXPIRY_SECONDS) {
        throw new TypeError(
          `setExpiry: seconds must be a number from 0 to ${MAX_EXPIRY_SECONDS} (100 years); got ${value}`,
        );
      }
      setting = value;
    }
    this.#write({ t: 'set', k: EXPIRY_KEY, v: setting });
  }

  /** Seconds until the session expires if saved now (Django's get_expiry_age). */
  get expiryAge(): number {
    return Math.max(0, Math.round((this.expiresAt.getTime() - Date.now()) / 1000));
  }

  /** When the session expires if saved now, the absolute timeout included (Django's get_expiry_date). */
  get expiresAt(): Date {
    const s = this.#s;
    return new Date(
      computeExpiresAt(
        s.policy,
        s.data.get(EXPIRY_KEY),
        s.record?.createdAt ?? Date.now(),
        Date.now(),
      ),
    );
  }

  /** True when the cookie lasts until the browser closes (Django's get_expire_at_browser_close). */
  get expireAtBrowserClose(): boolean {
    return isBrowserSession(this.#s.policy, this.#s.data.get(EXPIRY_KEY));
  }

  /** Django's test cookie trio: call set, then on a later request check it worked. */
  setTestCookie(): void {
    this.#write({ t: 'set', k: TEST_COOKIE_KEY, v: TEST_COOKIE_VALUE });
  }

  testCookieWorked(): boolean {
    return this.#read(TEST_COOKIE_KEY) === TEST_COOKIE_VALUE;
  }

  deleteTestCookie(): void {
    this.#write({ t: 'delete', k: TEST_COOKIE_KEY });
  }

  /**
   * Stores a value for the next request that reads it (getFlash or flashes);
   * it is removed once read, so a request that never looks (an image, an API
   * call racing the page) does not swallow it.
   */
  flash(key: string, value: unknown): void {
    this.#s.accessed = true;
    this.#s.flashOut[key] = value;
  }

  /** Makes a flash value readable during this request only. */
  flashNow(key: string, value: unknown): void {
    this.#s.accessed = true;
    this.#s.flashNow[key] = value;
  }

  /** The flash value set by an earlier request (or by flashNow); reading it removes it at the end of this request. */
  getFlash<T = unknown>(key: string): T | undefined {
    const s = this.#s;
    s.accessed = true;
    if (Object.hasOwn(s.flashIn, key)) s.flashRead.add(key);
    return (Object.hasOwn(s.flashNow, key) ? s.flashNow[key] : s.flashIn[key]) as T | undefined;
  }

  /** Every flash value readable in this request, e.g. to render messages. */
  flashes(): Record<string, unknown> {
    this.#s.accessed = true;
    for (const key of Object.keys(this.#s.flashIn)) this.#s.flashRead.add(key);
    return { ...this.#s.flashIn, ...this.#s.flashNow };
  }

  /** Keeps an incoming flash value (or, with no key, all of them) after it was read here, for one more read. */
  keepFlash(key?: string): void {
    const s = this.#s;
    s.accessed = true;
    if (key === undefined) s.flashKeep = 'all';
    else if (s.flashKeep !== 'all') s.flashKeep.add(key);
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
    return this.#s.encodeUrl ? this.#s.encodeUrl(url) : url;
  }

  /**
   * Saves now instead of when the response is sent, e.g. to render the merged
   * result of `update` after another request saved first.
   */
  async save(): Promise<void> {
    await this.#s.persist?.();
  }
}

/** Applies one recorded change to a data map; `clone` isolates values an updater may mutate. */
export function applyOp(data: Map<string, unknown>, op: Op, clone: (v: unknown) => unknown): void {
  switch (op.t) {
    case 'set':
      if (op.v === undefined) data.delete(op.k);
      else data.set(op.k, op.v);
      return;
    case 'delete':
      data.delete(op.k);
      return;
    case 'update': {
      const next = op.fn(clone(data.get(op.k)));
      if (next === undefined) data.delete(op.k);
      else data.set(op.k, next);
      return;
    }
    case 'clear':
      data.clear();
      return;
    case 'flash': {
      const current = data.get(FLASH_KEY);
      const flashes: Record<string, unknown> =
        op.remove === 'all' || !isObject(current)
          ? {}
          : { ...(current as Record<string, unknown>) };
      if (op.remove !== 'all') for (const k of op.remove) delete flashes[k];
      Object.assign(flashes, op.add);
      if (Object.keys(flashes).length === 0) data.delete(FLASH_KEY);
      else data.set(FLASH_KEY, flashes);
      return;
    }
  }
}

export function isBrowserSession(policy: ExpiryPolicy, setting: unknown): boolean {
  if (setting === undefined || setting === null) return policy.expireAtBrowserClose;
  return setting === 0;
}

/** Server-side expiry for a save at `now`: per-session setting or idle timeout, capped by the absolute timeout. */
export function computeExpiresAt(
  policy: ExpiryPolicy,
  setting: unknown,
  createdAt: number,
  now: number,
): number {
  let at: number;
  if (typeof setting === 'number' && setting > 0) at = now + setting * 1000;
  else if (isObject(setting) && typeof (setting as { at: unknown }).at === 'number') {
    at = (setting as { at: number }).at;
  } else at = now + policy.idleTimeout * 1000;
  if (policy.absoluteTimeout !== null) at = Math.min(at, createdAt + policy.absoluteTimeout * 1000);
  return at;
}

/** True when the expiry slides with activity (idle timeout), so a touch can extend it. */
export function isSliding(setting: unknown): boolean {
  return !(isObject(setting) && 'at' in setting);
}
