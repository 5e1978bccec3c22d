import { randomBytes, randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type CookieOptions,
  deleteCookieHeader,
  type ResolvedCookieOptions,
  readCookie,
  resolveCookieOptions,
  setCookieHeader,
} from './cookies.js';
import {
  ConfigError,
  ConflictError,
  LockTimeoutError,
  PayloadTooLargeError,
  SatchelError,
  SessionInterruptedError,
  StoreUnavailableError,
  UnsupportedError,
} from './errors.js';
import { generateId, isWellFormedId, Signer, storeKey } from './ids.js';
import { KeyedMutex } from './stores/lock.js';
import { jsonSerializer, richSerializer, type Serializer } from './serializers.js';
import {
  applyOp,
  computeExpiresAt,
  EXPIRY_KEY,
  type ExpiryPolicy,
  FLASH_KEY,
  OWNER_KEY,
  isBrowserSession,
  isSliding,
  type DeviceInfo,
  DEVICE_KEY,
  type Op,
  Session,
  type SessionData,
  type SessionState,
  sessionState,
} from './session.js';
import { type CookieStore, isCookieStore, type SessionStore, type StoredSession } from './store.js';
import { sqliteStore } from './stores/sqlite.js';

/** Where satchel reports corrupt stored data and failed requests. Never given a raw session ID. */
export interface Logger {
  warn(message: string, details?: Record<string, unknown>): void;
  error(message: string, details?: Record<string, unknown>): void;
}

export interface SessionsOptions {
  /**
   * Where sessions are kept.
   * @default sqliteStore() — a `satchel-sessions.db` file in the working directory
   */
  store?: SessionStore | CookieStore;
  /** The session cookie; see each field for its default. */
  cookie?: CookieOptions;
  /**
   * Where the session ID travels. `'cookie'` (the default); `{ type: 'header' }`
   * for API and mobile clients (`Authorization: Session <id>` in, the new ID in
   * a `Session-Id` response header, no cookies); or `{ type: 'url' }`: cookies
   * plus a URL parameter for clients that refuse cookies — the ID then shows
   * up in logs, history and shared links, so it is opt-in (see the README).
   * @default 'cookie'
   */
  transport?: TransportOption;
  /**
   * Seconds of inactivity after which a session expires (sliding, Django's
   * SESSION_COOKIE_AGE). Each request that finds the session pushes it back.
   * @default 1_209_600 (two weeks)
   */
  idleTimeout?: number;
  /**
   * Seconds from a session's creation after which it expires however active it
   * is; bounds how long a stolen ID stays useful. `null` turns it off.
   * `cycleKey()` starts a new lifetime.
   * @default 2_592_000 (30 days)
   */
  absoluteTimeout?: number | null;
  /** Browser-session cookies (no Max-Age), Django's SESSION_EXPIRE_AT_BROWSER_CLOSE. The server-side expiry still holds. @default false */
  expireAtBrowserClose?: boolean;
  /**
   * A session that was only read is touched (its expiry pushed back) at most
   * once per this many seconds, so read-only traffic does not write on every request.
   * @default 60
   */
  touchInterval?: number;
  /**
   * Optional keys for signing the ID in the cookie (HMAC-SHA256), each at
   * least 32 characters: the first signs, all verify, so a key can be rotated
   * without logging anyone out. IDs are 256-bit random values and unguessable
   * without it; signing rejects forged cookies before any store lookup.
   * @default undefined (unsigned)
   */
  secrets?: string | readonly string[];
  /**
   * `'json'` (Django's default), `'rich'` (Date, Map, Set, BigInt; see
   * `richSerializer` for registered classes) or your own. Loading never runs code.
   * @default 'json'
   */
  serializer?: 'json' | 'rich' | Serializer;
  /** Largest serialized session in bytes; a bigger one is an error at commit, and nothing is saved. @default 1_048_576 */
  maxPayloadBytes?: number;
  /**
   * Trust `X-Forwarded-Proto` from a reverse proxy when deciding if a request
   * is HTTPS (for `cookie.secure: 'auto'`). Only turn it on behind a proxy that
   * sets the header, or any client can claim HTTPS.
   * @default false
   */
  trustProxy?: boolean;
  /**
   * Serialize the requests of one session with a per-session lock, for
   * handlers whose read-modify-write cannot be written as `update`. Can also
   * be turned on per request: `load(req, { lock: true })`.
   * @default false
   */
  lock?: boolean;
  /** Milliseconds to wait for the lock before failing with LockTimeoutError (503). @default 10_000 */
  lockTimeout?: number;
  /** Milliseconds after which a lock left by a crashed process expires. @default 30_000 */
  lockTtl?: number;
  /** Compare-and-set attempts before ConflictError (503); retries back off with jitter. @default 20 */
  maxRetries?: number;
  /** @default console.warn and console.error */
  logger?: Logger;
}

