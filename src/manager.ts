import { createAdmin, type SessionSummary } from './admin.js';
import { ChangeLog } from './changes.js';
import { commitFinisher } from './commit.js';
import {
  createDataCodec,
  createIdCodec,
  type DataCodec,
  type IdCodec,
  type IdRejection,
} from './codec.js';
import type { ResolvedCookieOptions } from './cookies.js';
import { ConfigError } from './errors.js';
import { type CommitMessage, channels, type LoadMessage, traced } from './diagnostics.js';
import { Events, type SessionEvents } from './events.js';
import { Flash } from './flash.js';
import { Identity } from './identity.js';
import { SessionLocks } from './locks.js';
import {
  type Logger,
  type ResolvedOptions,
  resolveOptions,
  type SessionsOptions,
} from './options.js';
import { IMMEDIATE, type Immediately } from './immediate.js';
import { storeCaller, storeCallerNow } from './persistence/call.js';
import { sealedPersistence } from './persistence/sealed.js';
import { legacyImport } from './persistence/legacy.js';
import { ServerPersistence } from './persistence/server.js';
import type { Persistence } from './persistence/types.js';
import {
  Session,
  type SessionData,
  type SessionParts,
  type SessionRuntime,
  sessionParts,
} from './session.js';
import {
  type ClearExpiredOptions,
  type CookieStore,
  isCookieStore,
  type SessionStore,
} from './store.js';
import {
  createTransport,
  type IncomingRequest,
  type ResolvedTransport,
  type Transport,
} from './transports/index.js';

export type { SessionSummary } from './admin.js';
export type { SessionEvents } from './events.js';
export type { Logger, SessionsOptions } from './options.js';
export type { IncomingRequest, ResolvedTransport, TransportOption } from './transports/index.js';
export { headerCase } from './transports/index.js';

export interface LoadOptions {
  /** Take the per-session lock for this request. @default the `lock` option */
  lock?: boolean;
}

