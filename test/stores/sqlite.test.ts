import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { sqliteStore } from '../../src/stores/sqlite.js';
import { describeStore, newKey, newRecord } from './conformance.js';

const dir = mkdtempSync(join(tmpdir(), 'store-test-sqlite-'));
const path = join(dir, 'sessions.db');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describeStore('sqlite', () => sqliteStore({ path }), {
  lock: true,
  owners: true,
  count: true,
  persistent: () => sqliteStore({ path }),
});

describe('sqlite store', () => {
  it('puts the database it opens in WAL mode', async () => {
    const file = join(dir, 'wal.db');
    const store = sqliteStore({ path: file });
    await store.create(newKey(), newRecord());
    const db = new Database(file, { readonly: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    } finally {
      db.close();
      await store.close();
    }
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

  it('refuses a batchSize that is not a positive integer, and both path and database', () => {
    expect(() => sqliteStore({ path: ':memory:', batchSize: 0 })).toThrowError(
      '[satchel] sqlite store: batchSize must be a positive integer; got 0',
    );
    const db = new Database(':memory:');
    expect(() => sqliteStore({ path: ':memory:', database: db })).toThrowError(
      '[satchel] sqlite store: pass either path or database, not both',
    );
    db.close();
  });

  it('uses a database it is given, in its own table, and leaves it open on close', async () => {
    const db = new Database(':memory:');
    const store = sqliteStore({ database: db, table: 'custom_sessions' });
    const key = newKey();
    const record = newRecord();
    await store.create(key, record);
    expect(await store.get(key)).toStrictEqual(record);
    await store.close();
    expect(db.open).toBe(true);
    expect(db.prepare('SELECT count(*) AS n FROM custom_sessions').get()).toEqual({ n: 1 });
    db.close();
  });

  it('deletes expired rows in batches of batchSize', async () => {
    const store = sqliteStore({ path: ':memory:', batchSize: 2 });
    const now = Date.now();
    for (let i = 0; i < 5; i++) await store.create(newKey(), newRecord({ expiresAt: now - 1 - i }));
    await store.create(newKey(), newRecord());
    expect(await store.clearExpired(now)).toBe(5);
    await store.close();
  });

  it('reports a database closed underneath it as StoreUnavailableError with the cause', async () => {
    const db = new Database(':memory:');
    const store = sqliteStore({ database: db });
    db.close();
    const error = await store.get(newKey()).catch((err: unknown) => err);
    expect(error).toMatchObject({ code: 'ERR_SATCHEL_STORE_UNAVAILABLE', store: 'sqlite' });
    expect((error as Error).message).toMatch(/^\[satchel\] \[sqlite\] get failed: /);
    expect((error as Error).cause).toBeInstanceOf(Error);
  });
});
