import type { Redis } from 'ioredis';
import { ConfigError, StoreUnavailableError } from '../errors.js';
import type { ClearExpiredOptions, SessionStore, StoredSession, UpdateResult } from '../store.js';
import { checkOptions, openGuard } from './kit.js';
import {
  type Connection,
  connectUrl,
  ioredisConnection,
  type RedisStoreClient,
  wrapClient,
} from './redis/connection.js';
import { type Context, context, nativeExpiry } from './redis/context.js';
import { type OwnerIndex, ownerIndex } from './redis/owners.js';
import { scripts } from './redis/scripts.js';

export type { NodeRedisClientLike, RedisStoreClient } from './redis/connection.js';

export interface RedisStoreOptions {
  /**
   * A connected client to use: an ioredis `Redis` or `Cluster`, or a
   * node-redis v5 client or cluster (after `await client.connect()`). The
   * store never closes it, and leaves its options alone: give it an `'error'`
   * listener, and for quick 503s while Redis is down, settings that fail
   * commands instead of queueing them forever (ioredis
   * `maxRetriesPerRequest`, node-redis `disableOfflineQueue`).
   * @default undefined (pass `client` or `url`)
   */
  client?: RedisStoreClient;
  /**
   * A `redis://` or `rediss://` URL to connect to with ioredis (an optional
   * peer dependency, loaded only then). The store owns this client: it fails
   * commands fast while Redis is unreachable, reconnects by itself, and is
   * quit on `close()`.
   * @default undefined (pass `client` or `url`)
   */
  url?: string;
  /**
   * Put before every key, so several applications can share one Redis. Keys
   * are `<prefix>{<session key>}`: the braces are a Cluster hash tag, so a
   * session's record and its lock always live in one slot. An owner's index
   * is `<prefix>owner:{<hash of the owner>}` and the same with `:versions`.
   * The prefix itself must not contain braces, or every key would hash to one
   * slot.
   * @default 'satchel:'
   */
  prefix?: string;
}

/** Keys asked for per SCAN call (and scripts sent per batch) in `clearExpired`. */
const SCAN_COUNT = 500;
/** Rounds of `touch` when the session's owner keeps changing under it. */
const TOUCH_ATTEMPTS = 10;

const KNOWN: (keyof RedisStoreOptions)[] = ['client', 'url', 'prefix'];
const HINTS = {
  host: 'pass a url such as redis://127.0.0.1:6379, or a connected client',
  port: 'pass a url such as redis://127.0.0.1:6379, or a connected client',
  ttl: 'not needed: records expire natively with their session',
};

/**
 * Keeps sessions in Redis or a Redis Cluster, through ioredis or node-redis.
 *
 * Each session is one hash at `<prefix>{<key>}` with the fields `data`,
 * `version`, `expiresAt`, `createdAt` and `owner`; its lock, when taken, is
 * the string `<prefix>{<key>}:lock`. A read is one HMGET; every write is one
 * Lua script, so compare-and-set is atomic on the server. Expiry is native
 * (PEXPIREAT, a minute past `expiresAt` to absorb clock skew) and checked on
 * every read and write, so `clearExpired()` has almost nothing to do: it
 * scans the prefix on every master and removes records whose `expiresAt` is
 * at or before the time given, and without a time counts only records
 * expired within the last minute.
 *
 * The owner index lives in two keys per owner, hash-tagged by a SHA-256 of
 * the owner so that they share one slot (and any owner string is safe in a
 * key name): `<prefix>owner:{<hash>}`, a sorted set of the owner's session
 * keys scored by the latest `expiresAt` indexed for each, and
 * `<prefix>owner:{<hash>}:versions`, a hash of the latest version indexed for
 * each. A session and its owner's index sit in different slots, so they are
 * written by separate commands, in an order that never hides a live session:
 * - create and update index the new owner *before* writing the record (a
 *   write that then fails leaves a harmless extra member), and touch extends
 *   the index before it extends the record, re-checking the owner in the
 *   same script;
 * - a member leaves the old owner's index after an update that changed the
 *   owner, a destroy or a clearExpired, only if no write of a later version
 *   has indexed it since (so a late removal never undoes a newer write);
 * - a listing skips and removes members whose record is gone, expired or
 *   owned by someone else, under the same rule, and members whose latest
 *   expiry has passed are removed in passing by every index write.
 * Both keys expire a minute after the latest `expiresAt` they index, so an
 * owner who stops logging in leaves nothing behind.
 */
