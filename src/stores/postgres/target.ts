import { userInfo } from 'node:os';
import type { Pool } from 'pg';
import { ConfigError } from '../../errors.js';
import { loadPeer, positiveInteger, rejectUnknownKeys } from '../kit.js';
import type { PostgresMigrateOptions } from '../postgres.js';
import { failure, quoteTable, TABLE_NAME } from './sql.js';

/** Queries on a Pool the store creates fail after this long (Redis's commandTimeout is alike). */
const QUERY_TIMEOUT_MS = 5_000;
const MIGRATE_KNOWN: (keyof PostgresMigrateOptions)[] = [
  'pool',
  'connectionString',
  'table',
  'connectTimeoutMs',
];

/**
 * Creates the sessions table (`key`, `data`, `version`, `expires_at`,
 * `created_at`, `owner`, with indexes on `expires_at` and `owner`) and its
 * `<table>_locks` table, if they do not exist yet. Safe to run again, and from
 * several processes at once (they take turns on an advisory lock). The schema
 * of a schema-qualified table must already exist. The `satchel migrate`
 * command runs this; an app may also run it at start-up.
 *
 * ```ts
 * import { migrate, postgresStore } from 'satchel/stores/postgres';
 * await migrate({ pool });
 * const store = postgresStore({ pool });
 * ```
 */
export async function migrate(options: PostgresMigrateOptions): Promise<void> {
  rejectUnknownKeys('postgres migrate: ', options, MIGRATE_KNOWN);
  const { table, target } = resolveTarget('postgres migrate', options);
  const bare = table.slice(table.lastIndexOf('.') + 1);
  const t = quoteTable(table);
  const pool = options.pool ?? target(1);
  try {
    // One simple-protocol query runs as one transaction, so the advisory lock
    // is held until every statement has run: concurrent CREATE ... IF NOT
    // EXISTS can otherwise fail on PostgreSQL's catalog unique indexes.
    await pool.query(`
      SELECT pg_advisory_xact_lock(hashtext('satchel migrate'));
      CREATE TABLE IF NOT EXISTS ${t} (
        key TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        version INTEGER NOT NULL,
        expires_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        owner TEXT
      );
      CREATE INDEX IF NOT EXISTS "${bare}_expires_at" ON ${t} (expires_at);
      CREATE INDEX IF NOT EXISTS "${bare}_owner" ON ${t} (owner);
      CREATE TABLE IF NOT EXISTS ${quoteTable(`${table}_locks`)} (
        key TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        expires_at BIGINT NOT NULL
      );
    `);
  } catch (err) {
    throw failure('migrate', table, err);
  } finally {
    if (options.pool === undefined) await pool.end().catch(() => {});
  }
}

/** Validates the options shared by the store and `migrate`; returns the table and a Pool maker. */
export function resolveTarget(
  what: string,
  options: PostgresMigrateOptions,
): { table: string; target: (max?: number) => Pool } {
  const table = options.table ?? 'satchel_sessions';
  if (!TABLE_NAME.test(table)) {
    throw new ConfigError(
      `${what}: table must be a plain identifier of at most 52 characters, optionally schema-qualified (schema.table); got ${JSON.stringify(table)}`,
    );
  }
  const connectTimeoutMs = positiveInteger(
    `${what}: `,
    'connectTimeoutMs',
    options.connectTimeoutMs ?? 2000,
  );
  const { pool, connectionString } = options;
  if (pool !== undefined && connectionString !== undefined) {
    throw new ConfigError(`${what}: pass either pool or connectionString, not both`);
  }
  if (pool === undefined && (typeof connectionString !== 'string' || connectionString === '')) {
    throw new ConfigError(`${what}: pass a pg Pool as pool, or a connectionString`);
  }
  // Loaded now, so a missing driver is a ConfigError at creation; the Pool
  // itself (which connects lazily anyway) is made on first use.
  const Driver =
    pool === undefined
      ? loadPeer<typeof import('pg')>('postgres', 'pg', 'npm install pg')
      : undefined;
  const target = (max?: number): Pool => {
    if (Driver === undefined) return pool!;
    const created = new Driver.Pool({
      connectionString: withDefaultUser(connectionString!),
      connectionTimeoutMillis: connectTimeoutMs,
      // A partition (packets dropped, no reset) must end in a 503, not a hang
      // that holds a pooled connection until the network heals.
      query_timeout: QUERY_TIMEOUT_MS,
      keepAlive: true,
      // Idle connections do not keep a CLI run or a test process alive.
      allowExitOnIdle: true,
      ...(max !== undefined && { max }),
    });
    // An idle connection that dies (database restart, network cut) is
    // reported here; without a listener it would crash the process. The Pool
    // drops that connection and the next query opens a new one.
    created.on('error', () => {});
    return created;
  };
  return { table, target };
}

// pg takes the user from the URL, PGUSER or USER. Where none is set (a
// service or container without USER), connect as the OS user, as psql does.
export function withDefaultUser(connectionString: string): string {
  if (process.env.PGUSER || process.env.USER) return connectionString;
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    return connectionString;
  }
  if (url.username !== '' || url.host === '') return connectionString;
  try {
    url.username = encodeURIComponent(userInfo().username);
  } catch {
    return connectionString;
  }
  return url.toString();
}
