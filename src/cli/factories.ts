// One entry per store: how to open it from the environment.
import type { CookieStore, SessionStore } from '../store.js';
import { maskUrl } from './mask.js';
import {
  cachedDurableName,
  cacheNameOf,
  cacheTtl,
  cookieSecrets,
  type MigrationTarget,
  mustExist,
  postgresTarget,
  redisTarget,
  type StoreEnv,
} from './targets.js';

export interface StoreChoice {
  /** The store's registry name, e.g. `sqlite`. */
  name: string;
  /** One line for logs and the demo's session panel: the name and where the data lives. */
  description: string;
  store: SessionStore | CookieStore;
  /** The PostgreSQL table this store needs created (`satchel migrate`), if it keeps one. */
  migration?: MigrationTarget;
  /**
   * For a store behind a network connection (redis, postgres, cached over
   * either): where it is, passwords and secret query values masked. The CLI
   * uses it to bound and report the first contact.
   */
  remote?: string;
}

/** How `storeFromEnv` opens the store. */
export interface OpenOptions {
  /**
   * Whether a missing SQLite database file or file-store folder may be
   * created. The app creates them on first use; the CLI's read-only and
   * cleanup commands pass `false`, so a typo in a path is reported instead of
   * creating an empty store and reporting 0.
   * @default true
   */
  create?: boolean;
}

type Opened = Omit<StoreChoice, 'name'>;
type StoreFactory = (env: StoreEnv, open: Required<OpenOptions>) => Promise<Opened>;

// Each entry imports its store only when chosen, so a store whose driver is an
// optional peer dependency (redis, postgres) costs nothing to the others.
// A new store plugs in as one more entry here.
export const factories: Record<string, StoreFactory> = {
  async sqlite(env, open) {
    const { sqliteStore } = await import('../stores/sqlite.js');
    const path = env.SATCHEL_SQLITE_PATH || './satchel-sessions.db';
    if (!open.create) mustExist('file', path, 'SQLite database', 'SATCHEL_SQLITE_PATH');
    return { description: `sqlite (${path})`, store: sqliteStore({ path }) };
  },
  async file(env, open) {
    const { fileStore } = await import('../stores/file.js');
    const { tmpdir } = await import('node:os');
    const dir = env.SATCHEL_FILE_PATH || tmpdir();
    if (!open.create) mustExist('folder', dir, 'file-store folder', 'SATCHEL_FILE_PATH');
    return { description: `file (${dir})`, store: fileStore({ dir }) };
  },
  async memory() {
    const { memoryStore } = await import('../stores/memory.js');
    return {
      description: 'memory (this process only; lost on restart)',
      store: memoryStore(),
    };
  },
  async redis(env) {
    const { url, prefix } = redisTarget(env);
    const { redisStore } = await import('../stores/redis.js');
    return {
      description: `redis (${maskUrl(url)}, prefix ${prefix})`,
      store: redisStore({ url, prefix }),
      remote: maskUrl(url),
    };
  },
  async postgres(env) {
    const target = postgresTarget(env);
    const { postgresStore } = await import('../stores/postgres.js');
    return {
      description: `postgres (${target.shownUrl}, table ${target.table})`,
      store: postgresStore({ connectionString: target.url, table: target.table }),
      migration: target,
      remote: target.shownUrl,
    };
  },
  async cached(env, open) {
    const durableName = cachedDurableName(env);
    const cacheName = cacheNameOf(env);
    const ttlMs = cacheTtl(env, cacheName);
    const { cachedStore } = await import('../stores/cached.js');
    const durable = await factories[durableName]!(env, open);
    let cache: SessionStore;
    try {
      if (cacheName === 'redis') {
        const { url, prefix } = redisTarget(env);
        const { redisStore } = await import('../stores/redis.js');
        // Beside, never among, the records of a redis store with the same prefix.
        cache = redisStore({ url, prefix: `${prefix}cache:` });
      } else {
        const { memoryStore } = await import('../stores/memory.js');
        cache = memoryStore();
      }
    } catch (err) {
      await durable.store.close().catch(() => {});
      throw err;
    }
    const cacheText =
      cacheName === 'redis'
        ? `redis cache at ${maskUrl(redisTarget(env).url)}`
        : 'memory cache in this process';
    const ttlText = ttlMs === undefined ? '' : `, re-read after ${ttlMs} ms`;
    return {
      // `postgres (url, table t)` → `postgres: url, table t`, to keep one level of parentheses.
      description: `cached (${cacheText}${ttlText}, in front of ${durable.description.replace(/ \((.*)\)$/, ': $1')})`,
      store: cachedStore({
        cache,
        store: durable.store as SessionStore,
        ...(ttlMs !== undefined && { cacheTtlMs: ttlMs }),
      }),
      ...(durable.migration !== undefined && { migration: durable.migration }),
      ...((cacheName === 'redis' || durable.remote !== undefined) && {
        remote: [cacheName === 'redis' ? maskUrl(redisTarget(env).url) : '', durable.remote ?? '']
          .filter((where) => where !== '')
          .join(' and '),
      }),
    };
  },
  async cookie(env) {
    const secrets = cookieSecrets(env);
    const { cookieStore } = await import('../stores/cookie.js');
    const keys = secrets.length === 1 ? '1 key' : `${secrets.length} keys`;
    return {
      description: `cookie (AES-256-GCM sealed in the browser, ${keys}; nothing on the server)`,
      store: cookieStore({ secrets }),
    };
  },
};