export function redisStore(options: RedisStoreOptions): SessionStore {
  const given = checkOptions('redis', options, KNOWN, HINTS);
  const prefix = given.prefix ?? 'satchel:';
  if (typeof prefix !== 'string' || /[{}]/.test(prefix)) {
    throw new ConfigError(
      `redis store: prefix must be a string without { or }, which would change the Cluster hash tag; got ${JSON.stringify(prefix)}`,
    );
  }
  if (given.client !== undefined && given.url !== undefined) {
    throw new ConfigError('redis store: pass either client or url, not both');
  }
  if (given.client === undefined && given.url === undefined) {
    throw new ConfigError('redis store: pass a client or a url');
  }
  if (given.url !== undefined && (typeof given.url !== 'string' || given.url === '')) {
    throw new ConfigError('redis store: url must be a non-empty string');
  }

  let lastConnectionError: Error | undefined;
  let owned: Redis | undefined;
  let connection: Connection;
  if (given.client === undefined) {
    owned = connectUrl(given.url!, (err) => {
      lastConnectionError = err;
    });
    connection = ioredisConnection(owned);
  } else {
    connection = wrapClient(given.client);
  }

  const open = openGuard('redis');
  const guard = async <T>(op: string, fn: () => Promise<T>): Promise<T> => {
    open.check();
    try {
      return await fn();
    } catch (err) {
      // ioredis reports an unreachable server as "max retries reached";
      // the connection error it last emitted says why.
      const reason =
        err instanceof Error && err.name === 'MaxRetriesPerRequestError' && lastConnectionError
          ? `Redis is unreachable (${lastConnectionError.message})`
          : err instanceof Error
            ? err.message
            : String(err);
      throw new StoreUnavailableError('redis', `${op} failed: ${reason}`, err);
    }
  };
  const ctx = context(prefix, connection, guard);
  const owners = ownerIndex(ctx);

  return {
    name: 'redis',
    ...recordMethods(ctx, owners),
    ...ownerMethods(ctx, owners),
    clearExpired: (now = Date.now(), opts?: ClearExpiredOptions) =>
      guard('clearExpired', () => clearExpired(ctx, owners, now, opts)),

    async close() {
      if (!open.close()) return;
      if (owned === undefined) return;
      if (owned.status === 'ready') {
        await owned.quit().catch(() => owned?.disconnect());
      } else {
        owned.disconnect();
      }
    },

    lock(key, token, ttlMs) {
      return guard('lock', async () => {
        const ttl = String(Math.max(1, Math.ceil(ttlMs)));
        return (await ctx.run(scripts.lock, [ctx.lockKey(key)], [token, ttl])) === 1;
      });
    },

    unlock(key, token) {
      return guard('unlock', async () => {
        await ctx.run(scripts.unlock, [ctx.lockKey(key)], [token]);
      });
    },
  };
}

function writeArgs(record: StoredSession, now: number): string[] {
  return [
    String(now),
    record.data,
    String(record.version),
    String(record.expiresAt),
    String(record.createdAt),
    nativeExpiry(record.expiresAt),
    record.owner === undefined ? '0' : '1',
    record.owner ?? '',
  ];
}

