import type { Redis } from 'ioredis';
import { ConfigError } from '../../errors.js';
import { loadPeer } from '../kit.js';

/**
 * One small interface over both drivers (ioredis and node-redis), so the
 * store depends on their shape rather than on their classes.
 */

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
export type RedisStoreClient = Redis | import('ioredis').Cluster | NodeRedisClientLike;

/** What the store needs from a client, whichever driver it comes from. */
export interface Connection {
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

export function wrapClient(client: RedisStoreClient): Connection {
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

export function ioredisConnection(client: IORedisLike | Redis): Connection {
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
export function connectUrl(url: string, onError: (err: Error) => void): Redis {
  const driver = loadPeer<IORedisModule>(
    'redis',
    'ioredis',
    'npm install ioredis@5 (or pass a connected node-redis client as client)',
  );
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