export type TransportOption =
  | 'cookie'
  | {
      type: 'header';
      /** Request header carrying the ID; `authorization` expects the `Session` scheme. @default 'authorization' */
      header?: string;
      /** Response header carrying a new ID (empty when the session ended). @default 'session-id' */
      responseHeader?: string;
    }
  | {
      type: 'url';
      /** Query parameter carrying the ID when the request has no session cookie. @default 'sessionid' */
      param?: string;
    };

/** The `transport` option with its defaults filled in (`sessions.transport`); header names lower-case. */
export interface ResolvedTransport {
  type: 'cookie' | 'header' | 'url';
  /** Request header carrying the ID (header transport). */
  header: string;
  /** Response header carrying a new ID (header transport). */
  responseHeader: string;
  /** Query parameter carrying the ID (URL transport). */
  param: string;
}
type Transport = ResolvedTransport;

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

function resolveTransport(option: TransportOption | undefined): Transport {
  const base: Transport = {
    type: 'cookie',
    header: 'authorization',
    responseHeader: 'session-id',
    param: 'sessionid',
  };
  if (option === undefined || option === 'cookie') return base;
  if (option?.type === 'header') {
    const header = (option.header ?? base.header).toLowerCase();
    const responseHeader = (option.responseHeader ?? base.responseHeader).toLowerCase();
    for (const [name, value] of [
      ['header', header],
      ['responseHeader', responseHeader],
    ] as const) {
      if (!HEADER_NAME.test(value))
        throw new ConfigError(`transport.${name} "${value}" is not a valid header name`);
    }
    return { ...base, type: 'header', header, responseHeader };
  }
  if (option?.type === 'url') {
    const param = option.param ?? base.param;
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(param))
      throw new ConfigError(`transport.param "${param}" must be 1-64 of A-Z a-z 0-9 _ . -`);
    return { ...base, type: 'url', param };
  }
  throw new ConfigError(
    `transport must be 'cookie', { type: 'header' } or { type: 'url' }; got ${JSON.stringify(option)}`,
  );
}

/** The little an adapter tells the manager about a request. */
export interface IncomingRequest {
  /** A request header by lower-case name. */
  header(name: string): string | undefined;
  /** True when the connection itself is TLS. */
  encrypted: boolean;
  /** The request target (path and query), for the URL transport. */
  url?: string;
}

export interface LoadOptions {
  /** Take the per-session lock for this request. @default the `lock` option */
  lock?: boolean;
}

/** Lifecycle events; `sessions.on(name, listener)`. Handles are opaque, never session IDs. */
export interface SessionEvents {
  created: { handle: string; owner: string | undefined };
  rotated: { oldHandle: string; handle: string; owner: string | undefined };
  destroyed: { handle: string; reason: 'flush' | 'emptied' | 'revoked' | 'corrupt' };
  /** An expired session seen on load (absolute timeout), or a count removed by clearExpired. */
  expired: { handle: string; via: 'load' } | { count: number; via: 'cleanup' };
  'store-unavailable': { store: string; operation: string; error: StoreUnavailableError };
}

/** One of a user's sessions, as `listByOwner` returns it. */
export interface SessionSummary {
  /** Opaque handle for `revoke`; not the session ID. */
  handle: string;
  createdAt: Date;
  expiresAt: Date;
  /**
   * When the session was last saved or touched, derived from its sliding
   * expiry (exact to within `touchInterval`); `createdAt` when the session
   * has a fixed expiry date.
   */
  lastSeenAt: Date;
  device: DeviceInfo;
  /** True for the session passed as `current`. */
  current: boolean;
}

export interface CommitResult {
  /**
   * Headers to add to the response, lower-case names, in order: each
   * `set-cookie` is appended, `vary` is merged into any Vary already set, and
   * any other header replaces one of the same name.
   */
  headers: [string, string][];
}

