import { statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { resolve } from 'node:path';
import type { Pool } from 'pg';
import { SatchelError, StoreUnavailableError } from '../errors.js';
import type { CookieStore, SessionStore } from '../store.js';
import { loadPeer } from '../stores/kit.js';
import { didYouMean } from '../validate.js';

/** The environment variables the `satchel` CLI and the example app read. */
export interface StoreEnv {
  /** Which store: `sqlite` (default), `file`, `memory`, `redis`, `postgres`, `cached` or `cookie`. */
  SATCHEL_STORE?: string | undefined;
  /** The SQLite database file. Default `./satchel-sessions.db`. */
  SATCHEL_SQLITE_PATH?: string | undefined;
  /** The file store's folder (Django's SESSION_FILE_PATH). Default: the OS temp folder. */
  SATCHEL_FILE_PATH?: string | undefined;
  /** Redis to connect to. Default `redis://127.0.0.1:6379`. */
  SATCHEL_REDIS_URL?: string | undefined;
  /** Put before every Redis key. Default `satchel:`. */
  SATCHEL_REDIS_PREFIX?: string | undefined;
  /** PostgreSQL to connect to. Default `postgres://127.0.0.1:5432/postgres`. */
  SATCHEL_DATABASE_URL?: string | undefined;
  /** The PostgreSQL sessions table. Default `satchel_sessions`. */
  SATCHEL_DATABASE_TABLE?: string | undefined;
  /** The durable store behind the `cached` store: `postgres` (default), `sqlite` or `file`. */
  SATCHEL_CACHED_STORE?: string | undefined;
  /** The cache in front of the `cached` store: `memory` (default, per process) or `redis`. */
  SATCHEL_CACHE?: string | undefined;
  /** How long a cached copy answers reads, in ms. Default 5000 for `memory`, unbounded for `redis`. */
  SATCHEL_CACHE_TTL_MS?: string | undefined;
  /** The cookie store's keys, comma-separated, each ≥ 32 characters; the first seals. */
  SATCHEL_SECRET?: string | undefined;
  [name: string]: string | undefined;
}

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

/** Where `satchel migrate` creates the postgres store's tables. */
export interface MigrationTarget {
  url: string;
  table: string;
  /** `url` with any password masked, for logs. */
  shownUrl: string;
}

export interface MigrationReport extends MigrationTarget {
  /** What this run created, e.g. `table satchel_sessions`; empty when all was in place. */
  created: string[];
}

/**
 * The environment selects or configures a store wrongly: a usage error
 * (exit 2), reported in one line that names the variable.
 */
export class StoreEnvError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreEnvError';
  }
}

/** SATCHEL_STORE names something this build does not know: a usage error (exit 2), not a crash. */
export class UnknownStoreError extends StoreEnvError {
  constructor(
    readonly storeName: string,
    source = 'SATCHEL_STORE',
  ) {
    const near = didYouMean(storeName.trim(), storeNames());
    super(
      `unknown ${source} ${JSON.stringify(storeName)}; ${near ? `did you mean "${near}"? ` : ''}expected one of: ${storeNames().join(', ')}`,
    );
    this.name = 'UnknownStoreError';
  }
}

export const DEFAULT_STORE = 'sqlite';
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
export const DEFAULT_DATABASE_URL = 'postgres://127.0.0.1:5432/postgres';
export const DEFAULT_DATABASE_TABLE = 'satchel_sessions';
export const DEFAULT_CACHED_STORE = 'postgres';
export const DEFAULT_CACHE = 'memory';
/** A per-process memory cache re-reads the shared durable store after this long. */
export const DEFAULT_MEMORY_CACHE_TTL_MS = 5_000;
/** How long the CLI waits for a first answer from Redis or PostgreSQL before reporting it unreachable. */
export const CONNECT_TIMEOUT_MS = 2_000;

type Opened = Omit<StoreChoice, 'name'>;
type StoreFactory = (env: StoreEnv, open: Required<OpenOptions>) => Promise<Opened>;

