import { existsSync } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, SatchelError } from '../errors.js';
import { loadPeer } from '../stores/kit.js';
import { nodeSqlite } from '../stores/sqlite/driver.js';

/**
 * Where Django keeps its sessions, read-only but for `remove`: the `db`
 * backend's `django_session` table (PostgreSQL or SQLite) and the `file`
 * backend's directory. Keys reach these functions already checked to be
 * Django-shaped (32 characters of [a-z0-9]).
 */

/** One stored session as the backend holds it. */
export interface DjangoRecord {
  sessionData: string;
  /** The db backend's `expire_date`, in ms. */
  expireDate?: number;
  /** The file backend's modification time, in ms (Django's expiry counts from it). */
  modifiedAt?: number;
}

export interface DjangoBackend {
  read(key: string): Promise<DjangoRecord | undefined>;
  remove(key: string): Promise<void>;
  close(): Promise<void>;
}

/** The part of a `pg` Pool (or Client) the importer uses. */
export interface DjangoPgQueryable {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

interface DbRow {
  session_data: unknown;
  expire_date: unknown;
}

export function postgresBackend(pool: DjangoPgQueryable, table: string): DjangoBackend {
  const select = `SELECT session_data, expire_date FROM "${table}" WHERE session_key = $1`;
  const remove = `DELETE FROM "${table}" WHERE session_key = $1`;
  return {
    async read(key) {
      const { rows } = await pool.query(select, [key]);
      return record(rows[0] as DbRow | undefined);
    },
    async remove(key) {
      await pool.query(remove, [key]);
    },
    // The pool is the caller's: it is theirs to end.
    async close() {},
  };
}

/** The statements both SQLite drivers (better-sqlite3, node:sqlite) share. */
interface SqliteDatabase {
  prepare(sql: string): { get(...params: unknown[]): unknown; run(...params: unknown[]): unknown };
  exec(sql: string): unknown;
  close(): unknown;
}
type SqliteOpen = (path: string) => SqliteDatabase;

/**
 * Opens the Django database on first use, with better-sqlite3 when it is
 * installed and Node's built-in node:sqlite otherwise (Node 22.13+). The
 * busy timeout is kept short: both drivers wait synchronously, and Django's
 * writes hold the lock for milliseconds.
 */
export function sqliteBackend(
  path: string,
  table: string,
  timeout: number,
  driver?: SqliteDriver,
): DjangoBackend {
  const openDatabase = sqliteDriver(driver);
  let db: SqliteDatabase | undefined;
  let statements:
    | {
        select: ReturnType<SqliteDatabase['prepare']>;
        remove: ReturnType<SqliteDatabase['prepare']>;
      }
    | undefined;
  const ready = () => {
    if (statements) return statements;
    // node:sqlite would create a missing file; a missing Django database is an outage, not an empty one.
    if (!existsSync(path)) throw new Error(`no database file at ${path}`);
    db = openDatabase(path);
    db.exec(`PRAGMA busy_timeout = ${Math.min(timeout, 1000)}`);
    statements = {
      select: db.prepare(`SELECT session_data, expire_date FROM "${table}" WHERE session_key = ?`),
      remove: db.prepare(`DELETE FROM "${table}" WHERE session_key = ?`),
    };
    return statements;
  };
  return {
    async read(key) {
      return record(ready().select.get(key) as DbRow | undefined);
    },
    async remove(key) {
      ready().remove.run(key);
    },
    async close() {
      db?.close();
      db = undefined;
      statements = undefined;
    },
  };
}

/** Which SQLite driver opens the Django database. */
export type SqliteDriver = 'better-sqlite3' | 'node:sqlite';

function sqliteDriver(driver: SqliteDriver | undefined): SqliteOpen {
  if (driver !== 'node:sqlite') {
    try {
      const Database = loadPeer<new (path: string, options: object) => SqliteDatabase>(
        'django sqlite',
        'better-sqlite3',
        'npm install better-sqlite3',
      );
      return (path) => new Database(path, { fileMustExist: true });
    } catch (err) {
      // Asked for by name, or not a missing package: say so rather than fall back.
      if (driver === 'better-sqlite3' || !SatchelError.is(err)) throw err;
    }
  }
  const builtin = nodeSqlite();
  if (builtin === undefined) {
    throw new ConfigError(
      driver === 'node:sqlite'
        ? `fromDjango: store.driver 'node:sqlite' needs Node 22.13 or later; this is ${process.version}`
        : 'fromDjango: a sqlite store needs the better-sqlite3 package (npm install better-sqlite3) or Node 22.13+ (node:sqlite)',
    );
  }
  return (path) => new builtin.DatabaseSync(path) as unknown as SqliteDatabase;
}

/**
 * The file backend: one file per session, named the session cookie's name
 * followed by the key (Django's `file_prefix` is SESSION_COOKIE_NAME).
 */
export function fileBackend(dir: string, prefix: string): DjangoBackend {
  const fileOf = (key: string) => join(dir, prefix + key);
  return {
    async read(key) {
      let handle: Awaited<ReturnType<typeof open>>;
      try {
        handle = await open(fileOf(key), 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
      try {
        const { mtimeMs } = await handle.stat();
        const sessionData = (await handle.readFile('latin1')).trim();
        // Django creates an empty placeholder file before it writes the data.
        return sessionData === '' ? undefined : { sessionData, modifiedAt: mtimeMs };
      } finally {
        await handle.close();
      }
    },
    async remove(key) {
      try {
        await unlink(fileOf(key));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    },
    async close() {},
  };
}

function record(row: DbRow | undefined): DjangoRecord | undefined {
  if (row === undefined || typeof row.session_data !== 'string') return undefined;
  const expireDate = toMs(row.expire_date);
  // A row whose expiry cannot be read is treated as expired: never import past an unknown deadline.
  return { sessionData: row.session_data, expireDate: expireDate ?? 0 };
}

const SQL_DATETIME =
  /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}(?::?\d{2})?)?$/;

/**
 * `expire_date` as ms. PostgreSQL columns are `timestamp with time zone` and
 * arrive as Dates; SQLite keeps text, naive and in UTC under USE_TZ = True
 * (the default in every project `startproject` made since Django 1.4).
 */
function toMs(value: unknown): number | undefined {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : value.getTime();
  if (typeof value !== 'string') return undefined;
  const m = SQL_DATETIME.exec(value.trim());
  if (!m) return undefined;
  const fraction = (m[7] ?? '').padEnd(3, '0').slice(0, 3);
  const zone = m[8] === undefined || m[8] === 'Z' ? 'Z' : normalizeOffset(m[8]);
  const ms = Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${fraction}${zone}`);
  return Number.isNaN(ms) ? undefined : ms;
}

/** '+00', '+0530' or '+05:30' as '+05:30'. */
function normalizeOffset(offset: string): string {
  const digits = offset.slice(1).replace(':', '').padEnd(4, '0');
  return `${offset[0]}${digits.slice(0, 2)}:${digits.slice(2)}`;
}
