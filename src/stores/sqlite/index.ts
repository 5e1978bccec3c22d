import type BetterSqlite3 from 'better-sqlite3';
import { ConfigError } from '../../errors.js';
import {
  type ClearExpiredOptions,
  forwardingTo,
  type SessionStore,
  type StoredSession,
  type SyncAccess,
} from '../../store.js';
import { checkOptions, openGuard, positiveInteger, positiveNumber } from '../kit.js';
import { type CacheSize, clearExpiredRows, largerCacheWhileClearing } from './clear.js';
import {
  adapt,
  type Connection,
  chooseDriver,
  driverOf,
  type NodeSqliteDatabase,
  openConnection,
  type SqliteDriver,
  type Statement,
  unavailable,
} from './driver.js';

export type { NodeSqliteDatabase, SqliteDriver } from './driver.js';

export interface SqliteStoreOptions {
  /**
   * The database file, created if absent — readable and writable by this
   * user only (0600), and SQLite gives its -wal and -shm files the same mode,
   * so other local users cannot read sessions (or their owners) from disk.
   * An existing file keeps its mode. `':memory:'` keeps everything in this
   * connection only. A plain path: `file:` URIs are refused, because the two
   * drivers read them differently. Ignored when `database` is given.
   * @default 'satchel-sessions.db' (in the current working directory)
   */
  path?: string;
  /**
   * Which SQLite driver opens `path`: `'node:sqlite'`, built into Node.js
   * 22.13 and later (nothing to install or compile), or `'better-sqlite3'`,
   * the optional peer dependency (`npm install better-sqlite3@12`), for
   * Node.js 20. Asking for one that is not available is a ConfigError.
   * With `database`, the driver is the one that opened it.
   * @default 'node:sqlite' where this Node.js has it, 'better-sqlite3' elsewhere
   */
  driver?: SqliteDriver;
  /**
   * An open database to use instead of opening `path`: a better-sqlite3
   * `Database` or a `node:sqlite` `DatabaseSync`. The store leaves its
   * settings alone (journal mode, busy timeout, cache size, temp_store: see
   * the README for the ones the store sets on its own), except that
   * `clearExpired` enlarges its page cache while it runs; and it does not
   * close it on `close()`.
   * @default undefined
   */
  database?: BetterSqlite3.Database | NodeSqliteDatabase;
  /**
   * The sessions table, created if absent, with a `<table>_locks` table beside
   * it. It is spliced into SQL, so it must be a plain identifier.
   * @default 'satchel_sessions'
   */
  table?: string;
  /**
   * How many expired rows one `clearExpired` DELETE statement removes. A
   * batch (see `batchMs`) runs as many of these as fit in its time.
   * @default 500
   */
  batchSize?: number;
  /**
   * How long, in milliseconds, `clearExpired` keeps deleting in one
   * transaction before it commits, reports progress and yields to the event
   * loop. Each transaction rewrites every index page it touched, so longer
   * batches clear a large backlog several times faster; but for that long
   * they hold SQLite's write lock (other writers wait) and this process's
   * event loop.
   * @default 100
   */
  batchMs?: number;
}

const KNOWN: (keyof SqliteStoreOptions)[] = [
  'path',
  'driver',
  'database',
  'table',
  'batchSize',
  'batchMs',
];

// Names other SQLite session stores (connect-sqlite3, better-sqlite3-session-store) use.
const HINTS: Record<string, string> = {
  db: 'pass the database file as path (or an open database as database)',
  dir: 'pass the folder and file name together as path',
  filename: 'use path',
  client: 'pass an open database as database',
};

/** A SQLite session store, with every optional capability; `driver` says which driver it runs on. */
export type SqliteStore = SessionStore &
  Required<Pick<SessionStore, 'lock' | 'unlock' | 'listByOwner' | 'destroyByOwner' | 'count'>> & {
    readonly driver: SqliteDriver;
  };

interface Row {
  data: string;
  version: number;
  expires_at: number;
  created_at: number;
  owner: string | null;
}

interface WriteParams {
  key: string;
  data: string;
  version: number;
  expiresAt: number;
  createdAt: number;
  owner: string | null;
  now: number;
}

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const CACHE_KIB = 16_000;

/**
 * Keeps sessions in a SQLite database, in WAL mode so readers never wait for
 * the writer. Several processes on one machine may share the file. It runs on
 * `node:sqlite` where Node.js has it (22.13+) and on better-sqlite3 (an
 * optional peer dependency, loaded only when this factory runs) on Node.js 20.
 */