// Each entry imports its store only when chosen, so a store whose driver is an
// optional peer dependency (redis, postgres) costs nothing to the others.
// A new store plugs in as one more entry here.
const factories: Record<string, StoreFactory> = {
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

/** Durable stores the `cached` store may sit in front of. */
const CACHED_DURABLE = ['postgres', 'sqlite', 'file'];
const CACHES = ['memory', 'redis'];

/** The store names `storeFromEnv` accepts. */
export function storeNames(): string[] {
  return Object.keys(factories);
}

/** The store SATCHEL_STORE selects (default `sqlite`), normalized; UnknownStoreError otherwise. */
export function selectedStore(env: StoreEnv): string {
  const name = (env.SATCHEL_STORE || DEFAULT_STORE).trim().toLowerCase();
  if (!Object.hasOwn(factories, name)) throw new UnknownStoreError(env.SATCHEL_STORE ?? '');
  return name;
}

/**
 * Opens the store the environment selects: `SATCHEL_STORE` (default
 * `sqlite`) and that store's own variables. A missing or malformed variable,
 * or options the store refuses, throw StoreEnvError (UnknownStoreError for an
 * unknown name); a store that cannot be opened throws its own satchel error.
 * Stores with a server connect lazily or in the background: a service that
 * is down shows up as StoreUnavailableError on first use, not here. With
 * `create: false`, a missing SQLite file or file-store folder is a
 * StoreEnvError naming the path, and nothing is created.
 */
export async function storeFromEnv(env: StoreEnv, options: OpenOptions = {}): Promise<StoreChoice> {
  const name = selectedStore(env);
  try {
    return { name, ...(await factories[name]!(env, { create: options.create ?? true })) };
  } catch (err) {
    // Options built from the environment that the store refuses (a bad table
    // name, a prefix with braces, a missing driver) are the environment's fault.
    if (SatchelError.is(err) && err.code === 'ERR_SATCHEL_CONFIG') {
      throw new StoreEnvError(err.message.replace(/^\[satchel\] /, ''));
    }
    throw err;
  }
}

/**
 * The PostgreSQL table the selected store needs (`postgres`, or `cached` in
 * front of postgres), or undefined when it needs none. Opens nothing.
 */
export function migrationFromEnv(env: StoreEnv): MigrationTarget | undefined {
  const name = selectedStore(env);
  if (name === 'postgres') return postgresTarget(env);
  if (name === 'cached' && cachedDurableName(env) === 'postgres') return postgresTarget(env);
  return undefined;
}

/**
 * Runs the postgres store's `migrate()` on `target` and reports what it
 * created (the sessions table, its two indexes, the locks table). Safe to
 * run again: then nothing is created. Throws StoreUnavailableError when the
 * database cannot be reached, StoreEnvError when the table name is refused.
 */
export async function runMigration(target: MigrationTarget): Promise<MigrationReport> {
  const { migrate, postgresStore } = await import('../stores/postgres.js');
  try {
    // Validates the table name and loads the driver, without connecting.
    await postgresStore({ connectionString: target.url, table: target.table }).close();
  } catch (err) {
    if (SatchelError.is(err) && err.code === 'ERR_SATCHEL_CONFIG') {
      throw new StoreEnvError(err.message.replace(/^\[satchel\] /, ''));
    }
    throw err;
  }
  const pg = loadPeer<typeof import('pg')>('postgres', 'pg', 'npm install pg');
  const pool: Pool = new pg.Pool({
    connectionString: withDefaultUser(target.url),
    // An unreachable database is reported in about 2 s, not after a TCP timeout.
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    max: 1,
    allowExitOnIdle: true,
  });
  pool.on('error', () => {});
  const dot = target.table.lastIndexOf('.');
  const schema = dot === -1 ? '' : `"${target.table.slice(0, dot)}".`;
  const bare = target.table.slice(dot + 1);
  const objects = [
    ['table', bare],
    ['index', `${bare}_expires_at`],
    ['index', `${bare}_owner`],
    ['table', `${bare}_locks`],
  ] as const;
  const present = async (): Promise<boolean[]> => {
    const { rows } = await pool.query<{ found: boolean }>(
      'SELECT to_regclass(name) IS NOT NULL AS found FROM unnest($1::text[]) WITH ORDINALITY AS t(name, n) ORDER BY n',
      [objects.map(([, name]) => `${schema}"${name}"`)],
    );
    return rows.map((row) => row.found);
  };
  try {
    let before: boolean[];
    try {
      before = await present();
    } catch (err) {
      throw new StoreUnavailableError(
        'postgres',
        `migrate failed: ${describeError(err)} (${target.shownUrl})`,
        err,
      );
    }
    await migrate({ pool, table: target.table });
    const created = objects.filter((_, i) => !before[i]).map(([kind, name]) => `${kind} ${name}`);
    return { ...target, created };
  } finally {
    await pool.end().catch(() => {});
  }
}

/** What `runMigration` did, for a log line: `created table …, index …` or `already up to date`. */
export function migrationSummary(report: MigrationReport): string {
  return report.created.length === 0
    ? 'already up to date, nothing created'
    : `created ${report.created.join(', ')}`;
}

function redisTarget(env: StoreEnv): { url: string; prefix: string } {
  const url = env.SATCHEL_REDIS_URL || DEFAULT_REDIS_URL;
  if (!/^rediss?:\/\//i.test(url)) {
    throw new StoreEnvError(
      `SATCHEL_REDIS_URL must be a redis:// or rediss:// URL; got ${JSON.stringify(maskUrl(url))}`,
    );
  }
  return { url, prefix: env.SATCHEL_REDIS_PREFIX || 'satchel:' };
}

function postgresTarget(env: StoreEnv): MigrationTarget {
  const url = env.SATCHEL_DATABASE_URL || DEFAULT_DATABASE_URL;
  if (!/^postgres(ql)?:\/\//i.test(url)) {
    throw new StoreEnvError(
      `SATCHEL_DATABASE_URL must be a postgres:// or postgresql:// URL; got ${JSON.stringify(maskUrl(url))}`,
    );
  }
  return {
    url,
    table: env.SATCHEL_DATABASE_TABLE || DEFAULT_DATABASE_TABLE,
    shownUrl: maskUrl(url),
  };
}

function cachedDurableName(env: StoreEnv): string {
  const name = (env.SATCHEL_CACHED_STORE || DEFAULT_CACHED_STORE).trim().toLowerCase();
  if (!CACHED_DURABLE.includes(name)) {
    throw new StoreEnvError(
      `unknown SATCHEL_CACHED_STORE ${JSON.stringify(env.SATCHEL_CACHED_STORE)}; expected one of: ${CACHED_DURABLE.join(', ')}`,
    );
  }
  return name;
}

function cacheNameOf(env: StoreEnv): string {
  const name = (env.SATCHEL_CACHE || DEFAULT_CACHE).trim().toLowerCase();
  if (!CACHES.includes(name)) {
    throw new StoreEnvError(
      `unknown SATCHEL_CACHE ${JSON.stringify(env.SATCHEL_CACHE)}; expected one of: ${CACHES.join(', ')}`,
    );
  }
  return name;
}

function cacheTtl(env: StoreEnv, cache: string): number | undefined {
  const text = env.SATCHEL_CACHE_TTL_MS;
  if (text === undefined || text === '') {
    // A memory cache is per process, while the durable store is shared: bound
    // how long it may serve a copy another process has since changed.
    return cache === 'memory' ? DEFAULT_MEMORY_CACHE_TTL_MS : undefined;
  }
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw new StoreEnvError(
      `SATCHEL_CACHE_TTL_MS must be a positive whole number of milliseconds; got ${JSON.stringify(text)}`,
    );
  }
  return Number(text);
}