/** get, create, update, touch and destroy. */
function recordMethods(
  ctx: Context,
  owners: OwnerIndex,
): Pick<SessionStore, 'get' | 'create' | 'update' | 'touch' | 'destroy'> {
  const { guard, recordKey, callList } = ctx;
  return {
    get: (key) =>
      guard('get', async () => {
        const record = await ctx.read(key);
        return record !== undefined && record.expiresAt > Date.now() ? record : undefined;
      }),

    create: (key, record) =>
      guard('create', async () => {
        const now = Date.now();
        if (record.owner !== undefined) {
          await owners.own(record.owner, key, record.version, record.expiresAt, now);
        }
        return (await ctx.run(scripts.create, [recordKey(key)], writeArgs(record, now))) === 1;
      }),

    update: (key, record, expectedVersion) =>
      guard('update', async (): Promise<UpdateResult> => {
        const now = Date.now();
        if (record.owner !== undefined) {
          await owners.own(record.owner, key, record.version, record.expiresAt, now);
        }
        const args = [...writeArgs(record, now), String(expectedVersion)];
        const [result, previous] = await callList(scripts.update, [recordKey(key)], args);
        if (result !== 1) return result === 0 ? 'conflict' : 'missing';
        if (typeof previous === 'string' && previous !== record.owner) {
          await owners.disown(previous, key, record.version);
        }
        return 'ok';
      }),

    touch: (key, expiresAt) =>
      guard('touch', async () => {
        // Tried first as a session without an owner, the common case: one
        // round trip. Otherwise the script names the owner, whose index is
        // extended before the record is, and the touch runs again expecting
        // that owner.
        let expected: string | undefined;
        for (let attempt = 0; attempt < TOUCH_ATTEMPTS; attempt++) {
          const now = Date.now();
          const args = [
            String(now),
            String(expiresAt),
            nativeExpiry(expiresAt),
            expected === undefined ? '0' : '1',
            expected ?? '',
          ];
          const [status, owner, version] = await callList(scripts.touch, [recordKey(key)], args);
          if (status !== 2) return;
          expected = typeof owner === 'string' ? owner : undefined;
          if (expected !== undefined) await owners.own(expected, key, version ?? 0, expiresAt, now);
        }
        // The owner changed under every attempt: each of those writes set
        // its own expiry, so this touch is moot.
      }),

    destroy: (key) =>
      guard('destroy', async () => {
        const [, owner, version] = await callList(
          scripts.destroy,
          [recordKey(key)],
          ['0', '', String(Date.now())],
        );
        if (typeof owner === 'string') await owners.disown(owner, key, version ?? 0);
      }),
  };
}

/** listByOwner and destroyByOwner. */
function ownerMethods(
  ctx: Context,
  owners: OwnerIndex,
): Required<Pick<SessionStore, 'listByOwner' | 'destroyByOwner'>> {
  return {
    listByOwner: (owner) => ctx.guard('listByOwner', () => owners.list(owner)),

    destroyByOwner: (owner, exceptKey) =>
      ctx.guard('destroyByOwner', async () => {
        const listed = await owners.list(owner);
        let removed = 0;
        await Promise.all(
          listed
            .filter(({ key }) => key !== exceptKey)
            .map(async ({ key }) => {
              // Only while `owner` still holds it: a session that changed
              // hands since the listing is not this owner's to end.
              const [live, , version] = await ctx.callList(
                scripts.destroy,
                [ctx.recordKey(key)],
                ['1', owner, String(Date.now())],
              );
              if (live === 1) removed++;
              if (version != null) await owners.disown(owner, key, version);
            }),
        );
        return removed;
      }),
  };
}

/**
 * Removes records whose expiresAt is at or before `now`, one SCAN batch at a
 * time on every master, reporting progress after each batch. Redis expires
 * records natively too, so this mostly finds nothing.
 */
async function clearExpired(
  ctx: Context,
  owners: OwnerIndex,
  now: number,
  options: ClearExpiredOptions | undefined,
): Promise<number> {
  let removed = 0;
  for await (const keys of ctx.connection.scan(ctx.recordPattern, SCAN_COUNT)) {
    // One script per key: in a Cluster each key may sit in another slot.
    await Promise.all(
      keys.map(async (redisKey) => {
        const [result, owner, version] = await ctx.callList(
          scripts.clear,
          [redisKey],
          [String(now)],
        );
        if (result !== 1) return;
        removed++;
        if (typeof owner === 'string') {
          // `<prefix>{<key>}` -> `<key>`
          await owners.disown(owner, redisKey.slice(ctx.prefix.length + 1, -1), version ?? 0);
        }
      }),
    );
    options?.onProgress?.({ removed });
  }
  options?.onProgress?.({ removed });
  return removed;
}
