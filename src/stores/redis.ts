import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Cluster, Redis } from 'ioredis';
import { ConfigError, StoreUnavailableError } from '../errors.js';
import type { OwnedRecord, SessionStore, StoredSession, UpdateResult } from '../store.js';

/**
 * A node-redis v5 client or cluster, recognized by shape: its types vary with
 * the modules, scripts and RESP version it was created with, and every
 * combination fits.
 */
export interface NodeRedisClientLike {
  evalSha(...args: any[]): Promise<unknown>;
  hmGet(...args: any[]): Promise<unknown>;
}

/** The clients the store accepts: ioredis (single node or Cluster) or node-redis v5 (client or cluster). */
export type RedisStoreClient = Redis | Cluster | NodeRedisClientLike;

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

/**
 * How long Redis keeps a record past its `expiresAt` before expiring it
 * natively. Every read and write checks `expiresAt` against this process's
 * clock, so a record is gone for callers exactly at `expiresAt`; the margin
 * only keeps a Redis clock that runs ahead from dropping live sessions early,
 * and lets `clearExpired` see what has just expired.
 */
const EXPIRY_MARGIN_MS = 60_000;
/** Keys asked for per SCAN call (and scripts sent per batch) in `clearExpired`. */
const SCAN_COUNT = 500;
/** Records read at once while listing an owner's sessions. */
const LIST_BATCH = 500;
/** Dead members an owner-index write removes in passing (a listing removes them all). */
const PRUNE_PER_WRITE = 16;
/** Rounds of `touch` when the session's owner keeps changing under it. */
const TOUCH_ATTEMPTS = 10;

const FIELDS = ['data', 'version', 'expiresAt', 'createdAt', 'owner'] as const;

// ARGV of create and update: 1 now, 2 data, 3 version, 4 expiresAt,
// 5 createdAt, 6 native expiry (ms since epoch), 7 '1' when there is an
// owner, 8 owner, 9 expected version (update only).
const RECORD_HELPERS = `
local function live()
  local expiresAt = redis.call('HGET', KEYS[1], 'expiresAt')
  return expiresAt and tonumber(expiresAt) > tonumber(ARGV[1])
end
local function write()
  redis.call('HSET', KEYS[1], 'data', ARGV[2], 'version', ARGV[3], 'expiresAt', ARGV[4],
    'createdAt', ARGV[5])
  if ARGV[7] == '1' then
    redis.call('HSET', KEYS[1], 'owner', ARGV[8])
  else
    redis.call('HDEL', KEYS[1], 'owner')
  end
  redis.call('PEXPIREAT', KEYS[1], ARGV[6])
end
`;

const OWNER_HELPERS = `
local function forget(member)
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
end
local function prune(cutoff, limit)
  local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff, 'LIMIT', 0, limit)
  for _, member in ipairs(dead) do forget(member) end
end
`;