function cookieSecrets(env: StoreEnv): string[] {
  const hint = 'generate one with: satchel keygen';
  const secrets = (env.SATCHEL_SECRET ?? '')
    .split(',')
    .map((secret) => secret.trim())
    .filter((secret) => secret !== '');
  if (secrets.length === 0) {
    throw new StoreEnvError(
      `the cookie store needs SATCHEL_SECRET: one or more comma-separated keys of at least 32 characters, the first one sealing (${hint})`,
    );
  }
  secrets.forEach((secret, i) => {
    if (secret.length < 32) {
      const which = secrets.length === 1 ? 'SATCHEL_SECRET' : `key ${i + 1} of SATCHEL_SECRET`;
      // Never the key itself, which may be a real secret with a typo.
      throw new StoreEnvError(
        `${which} is ${secret.length} characters; each key needs at least 32 (${hint})`,
      );
    }
  });
  return secrets;
}

/**
 * Query parameters whose values stay visible in `maskUrl`: connection
 * settings that help to read a log and hold no secret. Every other query
 * value is masked, since a driver may take a password or a token from any
 * parameter (`?password=`, `?sslpassword=`, `?token=`, `?auth=`, …).
 */
const PLAIN_QUERY_PARAMS = new Set([
  'application_name',
  'connect_timeout',
  'db',
  'family',
  'host',
  'port',
  'sslmode',
  'tls',
  'options',
  'target_session_attrs',
]);