/** The store's options checked, its database opened and its tables and statements ready. */
function openSqlite(options: SqliteStoreOptions | undefined) {
  const given = checkOptions('sqlite', options, KNOWN, HINTS);
  const table = given.table ?? 'satchel_sessions';
  const batchSize = positiveInteger('sqlite store: ', 'batchSize', given.batchSize ?? 500);
  const batchMs = positiveNumber('sqlite store: ', 'batchMs', given.batchMs ?? 100);
  if (!TABLE_NAME.test(table)) {
    throw new ConfigError(
      `sqlite store: table must be a plain identifier matching ${TABLE_NAME}; got ${JSON.stringify(table)}`,
    );
  }
  if (given.path !== undefined && given.database !== undefined) {
    throw new ConfigError('sqlite store: pass either path or database, not both');
  }
  const path = given.path ?? 'satchel-sessions.db';
  if (typeof path !== 'string' || path.startsWith('file:')) {
    throw new ConfigError(
      `sqlite store: path must be a file path (file: URIs are not supported); got ${JSON.stringify(path)}`,
    );
  }

  const ownsDatabase = given.database === undefined;
  let db: Connection;
  if (given.database === undefined) {
    db = openConnection(path, chooseDriver(given.driver), given.driver !== undefined);
  } else {
    const driver = driverOf(given.database);
    if (given.driver !== undefined && chooseDriver(given.driver) !== driver) {
      throw new ConfigError(
        `sqlite store: driver is '${given.driver}' but database was opened by ${driver}`,
      );
    }
    db = adapt(given.database);
  }

  let statements: Statements;
  let cache: CacheSize;
  try {
    if (ownsDatabase) {
      // First: node:sqlite waits 0 ms for a lock by default, and switching to WAL (or
      // recovering the WAL of a process that was killed) needs one another process may hold.
      db.exec('PRAGMA busy_timeout = 5000');
      db.exec('PRAGMA journal_mode = WAL');
      db.exec('PRAGMA synchronous = NORMAL');
      // The same on both drivers: better-sqlite3's 16 MB page cache (node:sqlite
      // defaults to 2 MB), and statement journals in memory (node:sqlite's build
      // writes them to a temporary file, which made clearExpired's DELETEs 2.5x slower).
      db.exec(`PRAGMA cache_size = -${CACHE_KIB}`);
      db.exec('PRAGMA temp_store = MEMORY');
    }
    db.exec(`
      CREATE TABLE IF NOT EXISTS "${table}" (
        key TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        version INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        owner TEXT
      );
      CREATE INDEX IF NOT EXISTS "${table}_expires_at" ON "${table}" (expires_at);
      CREATE INDEX IF NOT EXISTS "${table}_owner" ON "${table}" (owner);
      CREATE TABLE IF NOT EXISTS "${table}_locks" (
        key TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      );
    `);
    statements = prepareStatements(db, table);
    cache = largerCacheWhileClearing(db);
  } catch (err) {
    if (ownsDatabase) db.close();
    throw unavailable(`cannot set up table ${table}`, err);
  }

  return { batchSize, batchMs, ownsDatabase, db, statements, cache };
}

export function sqliteStore(options?: SqliteStoreOptions): SqliteStore {
  const { batchSize, batchMs, ownsDatabase, db, statements, cache } = openSqlite(options);
  const guard = openGuard('sqlite');
  const run = <T>(op: string, fn: () => T): T => {
    guard.check();
    try {
      return fn();
    } catch (err) {
      throw unavailable(`${op} failed`, err);
    }
  };

  const params = (key: string, record: StoredSession, now: number): WriteParams => ({
    key,
    data: record.data,
    version: record.version,
    expiresAt: record.expiresAt,
    createdAt: record.createdAt,
    owner: record.owner ?? null,
    now,
  });

  // better-sqlite3 and node:sqlite are synchronous: the core may call these directly.
  const sync: SyncAccess = {
    get(key) {
      const row = run('get', () => statements.get.get(key, Date.now()) as Row | undefined);
      return row === undefined ? undefined : toRecord(row);
    },

    update(key, record, expectedVersion) {
      const write = { ...params(key, record, Date.now()), expectedVersion };
      // A conflict and a missing row look the same to the UPDATE (no change);
      // one transaction tells them apart consistently. Most saves keep the
      // owner, the creation time and (within touchInterval) the expiry:
      // `updateBody` then assigns no indexed column, `updateData` only the
      // expiry, so the owner index is left alone (17 % fewer instructions
      // for a load and save, bench/RESULTS.md run 6) and, mostly, the expiry
      // index too (run 7). Each runs only when the one before changed nothing.
      return run('update', () =>
        db.transaction(() => {
          if (Number(statements.updateBody.run(write).changes) === 1) return 'ok';
          if (Number(statements.updateData.run(write).changes) === 1) return 'ok';
          if (Number(statements.update.run(write).changes) === 1) return 'ok';
          return statements.exists.get(key, write.now) === undefined ? 'missing' : 'conflict';
        }),
      );
    },
  };

  return {
    name: 'sqlite',
    driver: db.driver,
    ...forwardingTo(sync),

    async count(now) {
      return run('count', () => (statements.count.get(now) as { n: number }).n);
    },

    async listByOwner(owner) {
      const rows = run(
        'listByOwner',
        () => statements.byOwner.all(owner, Date.now()) as (Row & { key: string })[],
      );
      return rows.map((row) => ({ key: row.key, record: toRecord(row) }));
    },

    async destroyByOwner(owner, exceptKey) {
      return run('destroyByOwner', () =>
        Number(statements.destroyByOwner.run(owner, exceptKey ?? '', Date.now()).changes),
      );
    },

    async create(key, record) {
      return run(
        'create',
        () => Number(statements.create.run(params(key, record, Date.now())).changes) === 1,
      );
    },

    async touch(key, expiresAt) {
      run('touch', () => statements.touch.run(expiresAt, key, Date.now()));
    },

    async destroy(key) {
      run('destroy', () => statements.destroy.run(key));
    },

    clearExpired: (now = Date.now(), opts?: ClearExpiredOptions) =>
      clearExpiredRows({ db, statements, cache, batchSize, batchMs, run, guard }, now, opts),

    async close() {
      if (!guard.close()) return;
      if (!ownsDatabase) return;
      try {
        db.close();
      } catch (err) {
        throw unavailable('close failed', err);
      }
    },

    async lock(key, token, ttlMs) {
      const now = Date.now();
      return run(
        'lock',
        () =>
          Number(statements.lock.run({ key, token, expiresAt: now + ttlMs, now }).changes) === 1,
      );
    },

    async unlock(key, token) {
      run('unlock', () => statements.unlock.run(key, token));
    },
  };
}

