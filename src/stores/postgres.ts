import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Pool, QueryResult, QueryResultRow } from 'pg';
import type {
  ClearExpiredOptions,
  OwnedRecord,
  SessionStore,
  StoredSession,
  UpdateResult,
} from '../store.js';
import { checkOptions, openGuard, positiveInteger } from './kit.js';
import { failure, quoteTable, type Row, toMillis, toRecord, toText } from './postgres/sql.js';
import { resolveTarget } from './postgres/target.js';

export { migrate } from './postgres/target.js';

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

const KNOWN: (keyof PostgresStoreOptions)[] = [
  'pool',
  'connectionString',
  'table',
  'batchSize',
  'connectTimeoutMs',
];
const HINTS = {
  url: 'the option is "connectionString" (or pass a pg Pool as pool)',
  schema: 'qualify the table instead: table: "schema.sessions"',
};

/** What `migrate()` needs: where the database is and which table to create. */
export type PostgresMigrateOptions = Pick<
  PostgresStoreOptions,
  'pool' | 'connectionString' | 'table' | 'connectTimeoutMs'
>;

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
  const given = checkOptions('postgres', options, KNOWN, HINTS);
  const { table, target } = resolveTarget('postgres store', given);
  const batchSize = positiveInteger('postgres store: ', 'batchSize', given.batchSize ?? 1000);

  const ownsPool = given.pool === undefined;
  let pool = given.pool;
  const guard = openGuard('postgres');

  const run = async <R extends QueryResultRow = QueryResultRow>(
    op: string,
    text: string,
    values: unknown[],
  ): Promise<QueryResult<R>> => {
    guard.check();
    try {
      pool ??= target();
      return await pool.query<R>(text, values);
    } catch (err) {
      throw failure(op, table, err);
    }
  };
  const ctx: Context = {
    run,
    t: quoteTable(table),
    locks: quoteTable(`${table}_locks`),
    batchSize,
  };

  return {
    name: 'postgres',
    ...recordMethods(ctx),
    ...ownerMethods(ctx),
    ...lockMethods(ctx),
    clearExpired: (now = Date.now(), opts?: ClearExpiredOptions) => clearExpired(ctx, now, opts),

    async close() {
      if (!guard.close()) return;
      if (!ownsPool || pool === undefined) return;
      try {
        await pool.end();
      } catch (err) {
        throw failure('close', table, err);
      }
    },
  };
}

/** What the store's queries share. */
interface Context {
  run<R extends QueryResultRow = QueryResultRow>(
    op: string,
    text: string,
    values: unknown[],
  ): Promise<QueryResult<R>>;
  /** The sessions table, quoted. */
  t: string;
  /** The locks table, quoted. */
  locks: string;
  batchSize: number;
}

const changed = (result: QueryResult): number => result.rowCount ?? 0;

const write = (key: string, record: StoredSession): unknown[] => [
  key,
  toText(record.data),
  record.version,
  toMillis(record.expiresAt),
  toMillis(record.createdAt),
  record.owner === undefined ? null : toText(record.owner),
];

/** get, create, update, touch and destroy. */
function recordMethods({
  run,
  t,
}: Context): Pick<SessionStore, 'get' | 'create' | 'update' | 'touch' | 'destroy'> {
  return {
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
  };
}

/** listByOwner, destroyByOwner and count. */
function ownerMethods({
  run,
  t,
}: Context): Required<Pick<SessionStore, 'listByOwner' | 'destroyByOwner' | 'count'>> {
  return {
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
  };
}

/** The application lock (`lock: true`), in the `<table>_locks` table. */
function lockMethods({ run, locks }: Context): Required<Pick<SessionStore, 'lock' | 'unlock'>> {
  return {
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

/**
 * Deletes expired rows `batchSize` at a time, yielding between batches and
 * reporting progress after each (with the total, counted first, only when
 * someone listens), then the expired locks.
 */
async function clearExpired(
  { run, t, locks, batchSize }: Context,
  now: number,
  options: ClearExpiredOptions | undefined,
): Promise<number> {
  // Rounded down, so a fractional cutoff never removes a live row.
  const cutoff = Math.floor(now);
  const onProgress = options?.onProgress;
  let total: number | undefined;
  if (onProgress !== undefined) {
    const counted = await run<{ n: number }>(
      'clearExpired',
      `SELECT count(*)::int AS n FROM ${t} WHERE expires_at <= $1`,
      [cutoff],
    );
    total = counted.rows[0]?.n;
  }
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
    onProgress?.(total === undefined ? { removed } : { removed, total });
    if (changed(result) < batchSize) break;
    await yieldToEventLoop();
  }
  // Locks go by the wall clock even when asked to clear ahead of it: a
  // held lock is never broken early.
  await run('clearExpired', `DELETE FROM ${locks} WHERE expires_at <= $1`, [
    Math.min(cutoff, Date.now()),
  ]);
  return removed;
}