const scripts = {
  // 1 created; 0 a live record holds the key. An expired record still inside
  // the margin is overwritten.
  create: script(`${RECORD_HELPERS}
if live() then return 0 end
write()
return 1`),
  // {1, previous owner or nil} ok, {0} conflict, {-1} missing.
  update: script(`${RECORD_HELPERS}
if not live() then return {-1} end
if tonumber(redis.call('HGET', KEYS[1], 'version')) ~= tonumber(ARGV[9]) then return {0} end
local previous = redis.call('HGET', KEYS[1], 'owner')
write()
return {1, previous}`),
  // ARGV: 1 now, 2 expiresAt, 3 native expiry, 4 '1' when the caller expects
  // an owner, 5 that owner. Touches only a record whose owner is the one
  // expected (no owner for '0'): {1} touched, {0} not live, and {2, owner or
  // nil, version} when the owner is another, which the caller indexes first.
  touch: script(`${RECORD_HELPERS}
if not live() then return {0} end
local owner = redis.call('HGET', KEYS[1], 'owner')
if (owner == false and ARGV[4] == '0') or (owner ~= false and ARGV[4] == '1' and owner == ARGV[5]) then
  redis.call('HSET', KEYS[1], 'expiresAt', ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
  return {1}
end
return {2, owner, redis.call('HGET', KEYS[1], 'version')}`),
  // ARGV: 1 '1' to remove the record only if ARGV 2 owns it, 3 now.
  // {0} nothing removed, else {1 if it was live else 0, owner or nil, version}.
  destroy: script(`
local f = redis.call('HMGET', KEYS[1], 'owner', 'version', 'expiresAt')
if ARGV[1] == '1' and f[1] ~= ARGV[2] then return {0} end
if redis.call('UNLINK', KEYS[1]) == 0 then return {0} end
local live = 0
if f[3] and tonumber(f[3]) > tonumber(ARGV[3]) then live = 1 end
return {live, f[1], f[2]}`),
  // ARGV: 1 cutoff. Deletes the record if it expires at or before the cutoff:
  // {1, owner or nil, version}, else {0}.
  clear: script(`
local f = redis.call('HMGET', KEYS[1], 'expiresAt', 'owner', 'version')
if f[1] and tonumber(f[1]) <= tonumber(ARGV[1]) then
  redis.call('UNLINK', KEYS[1])
  return {1, f[2], f[3]}
end
return {0}`),
  // The owner index; KEYS: 1 the members by expiry, 2 their versions.
  // ARGV: 1 member, 2 version, 3 expiresAt, 4 ttl of both keys (ms), 5 cutoff.
  // Versions and expiries only ever go up here, and both keys are made to
  // outlive the member.
  own: script(`${OWNER_HELPERS}
local stored = redis.call('HGET', KEYS[2], ARGV[1])
if not stored or tonumber(stored) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
prune(ARGV[5], ${PRUNE_PER_WRITE})
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) < tonumber(ARGV[4]) then redis.call('PEXPIRE', key, ARGV[4]) end
end
return 1`),
  // ARGV: 1 member, 2 version. Removes the member unless a write of a later
  // version has indexed it since.
  disown: script(`${OWNER_HELPERS}
local stored = redis.call('HGET', KEYS[2], ARGV[1])
if stored and tonumber(stored) > tonumber(ARGV[2]) then return 0 end
forget(ARGV[1])
return 1`),
  // ARGV: 1 member, 2 now. Removes the member if its latest expiry is past.
  drop: script(`${OWNER_HELPERS}
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > tonumber(ARGV[2]) then return 0 end
forget(ARGV[1])
return 1`),
  // ARGV: 1 cutoff. The members, after removing those expired before the cutoff.
  list: script(`${OWNER_HELPERS}
prune(ARGV[1], -1)
return redis.call('ZRANGE', KEYS[1], 0, -1)`),
  // ARGV: 1 token, 2 ttl ms. Free, expired (gone natively) or already ours: take it.
  lock: script(`
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`),
  // ARGV: 1 token.
  unlock: script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`),
};

interface Script {
  lua: string;
  sha: string;
}

function script(lua: string): Script {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

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
  const prefix = options.prefix ?? 'satchel:';
  if (typeof prefix !== 'string' || /[{}]/.test(prefix)) {
    throw new ConfigError(
      `redis store: prefix must be a string without { or }, which would change the Cluster hash tag; got ${JSON.stringify(prefix)}`,
    );
  }
  if (options.client !== undefined && options.url !== undefined) {
    throw new ConfigError('redis store: pass either client or url, not both');
  }
  if (options.client === undefined && options.url === undefined) {
    throw new ConfigError('redis store: pass a client or a url');
  }
  if (options.url !== undefined && (typeof options.url !== 'string' || options.url === '')) {
    throw new ConfigError('redis store: url must be a non-empty string');
  }

  let lastConnectionError: Error | undefined;
  let owned: Redis | undefined;
  let connection: Connection;
  if (options.client === undefined) {
    owned = connectUrl(options.url!, (err) => {
      lastConnectionError = err;
    });
    connection = ioredisConnection(owned);
  } else {
    connection = wrapClient(options.client);
  }

  const recordKey = (key: string) => `${prefix}{${key}}`;
  const lockKey = (key: string) => `${prefix}{${key}}:lock`;
  const ownerKeys = (owner: string): string[] => {
    const tag = `${prefix}owner:{${createHash('sha256').update(owner).digest('base64url')}}`;
    return [tag, `${tag}:versions`];
  };
  // Glob-escaped; matches records only, not the `:lock` keys beside them.
  const recordPattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}{*}`;

  let closed = false;
  const guard = async <T>(op: string, fn: () => Promise<T>): Promise<T> => {
    if (closed) throw new StoreUnavailableError('redis', 'the store is closed');
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

  const call = async (s: Script, keys: string[], args: string[]): Promise<unknown> => {
    try {
      return await connection.evalsha(s.sha, keys, args);
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('NOSCRIPT'))) throw err;
      // EVAL runs the script and caches it on that node for the next EVALSHA.
      return await connection.eval(s.lua, keys, args);
    }
  };
  const run = async (s: Script, keys: string[], args: string[]): Promise<number> =>
    Number(await call(s, keys, args));
  /** A script's array reply: numbers, strings, and null for Lua's false. */
  const callList = async (s: Script, keys: string[], args: string[]) =>
    (await call(s, keys, args)) as (number | string | null | undefined)[];

  /** Indexes `key` under `owner` before a write that may leave it live until `expiresAt`. */
  const own = async (
    owner: string,
    key: string,
    version: number | string,
    expiresAt: number,
    now: number,
  ): Promise<void> => {
    // Already expired: nobody will list it, so there is nothing to index.
    if (!(expiresAt > now)) return;
    const ttl = Math.ceil(expiresAt - now) + EXPIRY_MARGIN_MS;
    await call(scripts.own, ownerKeys(owner), [
      key,
      String(version),
      String(expiresAt),
      String(ttl),
      String(now - EXPIRY_MARGIN_MS),
    ]);
  };

  /** Removes `key` from `owner`'s index, unless a write later than `version` indexed it. */
  const disown = async (owner: string, key: string, version: number | string): Promise<void> => {
    await call(scripts.disown, ownerKeys(owner), [key, String(version)]);
  };

  /** The record, expired or not; undefined when absent or incomplete. */
  const read = async (key: string): Promise<StoredSession | undefined> => {
    const [data, version, expiresAt, createdAt, owner] = await connection.hmget(
      recordKey(key),
      FIELDS,
    );
    if (data == null || version == null || expiresAt == null || createdAt == null) {
      return undefined;
    }
    const record: StoredSession = {
      data,
      version: Number(version),
      expiresAt: Number(expiresAt),
      createdAt: Number(createdAt),
    };
    if (owner != null) record.owner = owner;
    return record;
  };

  /** The live records `owner` holds; removes the index members that are not. */
  const listOwned = async (owner: string): Promise<OwnedRecord[]> => {
    const keys = ownerKeys(owner);
    const now = Date.now();
    const members = (await call(scripts.list, keys, [String(now - EXPIRY_MARGIN_MS)])) as string[];
    const out: OwnedRecord[] = [];
    for (let start = 0; start < members.length; start += LIST_BATCH) {
      const batch = members.slice(start, start + LIST_BATCH);
      // In a Cluster each record may sit in another slot: one read per key.
      const records = await Promise.all(batch.map(read));
      const cleanup: Promise<unknown>[] = [];
      batch.forEach((key, i) => {
        const record = records[i];
        if (record === undefined || !(record.expiresAt > now)) {
          // Gone or expired. Not by version: a create may have indexed the
          // key and not yet written it. Its latest indexed expiry says
          // whether it can still be live.
          cleanup.push(call(scripts.drop, keys, [key, String(now)]));
        } else if (record.owner !== owner) {
          cleanup.push(disown(owner, key, record.version));
        } else {
          out.push({ key, record });
        }
      });
      await Promise.all(cleanup);
    }
    return out;
  };

  const writeArgs = (record: StoredSession, now: number): string[] => [
    String(now),
    record.data,
    String(record.version),
    String(record.expiresAt),
    String(record.createdAt),
    nativeExpiry(record.expiresAt),
    record.owner === undefined ? '0' : '1',
    record.owner ?? '',
  ];

  return {
    name: 'redis',

    get(key) {
      return guard('get', async () => {
        const record = await read(key);
        return record !== undefined && record.expiresAt > Date.now() ? record : undefined;
      });
    },

    create(key, record) {
      return guard('create', async () => {
        const now = Date.now();
        if (record.owner !== undefined) {
          await own(record.owner, key, record.version, record.expiresAt, now);
        }
        return (await run(scripts.create, [recordKey(key)], writeArgs(record, now))) === 1;
      });
    },

    update(key, record, expectedVersion) {
      return guard('update', async (): Promise<UpdateResult> => {
        const now = Date.now();
        if (record.owner !== undefined) {
          await own(record.owner, key, record.version, record.expiresAt, now);
        }
        const args = [...writeArgs(record, now), String(expectedVersion)];
        const [result, previous] = await callList(scripts.update, [recordKey(key)], args);
        if (result !== 1) return result === 0 ? 'conflict' : 'missing';
        if (typeof previous === 'string' && previous !== record.owner) {
          await disown(previous, key, record.version);
        }
        return 'ok';
      });
    },

    touch(key, expiresAt) {
      return guard('touch', async () => {
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
          if (expected !== undefined) await own(expected, key, version ?? 0, expiresAt, now);
        }
        // The owner changed under every attempt: each of those writes set
        // its own expiry, so this touch is moot.
      });
    },

    destroy(key) {
      return guard('destroy', async () => {
        const [, owner, version] = await callList(
          scripts.destroy,
          [recordKey(key)],
          ['0', '', String(Date.now())],
        );
        if (typeof owner === 'string') await disown(owner, key, version ?? 0);
      });
    },

    clearExpired(now = Date.now()) {
      return guard('clearExpired', async () => {
        let removed = 0;
        for await (const keys of connection.scan(recordPattern, SCAN_COUNT)) {
          // One script per key: in a Cluster each key may sit in another slot.
          await Promise.all(
            keys.map(async (redisKey) => {
              const [result, owner, version] = await callList(
                scripts.clear,
                [redisKey],
                [String(now)],
              );
              if (result !== 1) return;
              removed++;
              if (typeof owner === 'string') {
                // `<prefix>{<key>}` -> `<key>`
                await disown(owner, redisKey.slice(prefix.length + 1, -1), version ?? 0);
              }
            }),
          );
        }
        return removed;
      });
    },

    listByOwner(owner) {
      return guard('listByOwner', () => listOwned(owner));
    },

    destroyByOwner(owner, exceptKey) {
      return guard('destroyByOwner', async () => {
        const listed = await listOwned(owner);
        let removed = 0;
        await Promise.all(
          listed
            .filter(({ key }) => key !== exceptKey)
            .map(async ({ key }) => {
              // Only while `owner` still holds it: a session that changed
              // hands since the listing is not this owner's to end.
              const [live, , version] = await callList(
                scripts.destroy,
                [recordKey(key)],
                ['1', owner, String(Date.now())],
              );
              if (live === 1) removed++;
              if (version != null) await disown(owner, key, version);
            }),
        );
        return removed;
      });
    },

    async close() {
      if (closed) return;
      closed = true;
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
        return (await run(scripts.lock, [lockKey(key)], [token, ttl])) === 1;
      });
    },

    unlock(key, token) {
      return guard('unlock', async () => {
        await run(scripts.unlock, [lockKey(key)], [token]);
      });
    },
  };
}

