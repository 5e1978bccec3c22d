import { createRequire } from 'node:module';
import { userInfo } from 'node:os';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Pool, QueryResult, QueryResultRow } from 'pg';
import { ConfigError, StoreUnavailableError } from '../errors.js';
import type { OwnedRecord, SessionStore, StoredSession, UpdateResult } from '../store.js';

/** Queries on a Pool the store creates fail after this long (Redis's commandTimeout is alike). */
const QUERY_TIMEOUT_MS = 5_000;

export interface PostgresStoreOptions {
  /**
   * A `pg` Pool to run queries on, configured as you like (TLS, pool size,
   * timeouts). The store never ends it: `close()` leaves it to you. Attach
   * your own `pool.on('error', …)` listener, as with any pg Pool, so an idle
   * connection that dies does not crash the process.
   * @default undefined — pass this or `connectionString`
   */
  pool?: Pool;
  /**
   * A connection URL such as `postgres://user@127.0.0.1:5432/app`. The store
   * then creates its own Pool on first use, keeps idle-connection errors from
   * crashing the process, and ends the Pool on `close()`.
   * @default undefined — pass this or `pool`
   */
  connectionString?: string;
  /**
   * The sessions table, optionally schema-qualified (`'auth.sessions'`), with
   * a `<table>_locks` table beside it. Both are created by `migrate()` (or
   * `satchel migrate`), never by the store. The name is spliced into SQL
   * (quoted, so it is case-sensitive), so it must be a plain identifier.
   * @default 'satchel_sessions'
   */
  table?: string;
  /**
   * How many expired rows `clearExpired` deletes per statement; the store
   * yields to the event loop between batches, so a large cleanup never holds
   * row locks or a connection for long.
   * @default 1000
   */
  batchSize?: number;
  /**
   * How long a query waits for a connection from the Pool the store creates
   * before failing with StoreUnavailableError. Short, so requests answer 503
   * quickly while the database is down instead of piling up; they succeed
   * again as soon as it is back. Ignored when `pool` is given. Queries on
   * that Pool also time out after 5 s (a network partition answers 503
   * instead of hanging); give a Pool you pass in a `query_timeout` too.
   * @default 2000
   */
  connectTimeoutMs?: number;
}

/** What `migrate()` needs: where the database is and which table to create. */
export type PostgresMigrateOptions = Pick<
  PostgresStoreOptions,
  'pool' | 'connectionString' | 'table' | 'connectTimeoutMs'
>;

interface Row {
  data: string;
  version: number;
  // BIGINT columns come back from pg as strings.
  expires_at: string;
  created_at: string;
  owner: string | null;
}

const NAME = '[A-Za-z_][A-Za-z0-9_]';
// 52 leaves room for the `_expires_at` suffix within PostgreSQL's 63-byte limit
// on identifiers, which it would otherwise truncate silently.
const TABLE_NAME = new RegExp(`^(?:${NAME}{0,62}\\.)?${NAME}{0,51}$`);
/** pg error code: undefined_table. */
const UNDEFINED_TABLE = '42P01';

/**
 * Keeps sessions in PostgreSQL through `pg`, for several processes or
 * machines sharing one database. Compare-and-set is a single conditional
 * UPDATE on a version column, so no update is lost however many processes
 * write. The table is created by `migrate()` (exported from this module) or
 * the `satchel migrate` command, never on a request; a store used before
 * that answers StoreUnavailableError saying so. `pg` is an optional peer
 * dependency, loaded only when the store has to create its own Pool.
 */