export interface Sessions<D extends object = SessionData> {
  readonly store: SessionStore;
  readonly cookie: ResolvedCookieOptions;
  readonly transport: Readonly<ResolvedTransport>;
  readonly logger: Logger;
  /** Turns a request's session ID into a Session. Throws StoreUnavailableError when the store is down. */
  load(request: IncomingRequest, options?: LoadOptions): Promise<Session<D>>;
  /**
   * Saves what the request changed and returns the headers the response must
   * carry. Saves nothing when `status` is 5xx. Always releases the lock.
   */
  commit(session: Session<D>, status: number): Promise<CommitResult>;
  /** Releases the lock without saving (the handler threw). */
  abandon(session: Session<D>): Promise<void>;
  /** Removes expired sessions from stores without native expiry; resolves to how many. */
  clearExpired(): Promise<number>;
  /** The live sessions of a user (see `session.setOwner`), newest first. */
  listByOwner(owner: string, options?: { current?: Session<D> }): Promise<SessionSummary[]>;
  /** Ends one session by its handle (from `listByOwner` or `session.handle`); true when a live session ended. */
  revoke(handle: string): Promise<boolean>;
  /** How many live sessions the store holds (SQLite, PostgreSQL, memory; others throw UnsupportedError). */
  count(): Promise<number>;
  /** Ends every session of a user, except `except` (a session or handle); resolves to how many. */
  revokeAllForOwner(owner: string, options?: { except?: Session<D> | string }): Promise<number>;
  /** Listens to a lifecycle event; returns a function that stops listening. */
  on<E extends keyof SessionEvents>(
    event: E,
    listener: (event: SessionEvents[E]) => void,
  ): () => void;
  close(): Promise<void>;
}

/**
 * What `sessions.store` is for the cookie store: nothing lives on the server,
 * so there is nothing to clear; the manager never calls the record methods.
 */
function cookieStoreFacade(sealer: CookieStore): SessionStore {
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

/** The record's indexed owner comes from the data, so merges and replays carry it like any key. */
function ownerOf(data: Map<string, unknown>): { owner?: string } {
  const owner = data.get(OWNER_KEY);
  return typeof owner === 'string' ? { owner } : {};
}

const HANDLE = /^[A-Za-z0-9_-]{43}$/;

function assertHandle(handle: string): void {
  if (typeof handle !== 'string' || !HANDLE.test(handle)) {
    throw new TypeError(
      '[satchel] not a session handle (expected what listByOwner or session.handle gave)',
    );
  }
}

/** `x-session-id` → `X-Session-Id`, for display and Vary. */
export function headerCase(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_, dash: string, c: string) => dash + c.toUpperCase());
}

function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), Math.max(0, ms));
    void promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

const defaultLogger: Logger = {
  warn: (message, details) => console.warn(message, details ?? ''),
  error: (message, details) => console.error(message, details ?? ''),
};

function positive(name: string, value: number, allowZero = false): number {
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    value < 0 ||
    (!allowZero && value === 0)
  ) {
    throw new ConfigError(
      `${name} must be a ${allowZero ? 'non-negative' : 'positive'} number; got ${String(value)}`,
    );
  }
  return value;
}

function resolveSecrets(secrets: SessionsOptions['secrets']): Signer | undefined {
  if (secrets === undefined) return undefined;
  const list = typeof secrets === 'string' ? [secrets] : [...secrets];
  if (list.length === 0) throw new ConfigError('secrets must hold at least one key');
  list.forEach((secret, i) => {
    if (typeof secret !== 'string' || secret.length < 32) {
      throw new ConfigError(
        `secrets[${i}] must be at least 32 characters; got ${typeof secret === 'string' ? secret.length : typeof secret} (generate one with: npx satchel keygen)`,
      );
    }
  });
  return new Signer(list);
}

/** Wraps a store call so any failure surfaces as StoreUnavailableError naming the store. */
async function callStore<T>(
  store: SessionStore,
  what: string,
  fn: () => Promise<T>,
  onUnavailable: (err: StoreUnavailableError, operation: string) => void,
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (SatchelError.is(err) && err.code !== 'ERR_SATCHEL_STORE_UNAVAILABLE') throw err;
    const unavailable = SatchelError.is(err)
      ? (err as StoreUnavailableError)
      : new StoreUnavailableError(
          store.name,
          `${what} failed: ${err instanceof Error ? err.message : String(err)}`,
          err,
        );
    onUnavailable(unavailable, what);
    throw unavailable;
  }
}

/**
 * Creates the session manager: options are resolved and validated once,
 * here, and every request then goes through `load` and `commit` (adapters do
 * this for you).
 */
