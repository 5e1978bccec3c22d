import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type BetterSqlite3 from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import type { ClearExpiredOptions } from '../../src/store.js';
import { type SqliteDriver, sqliteStore } from '../../src/stores/sqlite.js';
import { type NodeSqliteDatabase, nodeSqlite } from '../../src/stores/sqlite/driver.js';
import { describeStore, newKey, newRecord } from './conformance.js';

const dir = mkdtempSync(join(tmpdir(), 'store-test-sqlite-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
/** node:sqlite is built in (no flag) from Node.js 22.13 on. */
const HAS_NODE_SQLITE = major > 22 || (major === 22 && minor >= 13);

/** Opens a database with `driver` directly, as a user passing `database` would. */
function openDirect(driver: SqliteDriver, path: string): Direct {
  if (driver === 'node:sqlite') {
    const db = new (nodeSqlite()!.DatabaseSync)(path) as NodeSqliteDatabase & {
      readonly isOpen: boolean;
    };
    type Read = { get(): Record<string, unknown> | undefined };
    return {
      db,
      value: (sql) => Object.values((db.prepare(sql) as Read).get() ?? {})[0],
      isOpen: () => db.isOpen,
      close: () => db.close(),
    };
  }
  const Database = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;
  const db = new Database(path);
  return {
    db,
    value: (sql) => db.prepare(sql).pluck().get(),
    isOpen: () => db.open,
    close: () => db.close(),
  };
}

interface Direct {
  db: BetterSqlite3.Database | NodeSqliteDatabase;
  /** The first column of the first row of `sql`. */
  value(sql: string): unknown;
  isOpen(): boolean;
  close(): void;
}

const drivers: { driver: SqliteDriver; skip?: string }[] = [
  {
    driver: 'node:sqlite',
    ...(!HAS_NODE_SQLITE && {
      skip: `skipped: node:sqlite needs Node.js 22.13+, this is ${process.version}`,
    }),
  },
  // Always run: on Node.js 20 it is the only driver, and on 24 CI builds it for 24.
  { driver: 'better-sqlite3' },
];

for (const { driver, skip } of drivers) {
  if (skip !== undefined) {
    // The reason is in the suite's name, so the report says why it did not run.
    describe.skip(`sqlite (${driver}) store: ${skip}`, () => {
      it('runs the conformance suite and the driver cases', () => {});
    });
    continue;
  }
  const path = join(dir, `sessions-${driver.replace(':', '-')}.db`);
  describeStore(`sqlite (${driver})`, () => sqliteStore({ path, driver }), {
    lock: true,
    owners: true,
    count: true,
    sync: true,
    persistent: () => sqliteStore({ path, driver }),
  });

  describe(`sqlite store on ${driver}`, () => {
    const file = (name: string) => join(dir, `${driver.replace(':', '-')}-${name}`);

    it('runs on the driver it was asked for', async () => {
      const store = sqliteStore({ path: ':memory:', driver });
      expect(store.driver).toBe(driver);
      await store.close();
    });

    it('puts the database it opens in WAL mode', async () => {
      const path = file('wal.db');
      const store = sqliteStore({ path, driver });
      await store.create(newKey(), newRecord());
      const direct = openDirect(driver, path);
      try {
        expect(direct.value('PRAGMA journal_mode')).toBe('wal');
      } finally {
        direct.close();
        await store.close();
      }
    });

    it('another local user cannot read the session database, its WAL or its shared memory', async () => {
      const path = file('private.db');
      const store = sqliteStore({ path, driver });
      try {
        await store.create(newKey(), newRecord({ owner: 'alice@example.com' }));
        // While the store is open, SQLite keeps the -wal and -shm files beside the database.
        for (const name of [path, `${path}-wal`, `${path}-shm`]) {
          expect((statSync(name).mode & 0o777).toString(8), name).toBe('600');
        }
      } finally {
        await store.close();
      }
    });

    it('leaves the mode of a database file that already exists alone', async () => {
      const path = file('existing.db');
      writeFileSync(path, '', { mode: 0o640 });
      const store = sqliteStore({ path, driver });
      await store.create(newKey(), newRecord());
      await store.close();
      expect((statSync(path).mode & 0o777).toString(8)).toBe('640');
    });

    it('uses a database it is given, in its own table, and leaves it open on close', async () => {
      const direct = openDirect(driver, ':memory:');
      const store = sqliteStore({ database: direct.db, table: 'custom_sessions' });
      expect(store.driver).toBe(driver);
      const key = newKey();
      const record = newRecord();
      await store.create(key, record);
      expect(await store.get(key)).toStrictEqual(record);
      await store.close();
      expect(direct.isOpen()).toBe(true);
      expect(direct.value('SELECT count(*) FROM custom_sessions')).toBe(1);
      direct.close();
    });

    it('deletes expired rows in batches of batchSize and reports progress after each', async () => {
      const store = sqliteStore({ path: ':memory:', driver, batchSize: 2, batchMs: 0.001 });
      const now = Date.now();
      for (let i = 0; i < 5; i++) {
        await store.create(newKey(), newRecord({ expiresAt: now - 1 - i }));
      }
      await store.create(newKey(), newRecord());
      const progress: Parameters<NonNullable<ClearExpiredOptions['onProgress']>>[0][] = [];
      expect(await store.clearExpired(now, { onProgress: (p) => progress.push(p) })).toBe(5);
      // Each transaction stops after its first statement (batchMs is tiny): 2, 2, then 1.
      expect(progress).toEqual([
        { removed: 2, total: 5 },
        { removed: 4, total: 5 },
        { removed: 5, total: 5 },
      ]);
      await store.close();
    });

    it('keeps deleting within one transaction until batchMs has passed', async () => {
      const store = sqliteStore({ path: ':memory:', driver, batchSize: 2, batchMs: 60_000 });
      const now = Date.now();
      for (let i = 0; i < 7; i++) {
        await store.create(newKey(), newRecord({ expiresAt: now - 1 - i }));
      }
      const progress: number[] = [];
      await store.clearExpired(now, { onProgress: ({ removed }) => progress.push(removed) });
      expect(progress).toEqual([7]);
      await store.close();
    });

    it('works on a database opened with integers as BigInts (and, on node:sqlite, rows as arrays and no bare parameters)', async () => {
      let db: BetterSqlite3.Database | NodeSqliteDatabase;
      if (driver === 'node:sqlite') {
        const DatabaseSync = nodeSqlite()!.DatabaseSync as unknown as new (
          path: string,
          options: object,
        ) => NodeSqliteDatabase;
        db = new DatabaseSync(':memory:', {
          readBigInts: true,
          returnArrays: true,
          allowBareNamedParameters: false,
        });
      } else {
        const better = openDirect(driver, ':memory:').db as BetterSqlite3.Database;
        better.defaultSafeIntegers(true);
        db = better;
      }
      const store = sqliteStore({ database: db });
      const key = newKey();
      const record = newRecord({ version: 3 });
      expect(await store.create(key, record)).toBe(true);
      expect(await store.update(key, { ...record, version: 4 }, 3)).toBe('ok');
      expect(await store.get(key)).toStrictEqual({ ...record, version: 4 });
      expect(await store.listByOwner(record.owner!)).toEqual([
        { key, record: { ...record, version: 4 } },
      ]);
      expect(await store.count(Date.now())).toBe(1);
      await store.close();
      db.close();
    });

    it('stops a cleanup between transactions when the store is closed', async () => {
      const store = sqliteStore({ path: ':memory:', driver, batchSize: 1, batchMs: 0.001 });
      for (let i = 0; i < 3; i++) {
        await store.create(newKey(), newRecord({ expiresAt: Date.now() - 1 }));
      }
      const seen: number[] = [];
      const cleanup = store.clearExpired(undefined, {
        onProgress: ({ removed }) => {
          seen.push(removed);
          void store.close();
        },
      });
      await expect(cleanup).rejects.toMatchObject({
        code: 'ERR_SATCHEL_STORE_UNAVAILABLE',
        message: '[satchel] [sqlite] the store is closed',
      });
      expect(seen).toEqual([1]);
    });

    it('gives a database it was handed its own page cache size back after clearExpired', async () => {
      const direct = openDirect(driver, ':memory:');
      direct.db.exec('PRAGMA cache_size = -3000');
      const store = sqliteStore({ database: direct.db });
      await store.create(newKey(), newRecord({ expiresAt: Date.now() - 1 }));
      let during: unknown;
      await store.clearExpired(undefined, {
        onProgress: () => {
          during = direct.value('PRAGMA cache_size');
        },
      });
      expect(during).toBe(-65536);
      expect(direct.value('PRAGMA cache_size')).toBe(-3000);
      await store.close();
      direct.close();
    });

    it('reports a database closed underneath it as StoreUnavailableError with the cause', async () => {
      const direct = openDirect(driver, ':memory:');
      const store = sqliteStore({ database: direct.db });
      direct.close();
      const error = await store.get(newKey()).catch((err: unknown) => err);
      expect(error).toMatchObject({ code: 'ERR_SATCHEL_STORE_UNAVAILABLE', store: 'sqlite' });
      expect((error as Error).message).toMatch(/^\[satchel\] \[sqlite\] get failed: /);
      expect((error as Error).cause).toBeInstanceOf(Error);
    });
  });
}

describe('sqlite store', () => {
  it(`runs on ${HAS_NODE_SQLITE ? 'node:sqlite' : 'better-sqlite3'} by default on Node.js ${process.version}`, async () => {
    const store = sqliteStore({ path: ':memory:' });
    expect(store.driver).toBe(HAS_NODE_SQLITE ? 'node:sqlite' : 'better-sqlite3');
    await store.close();
  });

  it('falls back to better-sqlite3, and refuses driver node:sqlite clearly, on a Node.js without node:sqlite', async () => {
    // Node.js 20 has no node:sqlite; on later versions a flag turns it off.
    const flags = HAS_NODE_SQLITE ? ['--no-experimental-sqlite'] : [];
    const script = `
      const { sqliteStore } = await import('./src/stores/sqlite.ts');
      const store = sqliteStore({ path: ':memory:' });
      let refusal;
      try { sqliteStore({ path: ':memory:', driver: 'node:sqlite' }); } catch (err) { refusal = { code: err.code, message: err.message }; }
      console.log(JSON.stringify({ driver: store.driver, refusal }));
      await store.close();`;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [...flags, '--import', 'tsx', '--input-type=module', '-e', script],
      { timeout: 20_000 },
    );
    expect(JSON.parse(stdout)).toEqual({
      driver: 'better-sqlite3',
      refusal: {
        code: 'ERR_SATCHEL_CONFIG',
        message: `[satchel] sqlite store: driver 'node:sqlite' needs Node.js 22.13 or later; this is ${process.version}. Upgrade Node.js, or use driver: 'better-sqlite3' (npm install better-sqlite3@12)`,
      },
    });
  });

  it('refuses a driver it does not know, and a driver that did not open the given database', () => {
    expect(() => sqliteStore({ path: ':memory:', driver: 'sqlite3' as SqliteDriver })).toThrowError(
      `[satchel] sqlite store: driver must be 'node:sqlite' or 'better-sqlite3'; got "sqlite3"`,
    );
    const direct = openDirect('better-sqlite3', ':memory:');
    try {
      expect(() => sqliteStore({ database: direct.db, driver: 'node:sqlite' })).toThrowError(
        HAS_NODE_SQLITE
          ? "[satchel] sqlite store: driver is 'node:sqlite' but database was opened by better-sqlite3"
          : "[satchel] sqlite store: driver 'node:sqlite' needs Node.js 22.13",
      );
      expect(() => sqliteStore({ database: {} as NodeSqliteDatabase })).toThrowError(
        '[satchel] sqlite store: database must be an open better-sqlite3 Database or node:sqlite DatabaseSync',
      );
    } finally {
      direct.close();
    }
  });

  it('refuses unknown option keys with a did-you-mean, and other stores’ names with advice', () => {
    const options = (o: Record<string, unknown>) => o as Parameters<typeof sqliteStore>[0];
    expect(() => sqliteStore(options({ path: ':memory:', batchsize: 10 }))).toThrowError(
      '[satchel] sqlite store: unknown option "batchsize": did you mean "batchSize"?',
    );
    expect(() => sqliteStore(options({ path: ':memory:', drivers: 'node:sqlite' }))).toThrowError(
      '[satchel] sqlite store: unknown option "drivers": did you mean "driver"?',
    );
    expect(() => sqliteStore(options({ db: 'sessions.db' }))).toThrowError(
      '[satchel] sqlite store: unknown option "db": pass the database file as path (or an open database as database)',
    );
  });

  it('refuses a table name that is not a plain identifier', () => {
    for (const table of [
      'sessions; DROP TABLE users',
      'my-sessions',
      '1sessions',
      '"quoted"',
      '',
    ]) {
      expect(() => sqliteStore({ path: ':memory:', table })).toThrowError(
        `[satchel] sqlite store: table must be a plain identifier matching /^[A-Za-z_][A-Za-z0-9_]*$/; got ${JSON.stringify(table)}`,
      );
    }
  });

  it('refuses a batchSize or batchMs that is not positive, a file: URI, and both path and database', () => {
    expect(() => sqliteStore({ path: ':memory:', batchSize: 0 })).toThrowError(
      '[satchel] sqlite store: batchSize must be a positive integer; got 0',
    );
    expect(() => sqliteStore({ path: ':memory:', batchMs: -1 })).toThrowError(
      '[satchel] sqlite store: batchMs must be a positive number; got -1',
    );
    expect(() => sqliteStore({ path: 'file:sessions.db?mode=rwc' })).toThrowError(
      '[satchel] sqlite store: path must be a file path (file: URIs are not supported); got "file:sessions.db?mode=rwc"',
    );
    const direct = openDirect('better-sqlite3', ':memory:');
    expect(() => sqliteStore({ path: ':memory:', database: direct.db })).toThrowError(
      '[satchel] sqlite store: pass either path or database, not both',
    );
    direct.close();
  });
});
