import { createRequire } from 'node:module';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type Database from 'better-sqlite3';
import { ConfigError, StoreUnavailableError } from '../errors.js';
import type { SessionStore, StoredSession, UpdateResult } from '../store.js';

export interface SqliteStoreOptions {
  /**
   * The database file, created if absent; `':memory:'` keeps everything in
   * this connection only. Ignored when `database` is given.
   * @default 'satchel-sessions.db' (in the current working directory)
   */
  path?: string;
  /**
   * An open better-sqlite3 `Database` to use instead of opening `path`. The
   * store leaves its pragmas alone and does not close it on `close()`.
   * @default undefined
   */
  database?: Database.Database;
  /**
   * The sessions table, created if absent, with a `<table>_locks` table beside
   * it. It is spliced into SQL, so it must be a plain identifier.
   * @default 'satchel_sessions'
   */
  table?: string;
  /**
   * How many expired rows `clearExpired` deletes per statement; the store
   * yields to the event loop between batches, so a large cleanup never holds
   * the write lock or the event loop for long.
   * @default 1000
   */
  batchSize?: number;
}

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

/**
 * Keeps sessions in a SQLite database through better-sqlite3, in WAL mode so
 * readers never wait for the writer. Several processes on one machine may
 * share the file. better-sqlite3 is an optional peer dependency, loaded only
 * when this factory runs.
 */
