/**
 * The stores with compare-and-set, each as a "kit": `open()` gives another
 * store over the same backing data (another "process" as far as the store
 * can tell), and `cleanup()` removes everything the kit made. Redis,
 * PostgreSQL and cached are loaded only when their files exist (other parts
 * of the project add them), and only when their service answers.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SessionStore } from '../../../src/store.js';
import { memoryStore } from '../../../src/stores/memory.js';
import { sqliteStore } from '../../../src/stores/sqlite.js';
import { CI, type Gate, gate, STRESS_FULL } from './env.js';
import { importStore, openSpec, type StoreSpec, storeFileExists } from './spec.js';

export { importStore, storeFileExists };

export const REDIS_PORT = 6379;
export const POSTGRES_PORT = 5432;

export interface StoreKit {
  name: string;
  /** Another store over the same backing data. */
  open(): Promise<SessionStore>;
  /** Removes every record, table, key and folder the kit made. */
  cleanup(): Promise<void>;
  /** The same store as plain data, for child processes; absent for the memory store. */
  spec?: StoreSpec;
}

export function tempDir(label: string): string {
  return mkdtempSync(join(tmpdir(), `satchel-${label}-`));
}

export function unique(label: string): string {
  return `${label}_${process.pid}_${randomBytes(4).toString('hex')}`;
}

/**
 * `store` with some methods replaced; the rest are forwarded (bound), so it
 * works for stores made of classes as well as of plain objects.
 */