export function postgresStore(options: PostgresStoreOptions): SessionStore {
  const { table, target } = resolveTarget('postgres store', options);
  const batchSize = options.batchSize ?? 1000;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
    throw new ConfigError(
      `postgres store: batchSize must be a positive integer; got ${String(batchSize)}`,
    );
  }

  const ownsPool = options.pool === undefined;
  let pool = options.pool;
  const t = quoteTable(table);
  const locks = quoteTable(`${table}_locks`);
  let closed = false;

  const run = async <R extends QueryResultRow = QueryResultRow>(
    op: string,
    text: string,
    values: unknown[],
  ): Promise<QueryResult<R>> => {
    if (closed) throw new StoreUnavailableError('postgres', 'the store is closed');
    try {
      pool ??= target();
      return await pool.query<R>(text, values);
    } catch (err) {
      throw failure(op, table, err);
    }
  };
  const changed = (result: QueryResult): number => result.rowCount ?? 0;

  const write = (key: string, record: StoredSession): unknown[] => [
    key,
    toText(record.data),
    record.version,
    toMillis(record.expiresAt),
    toMillis(record.createdAt),
    record.owner === undefined ? null : toText(record.owner),
  ];

  return {
    name: 'postgres',

    async get(key) {
      const { rows } = await run<Row>(
        'get',
        `SELECT data, version, expires_at, created_at, owner FROM ${t}
         WHERE key = $1 AND expires_at > $2`,
        [key, Date.now()],
      );
      const row = rows[0];
      return row === undefined ? undefined : toRecord(row);
    },

    // Both run on the owner index: the owner column is stored as toText
    // writes it, so the owner is compared in that form.
    async listByOwner(owner): Promise<OwnedRecord[]> {
      const { rows } = await run<Row & { key: string }>(
        'listByOwner',
        `SELECT key, data, version, expires_at, created_at, owner FROM ${t}
         WHERE owner = $1 AND expires_at > $2`,
        [toText(owner), Date.now()],
      );
      return rows.map((row) => ({ key: row.key, record: toRecord(row) }));
    },

    async destroyByOwner(owner, exceptKey) {
      const result = await run(
        'destroyByOwner',
        `DELETE FROM ${t} WHERE owner = $1 AND key IS DISTINCT FROM $2 AND expires_at > $3`,
        [toText(owner), exceptKey ?? null, Date.now()],
      );
      return changed(result);
    },

    async count(now) {
      const result = await run(
        'count',
        `SELECT count(*)::int AS n FROM ${t} WHERE expires_at > $1`,
        [Math.floor(now)],
      );
      return (result.rows[0] as { n: number }).n;
    },

    // Inserts, or replaces a row that has already expired; no change when a
    // live row holds the key.
    async create(key, record) {
      const result = await run(
        'create',
        `INSERT INTO ${t} AS s (key, data, version, expires_at, created_at, owner)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (key) DO UPDATE SET
           data = EXCLUDED.data, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at,
           created_at = EXCLUDED.created_at, owner = EXCLUDED.owner
         WHERE s.expires_at <= $7`,
        [...write(key, record), Date.now()],
      );
      return changed(result) === 1;
    },

    async update(key, record, expectedVersion): Promise<UpdateResult> {
      const now = Date.now();
      // Under READ COMMITTED a concurrent writer of the same row makes this
      // UPDATE wait and then re-check the WHERE on the newest row, so exactly
      // one of several callers expecting the same version wins.
      const result = await run(
        'update',
        `UPDATE ${t} SET data = $2, version = $3, expires_at = $4, created_at = $5, owner = $6
         WHERE key = $1 AND version = $7 AND expires_at > $8`,
        [...write(key, record), expectedVersion, now],
      );
      if (changed(result) === 1) return 'ok';
      const { rows } = await run(
        'update',
        `SELECT 1 FROM ${t} WHERE key = $1 AND expires_at > $2`,
        [key, now],
      );
      return rows.length === 0 ? 'missing' : 'conflict';
    },

    async touch(key, expiresAt) {
      await run('touch', `UPDATE ${t} SET expires_at = $2 WHERE key = $1 AND expires_at > $3`, [
        key,
        toMillis(expiresAt),
        Date.now(),
      ]);
    },

    async destroy(key) {
      await run('destroy', `DELETE FROM ${t} WHERE key = $1`, [key]);
    },

    async clearExpired(now = Date.now()) {
      // Rounded down, so a fractional cutoff never removes a live row.
      const cutoff = Math.floor(now);
      let removed = 0;
      for (;;) {
        // ctid = ANY(ARRAY(...)) runs as a TID scan. A row touched or updated
        // between the two scans has a new ctid and is left alone; the outer
        // expiry check is a second guard.
        const result = await run(
          'clearExpired',
          `DELETE FROM ${t}
           WHERE ctid = ANY(ARRAY(SELECT ctid FROM ${t} WHERE expires_at <= $1 LIMIT $2))
             AND expires_at <= $1`,
          [cutoff, batchSize],
        );
        removed += changed(result);
        if (changed(result) < batchSize) break;
        await yieldToEventLoop();
      }
      // Locks go by the wall clock even when asked to clear ahead of it: a
      // held lock is never broken early.
      await run('clearExpired', `DELETE FROM ${locks} WHERE expires_at <= $1`, [
        Math.min(cutoff, Date.now()),
      ]);
      return removed;
    },

    async close() {
      if (closed) return;
      closed = true;
      if (!ownsPool || pool === undefined) return;
      try {
        await pool.end();
      } catch (err) {
        throw failure('close', table, err);
      }
    },

    // Takes the lock when it is free, expired, or already held by this token.
    async lock(key, token, ttlMs) {
      const now = Date.now();
      const result = await run(
        'lock',
        `INSERT INTO ${locks} AS l (key, token, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
         WHERE l.expires_at <= $4 OR l.token = EXCLUDED.token`,
        [key, toText(token), toMillis(now + ttlMs), now],
      );
      return changed(result) === 1;
    },

    async unlock(key, token) {
      await run('unlock', `DELETE FROM ${locks} WHERE key = $1 AND token = $2`, [
        key,
        toText(token),
      ]);
    },
  };
}