export function createSessions<D extends object = SessionData>(
  options: SessionsOptions = {},
): Sessions<D> {
  const cookie = resolveCookieOptions(options.cookie);
  const policy: ExpiryPolicy = {
    idleTimeout: positive('idleTimeout', options.idleTimeout ?? 1_209_600),
    absoluteTimeout:
      options.absoluteTimeout === null
        ? null
        : positive('absoluteTimeout', options.absoluteTimeout ?? 2_592_000),
    expireAtBrowserClose: options.expireAtBrowserClose ?? false,
  };
  const touchMs = positive('touchInterval', options.touchInterval ?? 60, true) * 1000;
  const signer = resolveSecrets(options.secrets);
  const serializer =
    options.serializer === undefined || options.serializer === 'json'
      ? jsonSerializer
      : options.serializer === 'rich'
        ? richSerializer()
        : options.serializer;
  if (typeof serializer?.stringify !== 'function' || typeof serializer.parse !== 'function') {
    throw new ConfigError(
      "serializer must be 'json', 'rich' or an object with stringify and parse",
    );
  }
  const maxPayloadBytes = positive('maxPayloadBytes', options.maxPayloadBytes ?? 1_048_576);
  const trustProxy = options.trustProxy ?? false;
  const lockByDefault = options.lock ?? false;
  const lockTimeout = positive('lockTimeout', options.lockTimeout ?? 10_000);
  const lockTtl = positive('lockTtl', options.lockTtl ?? 30_000);
  const maxRetries = Math.floor(positive('maxRetries', options.maxRetries ?? 20));
  const logger = options.logger ?? defaultLogger;
  const transport = resolveTransport(options.transport);
  const backing = options.store ?? sqliteStore();
  const sealer = backing && isCookieStore(backing) ? backing : undefined;
  if (sealer && lockByDefault) {
    throw new ConfigError('lock needs a server-side store; the cookie store keeps no server state');
  }
  if (sealer && transport.type === 'url') {
    throw new ConfigError(
      'the url transport needs a server-side store; a sealed cookie session does not belong in URLs',
    );
  }
  const store: SessionStore = sealer ? cookieStoreFacade(sealer) : (backing as SessionStore);
  for (const method of [
    'get',
    'create',
    'update',
    'touch',
    'destroy',
    'clearExpired',
    'close',
  ] as const) {
    if (typeof store?.[method] !== 'function') {
      throw new ConfigError(`store must implement ${method}(); see the SessionStore interface`);
    }
  }

  const listeners = new Map<keyof SessionEvents, Set<(event: never) => void>>();
  /** Listeners are optional: with none, no event object is even built. */
  function emit<E extends keyof SessionEvents>(name: E, make: () => SessionEvents[E]): void {
    const set = listeners.get(name);
    if (!set || set.size === 0) return;
    const event = make();
    for (const listener of set) {
      try {
        (listener as (e: SessionEvents[E]) => void)(event);
      } catch (err) {
        logger.error(`[satchel] a "${name}" listener threw`, { error: err });
      }
    }
  }
  const unsupported = (what: string) =>
    new UnsupportedError(
      store.name,
      sealer
        ? `the cookie store cannot ${what}: it keeps nothing on the server`
        : `this store cannot ${what}`,
    );
  const call = <T>(what: string, fn: () => Promise<T>): Promise<T> =>
    callStore(store, what, fn, (error, operation) =>
      emit('store-unavailable', () => ({ store: store.name, operation, error })),
    );

  const clone = (value: unknown): unknown =>
    value === null || typeof value !== 'object'
      ? value
      : serializer.parse(serializer.stringify({ v: value })).v;
  const stringifyValue = (value: unknown): string => serializer.stringify({ v: value });
  const issueId = () => {
    const id = generateId();
    return { id, key: storeKey(id) };
  };
  const encodeId = (id: string) => (signer ? signer.sign(id) : id);
  const decodeId = (value: string): string | undefined => {
    const id = signer ? signer.unsign(value) : value;
    return id !== undefined && isWellFormedId(id) ? id : undefined;
  };

  /** Parses stored data; corrupt data is logged and read as an empty session. */
  function parseData(record: StoredSession): Map<string, unknown> | undefined {
    try {
      return new Map(Object.entries(serializer.parse(record.data)));
    } catch (err) {
      logger.warn(
        `[satchel] [${store.name}] stored session data could not be read; starting an empty session`,
        {
          store: store.name,
          serializer: serializer.name,
          error: err instanceof Error ? err.message : String(err),
        },
      );
      return undefined;
    }
  }

  // In-process lock queues, for stores without a lock of their own (and so
  // requests in this process queue up instead of polling the store).
  const localQueues = new Map<string, Promise<void>>();

  async function acquire(key: string): Promise<NonNullable<SessionState['lock']>> {
    const deadline = Date.now() + lockTimeout;
    const previous = localQueues.get(key) ?? Promise.resolve();
    let done!: () => void;
    const tail = previous.then(() => new Promise<void>((resolve) => (done = resolve)));
    localQueues.set(key, tail);
    const releaseLocal = () => {
      done?.();
      if (localQueues.get(key) === tail) localQueues.delete(key);
    };
    // done is assigned once previous settles; a release before that must still free the queue.
    const release = () => void previous.then(releaseLocal);
    const token = randomBytes(16).toString('base64url');
    try {
      if (!(await settlesWithin(previous, deadline - Date.now())))
        throw new LockTimeoutError(lockTimeout);
      if (store.lock) {
        let wait = 5;
        while (!(await call('lock', () => store.lock!(key, token, lockTtl)))) {
          const left = deadline - Date.now();
          if (left <= 0) throw new LockTimeoutError(lockTimeout);
          // The last try lands on the deadline rather than a poll interval before it.
          await sleep(Math.min(wait + randomInt(5), left));
          wait = Math.min(wait * 2, 100);
        }
      }
    } catch (err) {
      release();
      throw err;
    }
    return { key, token, release };
  }

  async function releaseLock(state: SessionState): Promise<void> {
    const lock = state.lock;
    if (!lock) return;
    state.lock = undefined;
    try {
      if (store.unlock) await call('unlock', () => store.unlock!(lock.key, lock.token));
    } finally {
      lock.release();
    }
  }

  /** Replays this request's changes, in order, on the newest stored data. */
  function replay(base: Map<string, unknown>, ops: Op[]): Map<string, unknown> {
    for (const op of ops) applyOp(base, op.t === 'set' ? { ...op, v: clone(op.v) } : op, clone);
    return base;
  }

  function serialize(data: Map<string, unknown>): string {
    const text = serializer.stringify(Object.fromEntries(data));
    const size = Buffer.byteLength(text);
    if (size > maxPayloadBytes) throw new PayloadTooLargeError(size, maxPayloadBytes);
    return text;
  }

  /** Moves this request's flash bookkeeping into the change log, once per save. */
  function recordFlash(s: SessionState): void {
    const kept = s.flashKeep;
    const remove =
      kept === 'all' ? [] : [...s.flashRead].filter((k) => !kept.has(k) && !s.flashConsumed.has(k));
    if (remove.length === 0 && Object.keys(s.flashOut).length === 0) return;
    const op: Op = { t: 'flash', remove, add: s.flashOut };
    s.ops.push(op);
    applyOp(s.data, op, clone);
    // Values read here stay readable for the rest of the request, even after save().
    for (const key of remove) s.flashConsumed.add(key);
    s.flashOut = {};
  }

  /** A handed-out value changed in place (cart.push(x)) is saved as if set. */
  function recordNestedChanges(s: SessionState): void {
    for (const [key, entry] of s.handedOut) {
      if (s.data.get(key) !== entry.ref) continue;
      const now = stringifyValue(entry.ref);
      if (now === entry.text) continue;
      s.ops.push({ t: 'set', k: key, v: entry.ref });
      // Re-baselined, so a change made after save() is caught by the next save.
      entry.text = now;
    }
  }

  async function create(
    s: SessionState,
    data: Map<string, unknown>,
    announce = true,
  ): Promise<void> {
    const now = Date.now();
    const text = serialize(data);
    for (let attempt = 0; ; attempt++) {
      if (s.id === undefined || s.key === undefined || attempt > 0) Object.assign(s, issueId());
      const record: StoredSession = {
        data: text,
        version: 1,
        createdAt: now,
        expiresAt: computeExpiresAt(policy, data.get(EXPIRY_KEY), now, now),
        ...ownerOf(data),
      };
      // false only if 256 random bits collided with a live session: draw again.
      if (await call('create', () => store.create(s.key!, record))) {
        s.record = record;
        s.data = data;
        s.cookie = 'set';
        if (announce) emit('created', () => ({ handle: s.key!, owner: record.owner }));
        return;
      }
      if (attempt >= 2)
        throw new StoreUnavailableError(store.name, 'create kept reporting an existing key');
    }
  }

  const commits = new KeyedMutex();
  /** How many commits per key are running or queued in this process. */
  const pending = new Map<string, number>();
  /** The newest record this process wrote per key, kept while commits for it are queued. */
  const written = new Map<string, StoredSession>();

  async function casLoop(
    s: SessionState,
    key: string,
    ops: Op[],
  ): Promise<{ data: Map<string, unknown>; record: StoredSession | undefined }> {
    let data = s.data;
    let base = s.record!;
    const newer = written.get(key);
    if (newer && newer.version > base.version) {
      base = newer;
      data = replay(parseData(newer) ?? new Map(), ops);
    }
    for (let attempt = 1; ; attempt++) {
      if (data.size === 0) {
        // Emptied: Django deletes the cookie; the record goes too.
        await call('destroy', () => store.destroy(key));
        emit('destroyed', () => ({ handle: key, reason: 'emptied' }));
        return { data, record: undefined };
      }
      const record: StoredSession = {
        data: serialize(data),
        version: base.version + 1,
        createdAt: base.createdAt,
        expiresAt: computeExpiresAt(policy, data.get(EXPIRY_KEY), base.createdAt, Date.now()),
        ...ownerOf(data),
      };
      const result = await call('update', () => store.update(key, record, base.version));
      if (result === 'ok') {
        if ((pending.get(key) ?? 0) > 1) written.set(key, record);
        return { data, record };
      }
      if (result === 'missing') throw new SessionInterruptedError();
      // A conflicting write means another request saved first: reload and re-apply our changes.
      if (attempt >= maxRetries) throw new ConflictError(attempt);
      // Another process may be draining a queue of commits to this session:
      // back off with full jitter (up to 256 ms) so our turn comes between them.
      if (attempt > 1) await sleep(randomInt(1 + 2 ** Math.min(attempt + 1, 8)));
      const latest = await call('get', () => store.get(key));
      if (!latest) throw new SessionInterruptedError();
      base = latest;
      data = replay(parseData(latest) ?? new Map(), ops);
    }
  }

  /**
   * The cookie store: the record travels in the cookie, so a save is only a
   * decision to send a new sealed cookie (or delete it). Last response wins.
   */
  function persistSealed(s: SessionState): void {
    const now = Date.now();
    const renewed = s.cycled || s.oldKey !== undefined;
    s.oldKey = undefined;
    s.cycled = false;
    if (s.data.size === 0) {
      if (s.record || s.hadIncomingId) s.cookie = 'delete';
      s.record = undefined;
    } else {
      const setting = s.data.get(EXPIRY_KEY);
      const createdAt = s.record && !renewed ? s.record.createdAt : now;
      const expiresAt = computeExpiresAt(policy, setting, createdAt, now);
      const stale = s.record && isSliding(setting) && expiresAt - s.record.expiresAt >= touchMs;
      if (!s.record || renewed || s.ops.length > 0 || stale) {
        s.record = {
          data: serialize(s.data),
          version: (s.record?.version ?? 0) + 1,
          createdAt,
          expiresAt,
          ...ownerOf(s.data),
        };
        s.cookie = 'set';
      }
    }
    s.ops = [];
  }

  async function persist(s: SessionState): Promise<void> {
    recordFlash(s);
    recordNestedChanges(s);
    if (sealer) return persistSealed(s);
    const ops = s.ops;

    if (s.oldKey !== undefined) {
      const oldKey = s.oldKey;
      if (s.cycled && s.record) {
        // cycleKey: the newest data of the old record, with our changes, moves to the new ID.
        const latest = await call('get', () => store.get(oldKey));
        if (!latest) throw new SessionInterruptedError();
        const data = replay(parseData(latest) ?? new Map(), ops);
        s.record = undefined;
        if (data.size > 0) await create(s, data, false);
      }
      // Created first, destroyed second: a failure in between never loses the session.
      await call('destroy', () => store.destroy(oldKey));
      if (s.record)
        emit('rotated', () => ({
          oldHandle: oldKey,
          handle: s.key!,
          owner: ownerOf(s.data).owner,
        }));
      else emit('destroyed', () => ({ handle: oldKey, reason: 'flush' }));
      s.oldKey = undefined;
      s.cycled = false;
      if (!s.record) s.cookie = 'delete';
    }

    if (!s.record) {
      if (s.data.size > 0) await create(s, s.data);
      else if (s.hadIncomingId) s.cookie = 'delete';
      s.ops = [];
      return;
    }

    const key = s.key!;
    if (ops.length === 0) {
      const setting = s.data.get(EXPIRY_KEY);
      if (!isSliding(setting)) return;
      const now = Date.now();
      const next = computeExpiresAt(policy, setting, s.record.createdAt, now);
      if (next - s.record.expiresAt >= touchMs) {
        await call('touch', () => store.touch(key, next));
        s.record = { ...s.record, expiresAt: next };
        s.cookie = 'set';
      }
      return;
    }

    // Commits of one session in this process queue up, each starting from the
    // record the previous one wrote: conflicts are then only cross-process.
    pending.set(key, (pending.get(key) ?? 0) + 1);
    const { data, record } = await commits
      .run(key, () => casLoop(s, key, ops))
      .finally(() => {
        const left = (pending.get(key) ?? 1) - 1;
        if (left > 0) pending.set(key, left);
        else {
          pending.delete(key);
          written.delete(key);
        }
      });
    s.record = record;
    s.cookie = record ? 'set' : 'delete';
    s.data = data;
    s.ops = [];
  }

  /**
   * Takes a loaded record into the session unless it is expired (idle or
   * absolute) or unreadable; corrupt data is logged and read as a new session.
   */
  function adopt(state: SessionState, record: StoredSession): boolean {
    const now = Date.now();
    if (record.expiresAt <= now) return false;
    if (
      policy.absoluteTimeout !== null &&
      record.createdAt + policy.absoluteTimeout * 1000 <= now
    ) {
      return false;
    }
    const data = parseData(record);
    if (!data) {
      state.corrupt = true;
      return false;
    }
    state.record = record;
    state.data = data;
    const flash = data.get(FLASH_KEY);
    if (flash && typeof flash === 'object')
      state.flashIn = { ...(flash as Record<string, unknown>) };
    return true;
  }

  /** The incoming session ID (or sealed session), wherever the transport carries it. */
  function readIncoming(request: IncomingRequest): {
    raw: string | undefined;
    fromUrl: boolean;
    hadCookie: boolean;
  } {
    if (transport.type === 'header') {
      let value = request.header(transport.header)?.trim();
      if (value !== undefined && transport.header === 'authorization') {
        const match = /^Session\s+(\S+)$/i.exec(value);
        value = match?.[1];
      }
      return { raw: value || undefined, fromUrl: false, hadCookie: false };
    }
    const fromCookie = readCookie(request.header('cookie'), cookie.name);
    if (fromCookie !== undefined || transport.type !== 'url' || request.url === undefined) {
      return { raw: fromCookie, fromUrl: false, hadCookie: fromCookie !== undefined };
    }
    // Only a request with no session cookie may carry its ID in the URL.
    const query = request.url.indexOf('?');
    const target = request.url.split('#')[0]!;
    const value =
      query < 0 ? null : new URLSearchParams(target.slice(query + 1)).get(transport.param);
    return { raw: value ?? undefined, fromUrl: value !== null, hadCookie: false };
  }

  /**
   * Adds the session ID to a link or form action for a client without cookies.
   * Only links within this site (relative URLs) get it: an absolute or
   * protocol-relative URL may lead elsewhere and would carry the session away.
   */
  function encodeUrl(state: SessionState, url: string): string {
    // Another site, another scheme, or a jump within this page: left alone.
    if (/^[a-z][a-z0-9+.-]*:/i.test(url) || /^[\\/][\\/]/.test(url) || url.startsWith('#'))
      return url;
    // Links are rendered before the commit: a new session gets its ID now.
    if (state.id === undefined) Object.assign(state, issueId());
    state.urlEncoded = true;
    const parsed = new URL(url, 'http://satchel.invalid/');
    parsed.searchParams.set(transport.param, encodeId(state.id!));
    const path = url.startsWith('/') ? parsed.pathname : url.split(/[?#]/)[0]!;
    return `${path}${parsed.search}${parsed.hash}`;
  }

  /** The response headers that carry the ID (or its deletion) for this transport. */
  function transportHeaders(
    s: SessionState,
    value: string | undefined,
    expires: Date | undefined,
  ): [string, string][] {
    if (transport.type === 'header') {
      return [[transport.responseHeader, value ?? '']];
    }
    return [
      [
        'set-cookie',
        value === undefined
          ? deleteCookieHeader(cookie, s.secure)
          : setCookieHeader(cookie, value, s.secure, expires),
      ],
    ];
  }

  function isSecure(request: IncomingRequest): boolean {
    if (request.encrypted) return true;
    if (!trustProxy) return false;
    const proto = request.header('x-forwarded-proto');
    return proto?.split(',')[0]?.trim().toLowerCase() === 'https';
  }

  const sessions: Sessions<D> = {
    store,
    cookie,
    transport,
    logger,

    async load(request, loadOptions) {
      const { raw, fromUrl, hadCookie } = readIncoming(request);
      const id = raw === undefined || sealer ? undefined : decodeId(raw);
      const state: SessionState = {
        id: undefined,
        key: undefined,
        record: undefined,
        data: new Map(),
        ops: [],
        handedOut: new Map(),
        accessed: false,
        oldKey: undefined,
        cycled: false,
        hadIncomingId: raw !== undefined,
        flashIn: {},
        flashNow: {},
        flashOut: {},
        flashKeep: new Set(),
        flashRead: new Set(),
        flashConsumed: new Set(),
        corrupt: false,
        policy,
        clone,
        stringifyValue,
        persist: undefined,
        issueId,
        cookie: undefined,
        lock: undefined,
        secure: isSecure(request),
        fromUrl,
        urlEncoded: false,
        encodeUrl: undefined,
      };
      if (transport.type === 'url' && !hadCookie) state.encodeUrl = (url) => encodeUrl(state, url);
      const session = new Session<D>(state);
      state.persist = () => persist(state);
      if (sealer) {
        const record = raw === undefined ? undefined : sealer.unseal(raw, Date.now());
        if (record) adopt(state, record);
        return session;
      }
      // A malformed or forged ID is never looked up, let alone adopted.
      if (id === undefined) return session;

      const key = storeKey(id);
      if (loadOptions?.lock ?? lockByDefault) state.lock = await acquire(key);
      try {
        const record = await call('get', () => store.get(key));
        // Unknown or expired: strict mode, a fresh ID will be issued if anything is stored.
        if (!record) return session;
        if (adopt(state, record)) {
          state.id = id;
          state.key = key;
        } else if (record.expiresAt > Date.now()) {
          // Past the absolute timeout, or unreadable: it goes now rather than at its expiry.
          await call('destroy', () => store.destroy(key));
          const corrupt = state.corrupt;
          if (corrupt) emit('destroyed', () => ({ handle: key, reason: 'corrupt' }));
          else emit('expired', () => ({ handle: key, via: 'load' }));
        }
        return session;
      } catch (err) {
        await releaseLock(state);
        throw err;
      }
    },

    async commit(session, status) {
      const s = sessionState(session);
      try {
        if (status < 500) await persist(s);
      } finally {
        await releaseLock(s);
      }
      const headers: [string, string][] = [];
      if (s.cookie === 'set' && s.record && (sealer || s.id !== undefined)) {
        const browserSession = isBrowserSession(policy, s.data.get(EXPIRY_KEY));
        const expires = browserSession ? undefined : new Date(s.record.expiresAt);
        const value = sealer ? sealer.seal(s.record) : encodeId(s.id!);
        headers.push(...transportHeaders(s, value, expires));
      } else if (s.cookie === 'delete' && s.hadIncomingId) {
        headers.push(...transportHeaders(s, undefined, undefined));
      }
      if (s.accessed || headers.length > 0) {
        headers.push([
          'vary',
          transport.type === 'header' ? headerCase(transport.header) : 'Cookie',
        ]);
      }
      if (s.fromUrl || s.urlEncoded) {
        // The ID is in this page's URL or links: keep it out of Referer headers and caches.
        headers.push(['referrer-policy', 'no-referrer'], ['cache-control', 'private, no-store']);
      }
      return { headers };
    },

    async abandon(session) {
      await releaseLock(sessionState(session));
    },

    async clearExpired() {
      const count = await call('clearExpired', () => store.clearExpired(Date.now()));
      if (count > 0) emit('expired', () => ({ count, via: 'cleanup' }));
      return count;
    },

    async listByOwner(owner, listOptions) {
      if (!store.listByOwner) throw unsupported('list sessions by owner');
      const current = listOptions?.current ? sessionState(listOptions.current).key : undefined;
      const now = Date.now();
      const rows = await call('listByOwner', () => store.listByOwner!(owner));
      const out: SessionSummary[] = [];
      for (const { key, record } of rows) {
        if (record.expiresAt <= now || record.owner !== owner) continue;
        const data = parseData(record);
        // The index may lag a write; the record's data is the truth.
        if (!data || data.get(OWNER_KEY) !== owner) continue;
        const setting = data.get(EXPIRY_KEY);
        const window =
          typeof setting === 'number' && setting > 0 ? setting * 1000 : policy.idleTimeout * 1000;
        const lastSeen = isSliding(setting)
          ? Math.max(record.createdAt, Math.min(now, record.expiresAt - window))
          : record.createdAt;
        const device = data.get(DEVICE_KEY);
        out.push({
          handle: key,
          createdAt: new Date(record.createdAt),
          expiresAt: new Date(record.expiresAt),
          lastSeenAt: new Date(lastSeen),
          device: device && typeof device === 'object' ? { ...(device as DeviceInfo) } : {},
          current: key === current,
        });
      }
      return out.sort((a, b) => b.lastSeenAt.getTime() - a.lastSeenAt.getTime());
    },

    async revoke(handle) {
      assertHandle(handle);
      if (sealer) throw unsupported('revoke a session (rotate the secrets to invalidate cookies)');
      const live = (await call('get', () => store.get(handle))) !== undefined;
      await call('destroy', () => store.destroy(handle));
      if (live) emit('destroyed', () => ({ handle, reason: 'revoked' }));
      return live;
    },

    async count() {
      if (!store.count) throw unsupported('count sessions');
      return call('count', () => store.count!(Date.now()));
    },

    async revokeAllForOwner(owner, revokeOptions) {
      const except = revokeOptions?.except;
      const exceptKey =
        typeof except === 'string' ? except : except ? sessionState(except).key : undefined;
      if (exceptKey !== undefined) assertHandle(exceptKey);
      let handles: string[];
      let count: number;
      if (store.destroyByOwner && !listeners.get('destroyed')?.size) {
        handles = [];
        count = await call('destroyByOwner', () => store.destroyByOwner!(owner, exceptKey));
      } else {
        handles = (await sessions.listByOwner(owner))
          .map((s) => s.handle)
          .filter((h) => h !== exceptKey);
        for (const handle of handles) await call('destroy', () => store.destroy(handle));
        count = handles.length;
      }
      for (const handle of handles) emit('destroyed', () => ({ handle, reason: 'revoked' }));
      return count;
    },

    on(event, listener) {
      let set = listeners.get(event);
      if (!set) {
        set = new Set();
        listeners.set(event, set);
      }
      set.add(listener as (event: never) => void);
      return () => void set.delete(listener as (event: never) => void);
    },

    close() {
      return store.close();
    },
  };
  return sessions;
}
