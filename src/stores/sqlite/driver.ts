import { closeSync, constants, openSync } from 'node:fs';
import type BetterSqlite3 from 'better-sqlite3';
import { ConfigError, SatchelError, StoreUnavailableError } from '../../errors.js';
import { loadPeer } from '../kit.js';

/**
 * The two SQLite drivers the store runs on, behind one small `Connection`:
 * `node:sqlite` (built into Node.js 22.13 and later, no native addon to
 * compile) and better-sqlite3 (an optional peer dependency, for Node.js 20).
 */
export type SqliteDriver = 'node:sqlite' | 'better-sqlite3';

export const DRIVERS: readonly SqliteDriver[] = ['node:sqlite', 'better-sqlite3'];

/**
 * The part of `node:sqlite`'s `DatabaseSync` the store relies on. Declared
 * here because the Node.js 20 type definitions do not know `node:sqlite`; a
 * real `DatabaseSync` fits it.
 */
export interface NodeSqliteDatabase {
  exec(sql: string): void;
  prepare(sql: string): object;
  close(): void;
}

/** What `node:sqlite` exports, as far as the store uses it. */
export interface NodeSqliteModule {
  DatabaseSync: new (path: string) => NodeSqliteDatabase;
}

/** A prepared statement, as both drivers' statements behave with the settings the store gives them. */
export interface Statement {
  run(...params: unknown[]): { changes: number | bigint };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

/** One SQLite connection, whichever driver opened it. */
export interface Connection {
  readonly driver: SqliteDriver;
  exec(sql: string): void;
  /** Prepares a statement that reads integers as numbers, never BigInts. */
  prepare(sql: string): Statement;
  /** Runs `fn` inside BEGIN IMMEDIATE … COMMIT; rolls back and rethrows when it throws. */
  transaction<T>(fn: () => T): T;
  close(): void;
}

const NODE_SQLITE_SINCE = '22.13';
const INSTALL_BETTER_SQLITE3 = 'npm install better-sqlite3@12';

/** `node:sqlite` when this Node.js has it (22.13+, or earlier behind --experimental-sqlite); undefined otherwise. */
export function nodeSqlite(): NodeSqliteModule | undefined {
  try {
    return process.getBuiltinModule?.('node:sqlite') as NodeSqliteModule | undefined;
  } catch {
    // Node.js 22.5 to 22.12 without --experimental-sqlite: not there.
    return undefined;
  }
}

/**
 * The driver to use: the one asked for, or — when none is — `node:sqlite`
 * where this Node.js has it and better-sqlite3 elsewhere. Fails with a
 * ConfigError naming what to install or upgrade when the driver is missing.
 */
export function chooseDriver(requested: unknown): SqliteDriver {
  if (requested !== undefined && !DRIVERS.includes(requested as SqliteDriver)) {
    throw new ConfigError(
      `sqlite store: driver must be ${DRIVERS.map((d) => `'${d}'`).join(' or ')}; got ${JSON.stringify(requested)}`,
    );
  }
  if (requested === 'node:sqlite' && nodeSqlite() === undefined) {
    throw new ConfigError(
      `sqlite store: driver 'node:sqlite' needs Node.js ${NODE_SQLITE_SINCE} or later; this is ${process.version}. Upgrade Node.js, or use driver: 'better-sqlite3' (${INSTALL_BETTER_SQLITE3})`,
    );
  }
  if (requested !== undefined) return requested as SqliteDriver;
  return nodeSqlite() === undefined ? 'better-sqlite3' : 'node:sqlite';
}

/**
 * Opens `path` with `driver`. A file that does not exist yet is created
 * first, empty and readable by this user only (0600), so SQLite — which
 * gives the -wal and -shm files the database file's mode — never makes any
 * of the three readable by other local users.
 */
export function openConnection(path: string, driver: SqliteDriver, requested: boolean): Connection {
  const open =
    driver === 'node:sqlite'
      ? () => new (nodeSqlite() as NodeSqliteModule).DatabaseSync(path)
      : loadBetterSqlite3(requested);
  try {
    createPrivately(path);
    return adapt(open(path));
  } catch (err) {
    if (SatchelError.is(err)) throw err;
    if (isWrongBuild(err)) {
      throw new ConfigError(
        `sqlite store: better-sqlite3 is installed but its native addon does not load on Node.js ${process.version} (missing, or built for another Node.js version): run npm rebuild better-sqlite3`,
        err,
      );
    }
    throw unavailable(`cannot open ${path}`, err);
  }
}

/** Wraps a database the caller opened, better-sqlite3's or node:sqlite's. */
export function adapt(db: BetterSqlite3.Database | NodeSqliteDatabase): Connection {
  if (isBetterSqlite3(db)) return fromBetterSqlite3(db);
  return fromNodeSqlite(db);
}

/** The driver a database the caller opened belongs to; ConfigError when it is neither. */
export function driverOf(db: unknown): SqliteDriver {
  const candidate = db as Partial<NodeSqliteDatabase> | null;
  if (
    typeof candidate?.prepare !== 'function' ||
    typeof candidate.exec !== 'function' ||
    typeof candidate.close !== 'function'
  ) {
    throw new ConfigError(
      'sqlite store: database must be an open better-sqlite3 Database or node:sqlite DatabaseSync',
    );
  }
  return isBetterSqlite3(candidate) ? 'better-sqlite3' : 'node:sqlite';
}

function isBetterSqlite3(db: object): db is BetterSqlite3.Database {
  const candidate = db as Partial<BetterSqlite3.Database>;
  return typeof candidate.pragma === 'function' && typeof candidate.transaction === 'function';
}

type BetterSqlite3Constructor = typeof BetterSqlite3;

function loadBetterSqlite3(requested: boolean): (path: string) => BetterSqlite3.Database {
  const Driver = loadPeer<BetterSqlite3Constructor>(
    'sqlite',
    'better-sqlite3',
    requested
      ? INSTALL_BETTER_SQLITE3
      : `${INSTALL_BETTER_SQLITE3}, or run Node.js ${NODE_SQLITE_SINCE} or later, whose built-in node:sqlite it uses instead`,
  );
  return (path) => new Driver(path);
}

function createPrivately(path: string): void {
  if (path === ':memory:' || path === '') return;
  let fd: number;
  try {
    // O_EXCL: never through a symlink, never over a file that already exists.
    fd = openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw err;
  }
  closeSync(fd);
}

function fromBetterSqlite3(db: BetterSqlite3.Database): Connection {
  const prepare = (sql: string) => db.prepare(sql).safeIntegers(false) as unknown as Statement;
  return withTransactions('better-sqlite3', db, prepare, () => db.inTransaction);
}

interface NodeSqliteStatement extends Statement {
  setReadBigInts(enabled: boolean): void;
  setAllowBareNamedParameters(enabled: boolean): void;
  /** Node.js 24 and 22.16+. */
  setReturnArrays?(enabled: boolean): void;
}

function fromNodeSqlite(db: NodeSqliteDatabase): Connection {
  // Whatever defaults the caller opened the database with: numbers, not
  // BigInts; rows as objects; `{ key }` binding `@key`.
  const prepare = (sql: string) => {
    const statement = db.prepare(sql) as NodeSqliteStatement;
    statement.setReadBigInts(false);
    statement.setAllowBareNamedParameters(true);
    statement.setReturnArrays?.(false);
    return statement;
  };
  // `isTransaction` arrived in Node.js 22.16; before it, try the rollback.
  const inTransaction = () => (db as { isTransaction?: boolean }).isTransaction ?? true;
  return withTransactions('node:sqlite', db, prepare, inTransaction);
}

function withTransactions(
  driver: SqliteDriver,
  db: { exec(sql: string): void; close(): void },
  prepare: (sql: string) => Statement,
  inTransaction: () => boolean,
): Connection {
  let tx: { begin: Statement; commit: Statement; rollback: Statement } | undefined;
  return {
    driver,
    exec: (sql) => db.exec(sql),
    prepare,
    transaction(fn) {
      tx ??= {
        begin: prepare('BEGIN IMMEDIATE'),
        commit: prepare('COMMIT'),
        rollback: prepare('ROLLBACK'),
      };
      tx.begin.run();
      try {
        const result = fn();
        tx.commit.run();
        return result;
      } catch (err) {
        // SQLite rolls some failures back by itself; then there is nothing left to undo.
        if (inTransaction()) {
          try {
            tx.rollback.run();
          } catch (rollbackError) {
            if (!/no transaction is active/.test(String((rollbackError as Error).message))) {
              throw rollbackError;
            }
          }
        }
        throw err;
      }
    },
    close: () => db.close(),
  };
}

// A native addon compiled for another Node.js ABI (npm ci under Node 20, run
// under Node 24): present, but unusable until rebuilt.
function isWrongBuild(err: unknown): boolean {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  return (
    code === 'ERR_DLOPEN_FAILED' ||
    /NODE_MODULE_VERSION|Could not locate the bindings file/.test(String(message))
  );
}

export function unavailable(message: string, cause: unknown): StoreUnavailableError {
  const detail = cause instanceof Error ? `: ${cause.message}` : '';
  return new StoreUnavailableError('sqlite', `${message}${detail}`, cause);
}
