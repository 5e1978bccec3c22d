// Reads the environment into the settings of each store: which store, where
// it lives, its keys. Every mistake is a StoreEnvError naming the variable.
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { secretList } from '../validate.js';
import { SatchelError } from '../errors.js';
import { maskUrl } from './mask.js';

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

/** Where `satchel migrate` creates the postgres store's tables. */
export interface MigrationTarget {
  url: string;
  table: string;
  /** `url` with any password masked, for logs. */
  shownUrl: string;
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

/**
 * Options built from the environment that a store refuses (a bad table name,
 * a prefix with braces, a missing driver) are the environment's fault: such a
 * ConfigError becomes a StoreEnvError; anything else is returned unchanged.
 */
export function asStoreEnvError(err: unknown): unknown {
  if (SatchelError.is(err) && err.code === 'ERR_SATCHEL_CONFIG') {
    return new StoreEnvError(err.message.replace(/^\[satchel\] /, ''));
  }
  return err;
}

export const DEFAULT_STORE = 'sqlite';
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
export const DEFAULT_DATABASE_URL = 'postgres://127.0.0.1:5432/postgres';
export const DEFAULT_DATABASE_TABLE = 'satchel_sessions';
export const DEFAULT_CACHED_STORE = 'postgres';
export const DEFAULT_CACHE = 'memory';
/** A per-process memory cache re-reads the shared durable store after this long. */
export const DEFAULT_MEMORY_CACHE_TTL_MS = 5_000;
/** Durable stores the `cached` store may sit in front of. */
const CACHED_DURABLE = ['postgres', 'sqlite', 'file'];
const CACHES = ['memory', 'redis'];

export function redisTarget(env: StoreEnv): { url: string; prefix: string } {
  const url = env.SATCHEL_REDIS_URL || DEFAULT_REDIS_URL;
  if (!/^rediss?:\/\//i.test(url)) {
    throw new StoreEnvError(
      `SATCHEL_REDIS_URL must be a redis:// or rediss:// URL; got ${JSON.stringify(maskUrl(url))}`,
    );
  }
  return { url, prefix: env.SATCHEL_REDIS_PREFIX || 'satchel:' };
}

export function postgresTarget(env: StoreEnv): MigrationTarget {
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

/** The durable store behind `cached` (SATCHEL_CACHED_STORE), normalized. */
export function cachedDurableName(env: StoreEnv): string {
  return oneOf(env, 'SATCHEL_CACHED_STORE', DEFAULT_CACHED_STORE, CACHED_DURABLE);
}

/** The cache in front of `cached` (SATCHEL_CACHE), normalized. */
export function cacheNameOf(env: StoreEnv): string {
  return oneOf(env, 'SATCHEL_CACHE', DEFAULT_CACHE, CACHES);
}

function oneOf(env: StoreEnv, variable: string, fallback: string, allowed: string[]): string {
  const name = (env[variable] || fallback).trim().toLowerCase();
  if (!allowed.includes(name)) {
    throw new StoreEnvError(
      `unknown ${variable} ${JSON.stringify(env[variable])}; expected one of: ${allowed.join(', ')}`,
    );
  }
  return name;
}

export function cacheTtl(env: StoreEnv, cache: string): number | undefined {
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

export function cookieSecrets(env: StoreEnv): string[] {
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
  try {
    // Never the key itself in a message: it may be a real secret with a typo.
    return secretList('', 'SATCHEL_SECRET', secrets, (i, count) =>
      count === 1 ? 'SATCHEL_SECRET' : `key ${i + 1} of SATCHEL_SECRET`,
    );
  } catch (err) {
    throw asStoreEnvError(err);
  }
}

/**
 * Refuses a missing `path` (or one of the wrong kind) with a StoreEnvError
 * naming it: a command that should only read or clean a store never creates one.
 */
export function mustExist(
  kind: 'file' | 'folder',
  path: string,
  what: string,
  variable: string,
): void {
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