function toRecord(row: Row): StoredSession {
  const record: StoredSession = {
    data: row.data,
    version: row.version,
    expiresAt: row.expires_at,
    createdAt: row.created_at,
  };
  if (row.owner !== null) record.owner = row.owner;
  return record;
}

function prepareStatements(db: Connection, table: string) {
  const t = `"${table}"`;
  const locksTable = `"${table}_locks"`;
  const s = (sql: string): Statement => db.prepare(sql);
  return {
    get: s(
      `SELECT data, version, expires_at, created_at, owner FROM ${t} WHERE key = ? AND expires_at > ?`,
    ),
    // Inserts, or replaces a row that has already expired; no change when a
    // live row holds the key.
    create: s(
      `INSERT INTO ${t} (key, data, version, expires_at, created_at, owner)
       VALUES (@key, @data, @version, @expiresAt, @createdAt, @owner)
       ON CONFLICT (key) DO UPDATE SET
         data = excluded.data, version = excluded.version, expires_at = excluded.expires_at,
         created_at = excluded.created_at, owner = excluded.owner
       WHERE ${t}.expires_at <= @now`,
    ),
    update: s(
      `UPDATE ${t} SET data = @data, version = @version, expires_at = @expiresAt,
         created_at = @createdAt, owner = @owner
       WHERE key = @key AND version = @expectedVersion AND expires_at > @now`,
    ),
    // The same compare-and-set for a save that keeps the owner and creation
    // time: SQLite maintains an index whenever its column is assigned, even
    // to the value it holds, so these are not assigned here.
    updateData: s(
      `UPDATE ${t} SET data = @data, version = @version, expires_at = @expiresAt
       WHERE key = @key AND version = @expectedVersion AND expires_at > @now
         AND owner IS @owner AND created_at = @createdAt`,
    ),
    // ...and for one that also keeps the expiry: no indexed column assigned.
    updateBody: s(
      `UPDATE ${t} SET data = @data, version = @version
       WHERE key = @key AND version = @expectedVersion AND expires_at > @now
         AND expires_at = @expiresAt AND owner IS @owner AND created_at = @createdAt`,
    ),
    count: s(`SELECT count(*) AS n FROM ${t} WHERE expires_at > ?`),
    countExpired: s(`SELECT count(*) AS n FROM ${t} WHERE expires_at <= ?`),
    byOwner: s(
      `SELECT key, data, version, expires_at, created_at, owner FROM ${t} WHERE owner = ? AND expires_at > ?`,
    ),
    destroyByOwner: s(`DELETE FROM ${t} WHERE owner = ? AND key <> ? AND expires_at > ?`),
    exists: s(`SELECT 1 FROM ${t} WHERE key = ? AND expires_at > ?`),
    touch: s(`UPDATE ${t} SET expires_at = ? WHERE key = ? AND expires_at > ?`),
    destroy: s(`DELETE FROM ${t} WHERE key = ?`),
    clearBatch: s(
      `DELETE FROM ${t} WHERE rowid IN (SELECT rowid FROM ${t} WHERE expires_at <= ? LIMIT ?)`,
    ),
    // Takes the lock when it is free, expired, or already held by this token.
    lock: s(
      `INSERT INTO ${locksTable} (key, token, expires_at) VALUES (@key, @token, @expiresAt)
       ON CONFLICT (key) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
       WHERE ${locksTable}.expires_at <= @now OR ${locksTable}.token = excluded.token`,
    ),
    unlock: s(`DELETE FROM ${locksTable} WHERE key = ? AND token = ?`),
    clearLocks: s(`DELETE FROM ${locksTable} WHERE expires_at <= ?`),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;
