import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Cluster, Redis } from 'ioredis';
import { ConfigError, StoreUnavailableError } from '../errors.js';
import type { SessionStore, StoredSession, UpdateResult } from '../store.js';

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
   * session's record and its lock always live in one slot. The prefix itself
   * must not contain braces, or every session would hash to one slot.
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

const scripts = {
  // 1 created; 0 a live record holds the key. An expired record still inside
  // the margin is overwritten.
  create: script(`${RECORD_HELPERS}
if live() then return 0 end
write()
return 1`),
  // 1 ok, 0 conflict, -1 missing.
  update: script(`${RECORD_HELPERS}
if not live() then return -1 end
if tonumber(redis.call('HGET', KEYS[1], 'version')) ~= tonumber(ARGV[9]) then return 0 end
write()
return 1`),
  // ARGV: 1 now, 2 expiresAt, 3 native expiry.
  touch: script(`${RECORD_HELPERS}
if not live() then return 0 end
redis.call('HSET', KEYS[1], 'expiresAt', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1`),
  // ARGV: 1 cutoff. Deletes the record if it expires at or before the cutoff.
  clear: script(`
local expiresAt = redis.call('HGET', KEYS[1], 'expiresAt')
if expiresAt and tonumber(expiresAt) <= tonumber(ARGV[1]) then
  redis.call('UNLINK', KEYS[1])
  return 1
end
return 0`),
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

  const run = async (s: Script, keys: string[], args: string[]): Promise<number> => {
    try {
      return Number(await connection.evalsha(s.sha, keys, args));
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('NOSCRIPT'))) throw err;
      // EVAL runs the script and caches it on that node for the next EVALSHA.
      return Number(await connection.eval(s.lua, keys, args));
    }
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
        const [data, version, expiresAt, createdAt, owner] = await connection.hmget(
          recordKey(key),
          FIELDS,
        );
        if (data == null || version == null || expiresAt == null || createdAt == null) {
          return undefined;
        }
        if (!(Number(expiresAt) > Date.now())) return undefined;
        const record: StoredSession = {
          data,
          version: Number(version),
          expiresAt: Number(expiresAt),
          createdAt: Number(createdAt),
        };
        if (owner != null) record.owner = owner;
        return record;
      });
    },

    create(key, record) {
      return guard(
        'create',
        async () =>
          (await run(scripts.create, [recordKey(key)], writeArgs(record, Date.now()))) === 1,
      );
    },

    update(key, record, expectedVersion) {
      return guard('update', async (): Promise<UpdateResult> => {
        const args = [...writeArgs(record, Date.now()), String(expectedVersion)];
        const result = await run(scripts.update, [recordKey(key)], args);
        return result === 1 ? 'ok' : result === 0 ? 'conflict' : 'missing';
      });
    },

    touch(key, expiresAt) {
      return guard('touch', async () => {
        const args = [String(Date.now()), String(expiresAt), nativeExpiry(expiresAt)];
        await run(scripts.touch, [recordKey(key)], args);
      });
    },

    destroy(key) {
      return guard('destroy', async () => {
        await connection.unlink(recordKey(key));
      });
    },

    clearExpired(now = Date.now()) {
      return guard('clearExpired', async () => {
        let removed = 0;
        for await (const keys of connection.scan(recordPattern, SCAN_COUNT)) {
          // One script per key: in a Cluster each key may sit in another slot.
          const results = await Promise.all(
            keys.map((key) => run(scripts.clear, [key], [String(now)])),
          );
          for (const result of results) removed += result;
        }
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
  unlink(key: string): Promise<unknown>;
  /** Batches of keys matching `pattern`, on every master of a Cluster. */
  scan(pattern: string, count: number): AsyncIterable<string[]>;
}

// The slices of each driver's API the store calls, so it depends on their
// shape rather than on their classes.
interface IORedisLike {
  hmget(key: string, ...fields: string[]): Promise<(string | null)[]>;
  evalsha(sha: string, numKeys: number, ...args: string[]): Promise<unknown>;
  eval(lua: string, numKeys: number, ...args: string[]): Promise<unknown>;
  unlink(key: string): Promise<number>;
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
  unlink(key: string): Promise<number>;
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
    unlink: (key) => c.unlink(key),
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
    unlink: (key) => client.unlink(key),
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