function nativeExpiry(expiresAt: number): string {
  return String(Math.ceil(expiresAt) + EXPIRY_MARGIN_MS);
}

/** What the store needs from a client, whichever driver it comes from. */
interface Connection {
  hmget(key: string, fields: readonly string[]): Promise<(string | null | undefined)[]>;
  evalsha(sha: string, keys: string[], args: string[]): Promise<unknown>;
  eval(lua: string, keys: string[], args: string[]): Promise<unknown>;
  /** Batches of keys matching `pattern`, on every master of a Cluster. */
  scan(pattern: string, count: number): AsyncIterable<string[]>;
}

// The slices of each driver's API the store calls, so it depends on their
// shape rather than on their classes.
interface IORedisLike {
  hmget(key: string, ...fields: string[]): Promise<(string | null)[]>;
  evalsha(sha: string, numKeys: number, ...args: string[]): Promise<unknown>;
  eval(lua: string, numKeys: number, ...args: string[]): Promise<unknown>;
  scan(
    cursor: string,
    match: 'MATCH',
    pattern: string,
    count: 'COUNT',
    n: number,
  ): Promise<[string, string[]]>;
  ping(): Promise<string>;
  status?: string;
  isCluster?: boolean;
  nodes?(role: 'master'): IORedisLike[];
  options?: { keyPrefix?: string; redisOptions?: { keyPrefix?: string } };
}