/**
 * `url` for logs and pages: the password in the userinfo and every query
 * value but a few harmless connection settings replaced by `***`. A string
 * that is not a URL is masked the same way by pattern.
 */
export function maskUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url
      .replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@')
      .replace(/([?&][^=&#]+)=[^&#]*/g, (match, name: string) =>
        PLAIN_QUERY_PARAMS.has(name.slice(1).toLowerCase()) ? match : `${name}=***`,
      );
  }
  if (parsed.password !== '') parsed.password = '***';
  // Rebuilt by hand: URLSearchParams would percent-encode the `***`.
  if (parsed.search !== '') {
    const query = parsed.search
      .slice(1)
      .split('&')
      .map((pair) => {
        const eq = pair.indexOf('=');
        if (eq === -1) return pair;
        const name = pair.slice(0, eq);
        return PLAIN_QUERY_PARAMS.has(safeDecode(name).toLowerCase()) ? pair : `${name}=***`;
      })
      .join('&');
    parsed.search = `?${query}`;
  }
  if (parsed.hash !== '') parsed.hash = '***';
  return parsed.toString();
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text;
  }
}

/**
 * Refuses a missing `path` (or one of the wrong kind) with a StoreEnvError
 * naming it: a command that should only read or clean a store never creates one.
 */
function mustExist(kind: 'file' | 'folder', path: string, what: string, variable: string): void {
  const option = `--${variable
    .replace(/^SATCHEL_/, '')
    .toLowerCase()
    .replaceAll('_', '-')}`;
  const shown = resolve(path) === path ? path : `${path} (${resolve(path)})`;
  let isFolder: boolean;
  try {
    isFolder = statSync(path).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') return; // the store reports it
    throw new StoreEnvError(
      `no ${what} at ${shown}: check ${variable} or ${option} (this command creates nothing; the app creates the ${kind} on first use)`,
    );
  }
  if (isFolder !== (kind === 'folder')) {
    throw new StoreEnvError(
      `the ${what} ${shown} is a ${isFolder ? 'folder' : 'file'}, not a ${kind}: check ${variable} or ${option}`,
    );
  }
}

// As the postgres store does: pg takes the user from the URL, PGUSER or USER;
// where none is set (a service or container without USER), connect as the OS
// user, as psql does.
function withDefaultUser(connectionString: string): string {
  if (process.env.PGUSER || process.env.USER) return connectionString;
  try {
    const url = new URL(connectionString);
    if (url.username !== '' || url.host === '') return connectionString;
    url.username = encodeURIComponent(userInfo().username);
    return url.toString();
  } catch {
    return connectionString;
  }
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // A refused connection to a name with several addresses is an AggregateError
  // with an empty message; its code says what happened.
  return err.message || (err as NodeJS.ErrnoException).code || err.name;
}