export function sqliteStore(options: SqliteStoreOptions = {}): SessionStore {
  const path = options.path ?? 'satchel-sessions.db';
  const table = options.table ?? 'satchel_sessions';
  const batchSize = options.batchSize ?? 1000;
  if (!TABLE_NAME.test(table)) {
    throw new ConfigError(
      `sqlite store: table must be a plain identifier matching ${TABLE_NAME}; got ${JSON.stringify(table)}`,
    );
  }
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
    throw new ConfigError(
      `sqlite store: batchSize must be a positive integer; got ${String(batchSize)}`,
    );
  }
  if (options.path !== undefined && options.database !== undefined) {
    throw new ConfigError('sqlite store: pass either path or database, not both');
  }

  const ownsDatabase = options.database === undefined;
  let db: Database.Database;
  if (options.database === undefined) {
    const Driver = loadDriver();
    try {
      db = new Driver(path);
    } catch (err) {
      throw unavailable(`cannot open ${path}`, err);
    }
  } else {
    db = options.database;
  }

  const t = `"${table}"`;
  const locksTable = `"${table}_locks"`;
  let statements: Statements;
  try {
    if (ownsDatabase) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('busy_timeout = 5000');
    }
    db.exec(`
      CREATE TABLE IF NOT EXISTS ${t} (
        key TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        version INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        owner TEXT
      );
      CREATE INDEX IF NOT EXISTS "${table}_expires_at" ON ${t} (expires_at);
      CREATE INDEX IF NOT EXISTS "${table}_owner" ON ${t} (owner);
      CREATE TABLE IF NOT EXISTS ${locksTable} (
        key TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      );
    `);
    statements = prepareStatements(db, table);
  } catch (err) {
    if (ownsDatabase) db.close();
    throw unavailable(`cannot set up table ${table}`, err);
  }

  // A conflict and a missing row look the same to the UPDATE (no change);
  // one transaction tells them apart consistently.
  const updateTx = db.transaction((params: WriteParams & { expectedVersion: number }) => {
    if (statements.update.run(params).changes === 1) return 'ok';
    return statements.exists.get(params.key, params.now) === undefined ? 'missing' : 'conflict';
  });

  let closed = false;
  const guard = <T>(op: string, fn: () => T): T => {
    if (closed) throw new StoreUnavailableError('sqlite', 'the store is closed');
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

  return {
    name: 'sqlite',

    async get(key) {
      const row = guard('get', () => statements.get.get(key, Date.now()));
      return row === undefined ? undefined : toRecord(row);
    },

    async count(now) {
      return guard('count', () => (statements.count.get(now) as { n: number }).n);
    },

    async listByOwner(owner) {
      const rows = guard('listByOwner', () => statements.byOwner.all(owner, Date.now()));
      return rows.map((row) => ({ key: row.key, record: toRecord(row) }));
    },

    async destroyByOwner(owner, exceptKey) {
      return guard(
        'destroyByOwner',
        () => statements.destroyByOwner.run(owner, exceptKey ?? '', Date.now()).changes,
      );
    },

    async create(key, record) {
      return guard(
        'create',
        () => statements.create.run(params(key, record, Date.now())).changes === 1,
      );
    },

    async update(key, record, expectedVersion): Promise<UpdateResult> {
      return guard('update', () =>
        updateTx({ ...params(key, record, Date.now()), expectedVersion }),
      );
    },

    async touch(key, expiresAt) {
      guard('touch', () => statements.touch.run(expiresAt, key, Date.now()));
    },

    async destroy(key) {
      guard('destroy', () => statements.destroy.run(key));
    },

    async clearExpired(now = Date.now()) {
      let removed = 0;
      for (;;) {
        const changes = guard(
          'clearExpired',
          () => statements.clearBatch.run(now, batchSize).changes,
        );
        removed += changes;
        if (changes < batchSize) break;
        await yieldToEventLoop();
      }
      guard('clearExpired', () => statements.clearLocks.run(now));
      return removed;
    },

    async close() {
      if (closed) return;
      closed = true;
      if (!ownsDatabase) return;
      try {
        db.close();
      } catch (err) {
        throw unavailable('close failed', err);
      }
    },

    async lock(key, token, ttlMs) {
      const now = Date.now();
      return guard(
        'lock',
        () => statements.lock.run({ key, token, expiresAt: now + ttlMs, now }).changes === 1,
      );
    },

    async unlock(key, token) {
      guard('unlock', () => statements.unlock.run(key, token));
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

function prepareStatements(db: Database.Database, table: string) {
  const t = `"${table}"`;
  const locksTable = `"${table}_locks"`;
  const s = <P extends unknown[] | object, R = unknown>(sql: string) =>
    db.prepare<P, R>(sql).safeIntegers(false);
  return {
    get: s<[string, number], Row>(
      `SELECT data, version, expires_at, created_at, owner FROM ${t} WHERE key = ? AND expires_at > ?`,
    ),
    // Inserts, or replaces a row that has already expired; no change when a
    // live row holds the key.
    create: s<WriteParams>(
      `INSERT INTO ${t} (key, data, version, expires_at, created_at, owner)
       VALUES (@key, @data, @version, @expiresAt, @createdAt, @owner)
       ON CONFLICT (key) DO UPDATE SET
         data = excluded.data, version = excluded.version, expires_at = excluded.expires_at,
         created_at = excluded.created_at, owner = excluded.owner
       WHERE ${t}.expires_at <= @now`,
    ),
    update: s<WriteParams & { expectedVersion: number }>(
      `UPDATE ${t} SET data = @data, version = @version, expires_at = @expiresAt,
         created_at = @createdAt, owner = @owner
       WHERE key = @key AND version = @expectedVersion AND expires_at > @now`,
    ),
    count: s<[number], { n: number }>(`SELECT count(*) AS n FROM ${t} WHERE expires_at > ?`),
    byOwner: s<[string, number], Row & { key: string }>(
      `SELECT key, data, version, expires_at, created_at, owner FROM ${t} WHERE owner = ? AND expires_at > ?`,
    ),
    destroyByOwner: s<[string, string, number]>(
      `DELETE FROM ${t} WHERE owner = ? AND key <> ? AND expires_at > ?`,
    ),
    exists: s<[string, number]>(`SELECT 1 FROM ${t} WHERE key = ? AND expires_at > ?`),
    touch: s<[number, string, number]>(
      `UPDATE ${t} SET expires_at = ? WHERE key = ? AND expires_at > ?`,
    ),
    destroy: s<[string]>(`DELETE FROM ${t} WHERE key = ?`),
    clearBatch: s<[number, number]>(
      `DELETE FROM ${t} WHERE rowid IN (SELECT rowid FROM ${t} WHERE expires_at <= ? LIMIT ?)`,
    ),
    // Takes the lock when it is free, expired, or already held by this token.
    lock: s<{ key: string; token: string; expiresAt: number; now: number }>(
      `INSERT INTO ${locksTable} (key, token, expires_at) VALUES (@key, @token, @expiresAt)
       ON CONFLICT (key) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
       WHERE ${locksTable}.expires_at <= @now OR ${locksTable}.token = excluded.token`,
    ),
    unlock: s<[string, string]>(`DELETE FROM ${locksTable} WHERE key = ? AND token = ?`),
    clearLocks: s<[number]>(`DELETE FROM ${locksTable} WHERE expires_at <= ?`),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

type Driver = typeof import('better-sqlite3');

// Loaded here rather than imported at the top, so importing this module (or
// the package index) never needs the optional driver.
function loadDriver(): Driver {
  const require = createRequire(import.meta.url);
  try {
    return require('better-sqlite3') as Driver;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') {
      throw new ConfigError(
        'sqlite store needs the better-sqlite3 package: npm install better-sqlite3@12',
      );
    }
    throw err;
  }
}

function unavailable(message: string, cause: unknown): StoreUnavailableError {
  const detail = cause instanceof Error ? `: ${cause.message}` : '';
  return new StoreUnavailableError('sqlite', `${message}${detail}`, cause);
}