interface NodeRedisLike {
  hmGet(key: string, fields: string[]): Promise<(string | null)[]>;
  evalSha(sha: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  eval(lua: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  scan(
    cursor: string,
    options: { MATCH: string; COUNT: number },
  ): Promise<{ cursor: string | number; keys: string[] }>;
  masters?: unknown[];
  nodeClient?(node: unknown): Promise<NodeRedisLike> | NodeRedisLike;
}

function wrapClient(client: RedisStoreClient): Connection {
  const shape = client as unknown as Record<string, unknown> | null;
  if (typeof shape === 'object' && shape !== null) {
    if (typeof shape.evalsha === 'function' && typeof shape.hmget === 'function') {
      const ioredis = client as unknown as IORedisLike;
      const keyPrefix = ioredis.options?.keyPrefix || ioredis.options?.redisOptions?.keyPrefix;
      if (keyPrefix) {
        throw new ConfigError(
          'redis store: the ioredis client has a keyPrefix, which SCAN does not apply; use the store prefix option instead',
        );
      }
      return ioredisConnection(ioredis);
    }
    if (typeof shape.evalSha === 'function' && typeof shape.hmGet === 'function') {
      return nodeRedisConnection(client as unknown as NodeRedisLike);
    }
  }
  throw new ConfigError(
    'redis store: client must be an ioredis Redis or Cluster, or a node-redis v5 client or cluster',
  );
}

function ioredisConnection(client: IORedisLike | Redis): Connection {
  const c = client as IORedisLike;
  return {
    hmget: (key, fields) => c.hmget(key, ...fields),
    evalsha: (sha, keys, args) => c.evalsha(sha, keys.length, ...keys, ...args),
    eval: (lua, keys, args) => c.eval(lua, keys.length, ...keys, ...args),
    async *scan(pattern, count) {
      if (c.isCluster && c.status !== 'ready') {
        // A Cluster lists its masters only once it has loaded the slot map:
        // any command waits for that (or fails as the client is set to).
        await c.ping();
      }
      const nodes = c.isCluster && c.nodes ? c.nodes('master') : [c];
      for (const node of nodes) {
        let cursor = '0';
        do {
          const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', count);
          cursor = next;
          if (keys.length > 0) yield keys;
        } while (cursor !== '0');
      }
    },
  };
}

function nodeRedisConnection(client: NodeRedisLike): Connection {
  return {
    hmget: (key, fields) => client.hmGet(key, [...fields]),
    evalsha: (sha, keys, args) => client.evalSha(sha, { keys, arguments: args }),
    eval: (lua, keys, args) => client.eval(lua, { keys, arguments: args }),
    async *scan(pattern, count) {
      const nodes =
        client.masters && client.nodeClient
          ? await Promise.all(client.masters.map((master) => client.nodeClient!(master)))
          : [client];
      for (const node of nodes) {
        let cursor = '0';
        do {
          const reply = await node.scan(cursor, { MATCH: pattern, COUNT: count });
          cursor = String(reply.cursor);
          if (reply.keys.length > 0) yield reply.keys;
        } while (cursor !== '0');
      }
    },
  };
}

type IORedisModule = typeof import('ioredis');

// Loaded here rather than imported at the top, so importing this module (or
// the package index) never needs the optional driver.
function connectUrl(url: string, onError: (err: Error) => void): Redis {
  const require = createRequire(import.meta.url);
  let driver: IORedisModule;
  try {
    driver = require('ioredis') as IORedisModule;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') {
      throw new ConfigError(
        'redis store needs the ioredis package to connect from a url: npm install ioredis@5 (or pass a node-redis client)',
      );
    }
    throw err;
  }
  const client = new driver.Redis(url, {
    // Fail fast while Redis is unreachable, so requests get a 503 at once
    // instead of waiting in a queue: a command is rejected at the first
    // failed (re)connection, and commands in flight when the connection
    // drops are rejected rather than sent twice.
    maxRetriesPerRequest: 0,
    connectTimeout: 2_000,
    commandTimeout: 5_000,
    retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
  });
  // Without a listener ioredis logs every failed reconnection; the error is
  // reported to callers through the commands that fail.
  client.on('error', onError);
  return client;
}