export function override(store: SessionStore, replaced: Partial<SessionStore>): SessionStore {
  return new Proxy(store, {
    get(target, prop) {
      if (Object.hasOwn(replaced, prop))
        return (replaced as Record<string | symbol, unknown>)[prop];
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** Counts compare-and-set outcomes, to show the merge-and-retry path really ran. */
export interface CasCounts {
  updates: number;
  conflicts: number;
  missing: number;
}

export function countingCas(store: SessionStore, counts: CasCounts): SessionStore {
  return override(store, {
    update: async (key, record, expected) => {
      const result = await store.update(key, record, expected);
      counts.updates++;
      if (result === 'conflict') counts.conflicts++;
      if (result === 'missing') counts.missing++;
      return result;
    },
  });
}

const pause = () =>
  new Promise<void>((resolve) => {
    if (Math.random() < 0.9) setImmediate(resolve);
    else setTimeout(resolve, 1);
  });

/**
 * Yields before every store call (now and then for a whole millisecond), as
 * a store across the network would. The memory and SQLite stores answer
 * within the same tick, so without it one request's load and commit never
 * interleave with another's and the compare-and-set conflicts this suite is
 * about would not happen.
 */
export function withLatency(store: SessionStore): SessionStore {
  const delayed =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      await pause();
      return fn(...args);
    };
  return override(store, {
    get: delayed((key) => store.get(key)),
    create: delayed((key, record) => store.create(key, record)),
    update: delayed((key, record, expected) => store.update(key, record, expected)),
    destroy: delayed((key) => store.destroy(key)),
  });
}

export function memoryKit(): StoreKit {
  const store = memoryStore({ maxEntries: 1_000_000 });
  // One store shared by every "process": the managers are still separate.
  const shared = withLatency(override(store, { close: async () => {} }));
  return {
    name: 'memory',
    open: async () => shared,
    cleanup: () => store.close(),
  };
}

/**
 * A folder for the embedded stores' files. The default run keeps them on
 * tmpfs (/dev/shm) when there is one, so fsync does not dominate a test
 * about concurrency (durability is test/crash's business); the full run and
 * `SATCHEL_STRESS_DISK=1` use the real disk.
 */
export function stressDir(label: string): string {
  const onDisk = STRESS_FULL || process.env.SATCHEL_STRESS_DISK === '1';
  const root = !onDisk && existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  return mkdtempSync(join(root, `satchel-${label}-`));
}

export function sqliteKit(): StoreKit {
  const dir = stressDir('sqlite');
  const spec: StoreSpec = { kind: 'sqlite', path: join(dir, 'sessions.db') };
  return {
    name: 'sqlite',
    spec,
    open: async () => withLatency(await openSpec(spec)),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

export function fileKit(): StoreKit {
  const dir = stressDir('file');
  const spec: StoreSpec = { kind: 'file', dir };
  return {
    name: 'file',
    spec,
    open: () => openSpec(spec),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Deletes every Redis key under `prefix` (SCAN + UNLINK, never FLUSHDB). */
export async function dropRedisPrefix(prefix: string, port = REDIS_PORT): Promise<void> {
  const { Redis } = await import('ioredis');
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await client.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    client.disconnect();
  }
}

/** A Redis store under a unique prefix; `port` may be a proxy in front of Redis. */
export async function redisKit(port = REDIS_PORT): Promise<StoreKit> {
  const prefix = `${unique('satchel-stress')}:`;
  const spec: StoreSpec = { kind: 'redis', url: `redis://127.0.0.1:${port}`, prefix };
  return {
    name: 'redis',
    spec,
    open: () => openSpec(spec),
    cleanup: () => dropRedisPrefix(prefix),
  };
}

/**
 * A throwaway 3-master Redis Cluster (started on spare ports, stopped by
 * cleanup); every open() is an ioredis Cluster client the kit closes.
 */
export async function redisClusterKit(): Promise<StoreKit> {
  const { startRedisCluster } = await import('../../support/redis-cluster.js');
  const { redisStore } = await importStore('redis');
  const { Cluster } = (await import('ioredis')).default;
  const cluster = await startRedisCluster(3);
  const clients: InstanceType<typeof Cluster>[] = [];
  const prefix = `${unique('satchel-stress')}:`;
  return {
    name: 'redis cluster',
    open: async () => {
      const client = new Cluster(cluster.nodes, { redisOptions: { maxRetriesPerRequest: 0 } });
      client.on('error', () => {});
      clients.push(client);
      return redisStore({ client, prefix }) as SessionStore;
    },
    cleanup: async () => {
      for (const client of clients) client.disconnect();
      await cluster.stop();
    },
  };
}

export function postgresUrl(port = POSTGRES_PORT): string {
  const base = new URL(process.env.SATCHEL_DATABASE_URL || 'postgres://127.0.0.1:5432/postgres');
  base.port = String(port);
  // pg falls back to $PGUSER, then $USER, which minimal containers leave unset.
  if (base.username === '' && !process.env.PGUSER && !process.env.USER) base.username = 'postgres';
  return base.toString();
}

/** A PostgreSQL store on a unique table (migrated here, dropped by cleanup); `port` may be a proxy. */
export async function postgresKit(port = POSTGRES_PORT): Promise<StoreKit> {
  const { migrate } = await importStore('postgres');
  const pg = (await import('pg')).default;
  const table = unique('satchel_stress');
  const admin = new pg.Pool({ connectionString: postgresUrl(), max: 1 });
  admin.on('error', () => {});
  await migrate({ pool: admin, table });
  const spec: StoreSpec = { kind: 'postgres', url: postgresUrl(port), table };
  return {
    name: 'postgres',
    spec,
    open: () => openSpec(spec),
    cleanup: async () => {
      await admin.query(`DROP TABLE IF EXISTS "${table}"`);
      await admin.query(`DROP TABLE IF EXISTS "${table}_locks"`);
      await admin.end();
    },
  };
}

/**
 * Django's cached_db: a memory cache in front of SQLite. Every "process"
 * shares the one cache, as the cached store's documentation asks (with a
 * cache per process, a read may be served from a stale copy; no write is
 * lost either way, which the suite checks against the durable store).
 */
export async function cachedKit(): Promise<StoreKit> {
  const { cachedStore } = await importStore('cached');
  const dir = stressDir('cached');
  const path = join(dir, 'sessions.db');
  const cache = memoryStore({ maxEntries: 1_000_000 });
  const sharedCache = override(cache, { close: async () => {} });
  const quiet = { warn: () => {} };
  return {
    name: 'cached (memory in front of sqlite)',
    open: async () =>
      cachedStore({
        cache: withLatency(sharedCache),
        store: withLatency(sqliteStore({ path })),
        logger: quiet,
      }) as SessionStore,
    cleanup: async () => {
      await cache.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A store that can run here, made only when its suite starts (`make`, in a
 * beforeAll), so a suite that is filtered out leaves no folder or table behind.
 */
export interface KitEntry {
  name: string;
  /** Child processes can open it (all but the memory store); `embedded`: SQLite or file. */
  shared: 'no' | 'embedded' | 'server';
  make(): Promise<StoreKit>;
}

export type KitOrSkip = { name: string; entry: KitEntry } | { name: string; gate: Gate };

export async function allKits(): Promise<KitOrSkip[]> {
  const kits: KitOrSkip[] = [
    { name: 'memory', entry: { name: 'memory', shared: 'no', make: async () => memoryKit() } },
    {
      name: 'sqlite',
      entry: { name: 'sqlite', shared: 'embedded', make: async () => sqliteKit() },
    },
    { name: 'file', entry: { name: 'file', shared: 'embedded', make: async () => fileKit() } },
  ];
  const redis = await gate('redis', storeFileExists('redis'), { name: 'Redis', port: REDIS_PORT });
  kits.push(
    redis.run
      ? { name: 'redis', entry: { name: 'redis', shared: 'server', make: () => redisKit() } }
      : { name: 'redis', gate: redis },
  );
  const missingServer = await (await import('../../support/redis-cluster.js')).redisServerMissing();
  kits.push(
    redis.run && missingServer === undefined
      ? {
          name: 'redis cluster',
          entry: { name: 'redis cluster', shared: 'no', make: () => redisClusterKit() },
        }
      : {
          name: 'redis cluster',
          gate: redis.run ? { run: false, reason: missingServer ?? '', fail: CI } : redis,
        },
  );
  const postgres = await gate('postgres', storeFileExists('postgres'), {
    name: 'PostgreSQL',
    port: POSTGRES_PORT,
  });
  kits.push(
    postgres.run
      ? {
          name: 'postgres',
          entry: { name: 'postgres', shared: 'server', make: () => postgresKit() },
        }
      : { name: 'postgres', gate: postgres },
  );
  const cached = await gate('cached', storeFileExists('cached'), undefined);
  kits.push(
    cached.run
      ? {
          name: 'cached',
          entry: {
            name: 'cached (memory in front of sqlite)',
            shared: 'no',
            make: () => cachedKit(),
          },
        }
      : { name: 'cached', gate: cached },
  );
  return kits;
}