export interface CommitResult {
  /**
   * Headers to add to the response, lower-case names, in order: each
   * `set-cookie` is appended, `vary` is merged into any Vary already set,
   * `cache-control` directives are merged into the app's, and any other
   * header replaces one of the same name (see `applyCommitHeaders`).
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
   * carry. Saves nothing when `status` is 5xx, except that a logout (`flush()`)
   * or `cycleKey()` still deletes the old record. Always releases the lock.
   */
  commit(session: Session<D>, status: number): Promise<CommitResult>;
  /** Releases the lock without saving (the handler threw). */
  abandon(session: Session<D>): Promise<void>;
  /**
   * Removes expired sessions from stores without native expiry; resolves to
   * how many. `onProgress` is called after each of the store's batches.
   */
  clearExpired(options?: ClearExpiredOptions): Promise<number>;
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

const STORE_METHODS = [
  'get',
  'create',
  'update',
  'touch',
  'destroy',
  'clearExpired',
  'close',
] as const;

function checkStore(store: SessionStore): void {
  for (const method of STORE_METHODS) {
    if (typeof store?.[method] !== 'function') {
      throw new ConfigError(`store must implement ${method}(); see the SessionStore interface`);
    }
  }
}

interface Parts {
  transport: Transport;
  events: Events;
  codec: DataCodec;
  ids: IdCodec;
}

/** Chooses, once, how sessions are kept: sealed in the cookie, or on the server. */
function choosePersistence(
  o: ResolvedOptions,
  { transport, events, codec, ids }: Parts,
): Persistence {
  if (isCookieStore(o.store)) {
    if (o.lock) {
      throw new ConfigError(
        'lock needs a server-side store; the cookie store keeps no server state',
      );
    }
    if (o.importers.length > 0) {
      throw new ConfigError('importers need a server-side store to import legacy sessions into');
    }
    if (!transport.carriesSealed) {
      throw new ConfigError(
        'the url transport needs a server-side store; a sealed cookie session does not belong in URLs',
      );
    }
    return sealedPersistence({ sealer: o.store, codec, policy: o.policy, touchMs: o.touchMs });
  }
  const store = o.store;
  checkStore(store);
  const call = storeCaller(store, events);
  return new ServerPersistence({
    ...o,
    store,
    codec,
    ids,
    events,
    call,
    callNow: storeCallerNow(store, events),
    locks: new SessionLocks({ store, timeout: o.lockTimeout, ttl: o.lockTtl, call }),
    rejected: rejectionLog(o),
    importLegacy: o.importers.length === 0 ? undefined : legacyImport({ ...o, store, codec, call }),
  });
}

/** Whether the request came over HTTPS (as a proxy we trust says, with `trustProxy`). */
function isSecure(request: IncomingRequest, trustProxy: boolean): boolean {
  if (request.encrypted) return true;
  if (!trustProxy) return false;
  const proto = request.header('x-forwarded-proto');
  return proto?.split(',')[0]?.trim().toLowerCase() === 'https';
}

/**
 * Turning `secrets` on or off makes every cookie of the other kind invalid:
 * said in the log (at the 1st, 10th, 100th… rejection), not silently.
 */
function rejectionLog(o: ResolvedOptions): (reason: IdRejection) => void {
  const counts = { unsigned: 0, signed: 0 };
  return (reason) => {
    if (reason === 'malformed') return;
    const n = ++counts[reason];
    if (n !== 10 ** Math.round(Math.log10(n))) return;
    o.logger.warn(
      reason === 'unsigned'
        ? `[satchel] ${n} session cookie${n === 1 ? '' : 's'} rejected: unsigned while \`secrets\` is set (to roll signing out without logging anyone out, set acceptUnsignedIds: true for a while)`
        : `[satchel] ${n} session cookie${n === 1 ? '' : 's'} rejected: signed while \`secrets\` is not set`,
    );
  };
}

/**
 * Creates the session manager: options are resolved and validated once,
 * here, and every request then goes through `load` and `commit` (adapters do
 * this for you). `defaultStore` is the package entry's choice (SQLite).
 */
export function buildSessions<D extends object = SessionData>(
  options: SessionsOptions,
  defaultStore: () => SessionStore | CookieStore,
): Sessions<D> {
  const o = resolveOptions(options, defaultStore);
  const transport = createTransport(o.transport, o.cookie);
  const events = new Events(o.logger);
  const codec = createDataCodec(o.serializer, o.maxPayloadBytes, o.logger, o.store.name);
  const ids = createIdCodec({ signer: o.signer, acceptUnsigned: o.acceptUnsignedIds });
  const persistence = choosePersistence(o, { transport, events, codec, ids });
  const admin = createAdmin({
    store: persistence.store,
    codec,
    policy: o.policy,
    events,
    call: storeCaller(persistence.store, events),
    serverSide: persistence.keepsRecords,
  });
  const storeName = persistence.store.name;
  const finishCommit = commitFinisher<D>(persistence, transport, o.policy);
  const runtime: SessionRuntime = {
    policy: o.policy,
    issueId: ids.issue,
    // session.save() is a commit too, as far as tracing goes.
    save: (parts) =>
      traced(
        channels.commit,
        (): CommitMessage => ({ store: storeName }),
        async (message) => {
          try {
            await persistence.save(parts);
          } finally {
            if (message) message.retries = parts.identity.retries;
          }
        },
      ),
  };
  const keyOf = (session: Session<D>) => sessionParts(session).identity.key;

  const sessions: Sessions<D> = {
    store: persistence.store,
    cookie: o.cookie,
    transport: transport.settings,
    logger: o.logger,

    load(request, loadOptions) {
      if (!channels.load.hasSubscribers) {
        try {
          return Promise.resolve(open(request, loadOptions));
        } catch (err) {
          return Promise.reject(err);
        }
      }
      return traced(
        channels.load,
        (): LoadMessage => ({ store: storeName }),
        async (message) => {
          const session = await open(request, loadOptions);
          if (message) message.found = !session.isNew;
          return session;
        },
      );
    },

    commit(session, status) {
      if (!channels.commit.hasSubscribers) {
        return Promise.resolve(finishCommit(session, status, undefined));
      }
      return traced(
        channels.commit,
        (): CommitMessage => ({ store: storeName, status }),
        async (message) => finishCommit(session, status, message),
      );
    },

    abandon: (session) => persistence.release(sessionParts(session)),
    clearExpired: (options) => admin.clearExpired(options),
    listByOwner: (owner, listOptions) =>
      admin.listByOwner(owner, listOptions?.current ? keyOf(listOptions.current) : undefined),
    revoke: (handle) => admin.revoke(handle),
    count: () => admin.count(),
    revokeAllForOwner(owner, revokeOptions) {
      const except = revokeOptions?.except;
      return admin.revokeAllForOwner(
        owner,
        typeof except === 'string' ? except : except ? keyOf(except) : undefined,
      );
    },
    on: (event, listener) => events.on(event, listener),
    close: () => persistence.close(),
  };
  (sessions as Sessions<D> & Partial<Immediately<D>>)[IMMEDIATE] = {
    of: { load: sessions.load, commit: sessions.commit },
    load: open,
    commit: (session, status) => finishCommit(session, status, undefined),
  };
  return sessions;

  /** The session, at once when the persistence had nothing to wait for. */
  function open(
    request: IncomingRequest,
    loadOptions: LoadOptions | undefined,
  ): Session<D> | Promise<Session<D>> {
    const incoming = transport.read(request);
    const identity = new Identity(incoming.raw !== undefined, isSecure(request, o.trustProxy));
    const parts: SessionParts = {
      identity,
      changes: new ChangeLog(codec),
      flash: new Flash(),
      runtime,
      // Only the URL transport links; `?.` skips its arguments, so no closure is made otherwise.
      links: transport.linker?.(request, incoming, () => {
        if (identity.id === undefined) identity.assign(ids.issue());
        return persistence.outgoing(parts)!;
      }),
    };
    const opening = persistence.open(parts, request, incoming, loadOptions?.lock ?? o.lock);
    return opening ? opening.then(() => new Session<D>(parts)) : new Session<D>(parts);
  }
}