function toRecord(row: Row): StoredSession {
  const record: StoredSession = {
    data: fromText(row.data),
    version: row.version,
    expiresAt: Number(row.expires_at),
    createdAt: Number(row.created_at),
  };
  if (row.owner !== null) record.owner = fromText(row.owner);
  return record;
}

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
function resolveTarget(
  what: string,
  options: PostgresMigrateOptions,
): { table: string; target: (max?: number) => Pool } {
  const table = options.table ?? 'satchel_sessions';
  const connectTimeoutMs = options.connectTimeoutMs ?? 2000;
  if (!TABLE_NAME.test(table)) {
    throw new ConfigError(
      `${what}: table must be a plain identifier of at most 52 characters, optionally schema-qualified (schema.table); got ${JSON.stringify(table)}`,
    );
  }
  if (!Number.isSafeInteger(connectTimeoutMs) || connectTimeoutMs < 1) {
    throw new ConfigError(
      `${what}: connectTimeoutMs must be a positive integer; got ${String(connectTimeoutMs)}`,
    );
  }
  const { pool, connectionString } = options;
  if (pool !== undefined && connectionString !== undefined) {
    throw new ConfigError(`${what}: pass either pool or connectionString, not both`);
  }
  if (pool === undefined && (typeof connectionString !== 'string' || connectionString === '')) {
    throw new ConfigError(`${what}: pass a pg Pool as pool, or a connectionString`);
  }
  // Loaded now, so a missing driver is a ConfigError at creation; the Pool
  // itself (which connects lazily anyway) is made on first use.
  const Driver = pool === undefined ? loadDriver() : undefined;
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
function withDefaultUser(connectionString: string): string {
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

function quoteTable(table: string): string {
  return table
    .split('.')
    .map((part) => `"${part}"`)
    .join('.');
}

// BIGINT refuses fractions. Rounding up keeps `expiresAt > now` exactly as
// true or false as before for the whole-millisecond `now` the store compares with.
function toMillis(ms: number): number {
  return Math.ceil(ms);
}

// PostgreSQL text cannot hold NUL. A string with a NUL, or one starting with
// the mark, is stored as the mark followed by the string with each mark
// doubled and each NUL written as mark + '0'. Every other string, JSON above
// all (which never contains a raw NUL), is stored as it is.
const MARK = '\u0001';

function toText(value: string): string {
  if (!value.includes('\u0000') && !value.startsWith(MARK)) return value;
  return MARK + value.replaceAll(MARK, MARK + MARK).replaceAll('\u0000', `${MARK}0`);
}

function fromText(stored: string): string {
  if (!stored.startsWith(MARK)) return stored;
  // Split on the doubled marks first: what is left holds only mark + '0' pairs.
  return stored
    .slice(1)
    .split(MARK + MARK)
    .map((part) => part.replaceAll(`${MARK}0`, '\u0000'))
    .join(MARK);
}

function failure(op: string, table: string, cause: unknown): StoreUnavailableError {
  if ((cause as { code?: unknown } | null)?.code === UNDEFINED_TABLE) {
    return new StoreUnavailableError(
      'postgres',
      `${op} failed: table ${table} does not exist; create it with migrate() from satchel/stores/postgres or by running \`satchel migrate\``,
      cause,
    );
  }
  return new StoreUnavailableError('postgres', `${op} failed: ${detail(cause)}`, cause);
}

function detail(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // A refused connection to a name with several addresses is an AggregateError
  // with an empty message; its code says what happened.
  if (err.message !== '') return err.message;
  const code = (err as NodeJS.ErrnoException).code;
  return code ?? err.name;
}

type Driver = typeof import('pg');

// Loaded here rather than imported at the top, so importing this module (or
// the package index) never needs the optional driver.
function loadDriver(): Driver {
  const require = createRequire(import.meta.url);
  try {
    return require('pg') as Driver;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') {
      throw new ConfigError('postgres store needs the pg package: npm install pg@8');
    }
    throw err;
  }
}
