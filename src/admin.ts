import { DEVICE_KEY, EXPIRY_KEY, OWNER_KEY } from './changes.js';
import type { DataCodec } from './codec.js';
import { UnsupportedError } from './errors.js';
import type { Events } from './events.js';
import { type ExpiryPolicy, isSliding } from './expiry.js';
import { isHandle } from './ids.js';
import type { StoreCall } from './persistence/call.js';
import type { DeviceInfo } from './session.js';
import type { ClearExpiredOptions, OwnedRecord, SessionStore } from './store.js';

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

export interface AdminOptions {
  store: SessionStore;
  codec: DataCodec;
  policy: ExpiryPolicy;
  events: Events;
  call: StoreCall;
  /** The cookie store keeps nothing on the server: every per-session operation is unsupported. */
  serverSide: boolean;
}

function assertHandle(handle: unknown): asserts handle is string {
  if (!isHandle(handle)) {
    throw new TypeError(
      '[satchel] not a session handle (expected what listByOwner or session.handle gave)',
    );
  }
}

/**
 * Administration of stored sessions, by handle (the store key, never the
 * ID) and by owner: "your devices" pages, "sign out everywhere", cleanup.
 */
export function createAdmin({ store, codec, policy, events, call, serverSide }: AdminOptions) {
  const unsupported = (what: string) =>
    new UnsupportedError(
      store.name,
      serverSide
        ? `this store cannot ${what}`
        : `the cookie store cannot ${what}: it keeps nothing on the server`,
    );

  function summarize(
    { key, record }: OwnedRecord,
    owner: string,
    current: string | undefined,
    now: number,
  ): SessionSummary | undefined {
    if (record.expiresAt <= now || record.owner !== owner) return undefined;
    const data = codec.parse(record);
    // The index may lag a write; the record's data is the truth.
    if (!data || data.get(OWNER_KEY) !== owner) return undefined;
    const setting = data.get(EXPIRY_KEY);
    const window =
      typeof setting === 'number' && setting > 0 ? setting * 1000 : policy.idleTimeout * 1000;
    const lastSeen = isSliding(setting)
      ? Math.max(record.createdAt, Math.min(now, record.expiresAt - window))
      : record.createdAt;
    const device = data.get(DEVICE_KEY);
    return {
      handle: key,
      createdAt: new Date(record.createdAt),
      expiresAt: new Date(record.expiresAt),
      lastSeenAt: new Date(lastSeen),
      device: device && typeof device === 'object' ? { ...(device as DeviceInfo) } : {},
      current: key === current,
    };
  }

  const admin = {
    async clearExpired(options?: ClearExpiredOptions): Promise<number> {
      const count = await call('clearExpired', () => store.clearExpired(Date.now(), options));
      if (count > 0) events.emit('expired', () => ({ count, via: 'cleanup' }));
      return count;
    },

    async listByOwner(owner: string, current?: string): Promise<SessionSummary[]> {
      if (!store.listByOwner) throw unsupported('list sessions by owner');
      const now = Date.now();
      const rows = await call('listByOwner', () => store.listByOwner!(owner));
      const out: SessionSummary[] = [];
      for (const row of rows) {
        const summary = summarize(row, owner, current, now);
        if (summary) out.push(summary);
      }
      return out.sort((a, b) => b.lastSeenAt.getTime() - a.lastSeenAt.getTime());
    },

    async revoke(handle: string): Promise<boolean> {
      assertHandle(handle);
      if (!serverSide)
        throw unsupported('revoke a session (rotate the secrets to invalidate cookies)');
      const live = (await call('get', () => store.get(handle))) !== undefined;
      await call('destroy', () => store.destroy(handle));
      if (live) events.emit('destroyed', () => ({ handle, reason: 'revoked' }));
      return live;
    },

    async count(): Promise<number> {
      if (!store.count) throw unsupported('count sessions');
      return call('count', () => store.count!(Date.now()));
    },

    async revokeAllForOwner(owner: string, exceptKey: string | undefined): Promise<number> {
      if (exceptKey !== undefined) assertHandle(exceptKey);
      if (store.destroyByOwner && !events.has('destroyed')) {
        return call('destroyByOwner', () => store.destroyByOwner!(owner, exceptKey));
      }
      const handles = (await admin.listByOwner(owner))
        .map((s) => s.handle)
        .filter((h) => h !== exceptKey);
      for (const handle of handles) await call('destroy', () => store.destroy(handle));
      for (const handle of handles) events.emit('destroyed', () => ({ handle, reason: 'revoked' }));
      return handles.length;
    },
  };
  return admin;
}
