import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { migrate, postgresStore } from '../../src/stores/postgres.js';
import { adminDatabaseUrl, postgresUnreachable, serviceReady } from '../support/services.js';
import { describeStore, newKey, newRecord } from './conformance.js';

const url = process.env.SATCHEL_DATABASE_URL || 'postgres://127.0.0.1:5432/postgres';
/**
 * The same database for this file's own pg clients. The store connects as the
 * OS user when the URL names none and USER is unset; a bare pg client does not.
 */
const adminUrl = adminDatabaseUrl(url);
const run = `${process.pid}_${Date.now()}`;
const table = `satchel_test_${run}`;

if (serviceReady('postgres store', await postgresUnreachable(url))) {
  const admin = new pg.Pool({ connectionString: adminUrl, max: 2 });
  /** Tables this file created, dropped at the end; nothing else is ever dropped. */
  const created: string[] = [table];
  const migrated = migrate({ connectionString: url, table });
  // Awaited by the cases that need the table; this only keeps an early failure from going unhandled.
  migrated.catch(() => {});

  afterAll(async () => {
    try {
      for (const name of created) {
        await admin.query(`DROP TABLE IF EXISTS "${name}", "${name}_locks"`);
      }
    } finally {
      await admin.end();
    }
  });

  describeStore(
    'postgres',
    async () => {
      await migrated;
      return postgresStore({ connectionString: url, table });
    },
    {
      lock: true,
      owners: true,
      count: true,
      persistent: () => postgresStore({ connectionString: url, table }),
    },
  );

  describe('postgres store', () => {
    it('creates its tables and indexes with migrate, and running it again changes nothing', async () => {
      const name = `satchel_migrate_${run}`;
      created.push(name);
      await migrate({ connectionString: url, table: name });
      await migrate({ pool: admin, table: name });
      await Promise.all([1, 2, 3].map(() => migrate({ pool: admin, table: name })));

      const columns = await admin.query(
        `SELECT column_name, data_type, is_nullable FROM information_schema.columns
         WHERE table_name = $1 ORDER BY ordinal_position`,
        [name],
      );
      expect(columns.rows).toEqual([
        { column_name: 'key', data_type: 'text', is_nullable: 'NO' },
        { column_name: 'data', data_type: 'text', is_nullable: 'NO' },
        { column_name: 'version', data_type: 'integer', is_nullable: 'NO' },
        { column_name: 'expires_at', data_type: 'bigint', is_nullable: 'NO' },
        { column_name: 'created_at', data_type: 'bigint', is_nullable: 'NO' },
        { column_name: 'owner', data_type: 'text', is_nullable: 'YES' },
      ]);
      const indexes = await admin.query(
        'SELECT indexname FROM pg_indexes WHERE tablename = $1 ORDER BY indexname',
        [name],
      );
      expect(indexes.rows.map((row) => row.indexname)).toEqual([
        `${name}_expires_at`,
        `${name}_owner`,
        `${name}_pkey`,
      ]);
      const locks = await admin.query(
        'SELECT count(*)::int AS n FROM pg_tables WHERE tablename = $1',
        [`${name}_locks`],
      );
      expect(locks.rows[0]).toEqual({ n: 1 });
    });

    it('works in a schema-qualified table', async () => {
      const name = `satchel_schema_${run}`;
      created.push(name);
      await migrate({ pool: admin, table: `public.${name}` });
      const store = postgresStore({ pool: admin, table: `public.${name}` });
      const key = newKey();
      const record = newRecord();
      expect(await store.create(key, record)).toBe(true);
      expect(await store.get(key)).toStrictEqual(record);
      expect(await store.lock?.(key, 'token', 10_000)).toBe(true);
      await store.close();
    });

    it('tells to run migrate when the table does not exist, and creates nothing', async () => {
      const name = `satchel_absent_${run}`;
      const store = postgresStore({ pool: admin, table: name });
      for (const call of [
        () => store.get(newKey()),
        () => store.create(newKey(), newRecord()),
        () => store.lock!(newKey(), 'token', 1_000),
      ]) {
        const error = await call().catch((err: unknown) => err);
        expect(error).toMatchObject({ code: 'ERR_SATCHEL_STORE_UNAVAILABLE', store: 'postgres' });
        expect((error as Error).message).toMatch(/does not exist; create it with migrate\(\)/);
        expect((error as Error).message).toContain('satchel migrate');
        expect((error as Error & { cause: { code: string } }).cause.code).toBe('42P01');
      }
      const exists = await admin.query('SELECT to_regclass($1) AS oid', [name]);
      expect(exists.rows[0]).toEqual({ oid: null });
      await store.close();
    });

    it('rejects with StoreUnavailableError within 3 s when nothing listens on the port', async () => {
      const port = await freePort();
      const store = postgresStore({ connectionString: `postgres://127.0.0.1:${port}/postgres` });
      const started = Date.now();
      const error = await store.get(newKey()).catch((err: unknown) => err);
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(error).toMatchObject({ code: 'ERR_SATCHEL_STORE_UNAVAILABLE', store: 'postgres' });
      expect((error as Error).message).toMatch(/^\[satchel\] \[postgres\] get failed: /);
      expect((error as Error).cause).toBeDefined();
      await store.close();
    });

    it('fails fast while the database is cut off and works again once it is back', async () => {
      const target = new URL(url);
      const proxy = new TcpProxy(target.hostname, Number(target.port || 5432));
      const port = await proxy.start();
      const proxied = new URL(url);
      proxied.port = String(port);
      const store = postgresStore({ connectionString: proxied.toString(), table });
      try {
        await migrated;
        const key = newKey();
        const record = newRecord();
        expect(await store.create(key, record)).toBe(true);

        // Kills the idle pooled connection too: the Pool reports it as an
        // 'error' event, which must not crash the process.
        await proxy.stop();
        const started = Date.now();
        await expect(store.get(key)).rejects.toMatchObject({
          code: 'ERR_SATCHEL_STORE_UNAVAILABLE',
        });
        await expect(store.update(key, newRecord({ version: 2 }), 1)).rejects.toMatchObject({
          code: 'ERR_SATCHEL_STORE_UNAVAILABLE',
        });
        expect(Date.now() - started).toBeLessThan(6_000);

        await proxy.start(port);
        expect(await store.get(key)).toStrictEqual(record);
      } finally {
        await store.close();
        await proxy.stop();
      }
    });

    it('leaves a pool it was given open on close', async () => {
      const pool = new pg.Pool({ connectionString: adminUrl, max: 1 });
      try {
        const store = postgresStore({ pool, table });
        await migrated;
        expect(await store.get(newKey())).toBeUndefined();
        await store.close();
        expect(pool.ended).toBe(false);
        expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
        await expect(store.get(newKey())).rejects.toMatchObject({
          code: 'ERR_SATCHEL_STORE_UNAVAILABLE',
        });
      } finally {
        await pool.end();
      }
    });

    it('deletes expired rows in batches of batchSize, leaving live rows and live locks', async () => {
      await migrated;
      const store = postgresStore({ pool: admin, table, batchSize: 2 });
      const cutoff = Date.now() + 48 * 3_600_000;
      await store.clearExpired(cutoff);
      for (let i = 0; i < 5; i++) {
        await store.create(newKey(), newRecord({ expiresAt: cutoff - i }));
      }
      const live = newKey();
      await store.create(live, newRecord({ expiresAt: cutoff + 1 }));
      const locked = newKey();
      expect(await store.lock?.(locked, 'holder', 60_000)).toBe(true);
      expect(await store.clearExpired(cutoff)).toBe(5);
      expect(await store.get(live)).toBeDefined();
      expect(await store.lock?.(locked, 'other', 60_000)).toBe(false);
      await store.close();
    });

    it('round-trips text that looks like its NUL escaping', async () => {
      await migrated;
      const store = postgresStore({ pool: admin, table });
      const mark = '\u0001';
      for (const data of [
        mark,
        `${mark}0`,
        `${mark}${mark}0`,
        `a${mark}0\u0000${mark}${mark}\u0000`,
        `\u0000${mark}`,
        `0${mark}`,
        '',
      ]) {
        const key = newKey();
        const record = newRecord({ data, owner: data });
        await store.create(key, record);
        expect(await store.get(key)).toStrictEqual(record);
      }
      await store.close();
    });

    it('lists and ends sessions by owners that need NUL escaping, and nobody else’s', async () => {
      await migrated;
      const store = postgresStore({ pool: admin, table });
      const mark = '\u0001';
      // Unique to this case: the table is shared with the other cases.
      const tag = newKey();
      const [escaped, plain] = [`${mark}0${tag}`, tag];
      const owners = [`nul \u0000 ${tag}`, escaped, `${mark}${tag}`, plain, `${tag}${mark}`];
      const keyOf = new Map<string, string>();
      for (const owner of owners) {
        const key = newKey();
        keyOf.set(owner, key);
        await store.create(key, newRecord({ owner }));
      }
      for (const owner of owners) {
        const rows = await store.listByOwner!(owner);
        expect(rows).toEqual([
          { key: keyOf.get(owner), record: await store.get(keyOf.get(owner)!) },
        ]);
      }
      expect(await store.destroyByOwner!(escaped)).toBe(1);
      expect(await store.destroyByOwner!(plain, keyOf.get(plain))).toBe(0);
      for (const owner of owners) {
        expect(await store.get(keyOf.get(owner)!)).toEqual(
          owner === escaped ? undefined : expect.objectContaining({ owner }),
        );
      }
      await store.close();
    });

    it('finds an owner’s sessions through the owner index', async () => {
      await migrated;
      const client = await admin.connect();
      try {
        await client.query('BEGIN');
        await client.query('SET LOCAL enable_seqscan = off');
        for (const [sql, values] of [
          [
            `SELECT key, data, version, expires_at, created_at, owner FROM "${table}"
             WHERE owner = $1 AND expires_at > $2`,
            ['ann', Date.now()],
          ],
          [
            `DELETE FROM "${table}" WHERE owner = $1 AND key IS DISTINCT FROM $2 AND expires_at > $3`,
            ['ann', null, Date.now()],
          ],
        ] as const) {
          const plan = await client.query(`EXPLAIN ${sql}`, [...values]);
          expect(plan.rows.map((row) => row['QUERY PLAN']).join('\n')).toContain(`${table}_owner`);
        }
      } finally {
        await client.query('ROLLBACK');
        client.release();
      }
    });

    it('refuses bad options with exact messages', async () => {
      for (const name of ['sessions; DROP TABLE users', 'my-sessions', '1sessions', '"q"', '']) {
        expect(() => postgresStore({ pool: admin, table: name })).toThrowError(
          `[satchel] postgres store: table must be a plain identifier of at most 52 characters, optionally schema-qualified (schema.table); got ${JSON.stringify(name)}`,
        );
      }
      expect(() => postgresStore({ pool: admin, table: 'a'.repeat(53) })).toThrowError(
        /table must be a plain identifier of at most 52 characters/,
      );
      await expect(migrate({ pool: admin, table: 'a.b.c' })).rejects.toThrowError(
        /^\[satchel\] postgres migrate: table must be/,
      );
      expect(() => postgresStore({ pool: admin, batchSize: 0 })).toThrowError(
        '[satchel] postgres store: batchSize must be a positive integer; got 0',
      );
      expect(() => postgresStore({ connectionString: url, connectTimeoutMs: -1 })).toThrowError(
        '[satchel] postgres store: connectTimeoutMs must be a positive integer; got -1',
      );
      expect(() => postgresStore({})).toThrowError(
        '[satchel] postgres store: pass a pg Pool as pool, or a connectionString',
      );
      expect(() => postgresStore({ pool: admin, connectionString: url })).toThrowError(
        '[satchel] postgres store: pass either pool or connectionString, not both',
      );
    });

    it('refuses an unknown option key with a did-you-mean', async () => {
      expect(() => postgresStore({ pool: admin, tabel: 'x' } as never)).toThrowError(
        '[satchel] postgres store: unknown option "tabel": did you mean "table"?',
      );
      expect(() => postgresStore({ url } as never)).toThrowError(
        '[satchel] postgres store: unknown option "url": the option is "connectionString" (or pass a pg Pool as pool)',
      );
      await expect(migrate({ pool: admin, batchSize: 5 } as never)).rejects.toThrowError(
        '[satchel] postgres migrate: unknown option "batchSize": known options: pool, connectionString, table, connectTimeoutMs',
      );
    });

    it('reports clearExpired progress after each batch, with the total', async () => {
      const table = `satchel_progress_${process.pid}_${Date.now()}`;
      await migrate({ pool: admin, table });
      const store = postgresStore({ pool: admin, table, batchSize: 2 });
      try {
        const now = Date.now();
        for (let i = 0; i < 5; i++) {
          await store.create(newKey(), newRecord({ expiresAt: now - 1 - i }));
        }
        await store.create(newKey(), newRecord({ expiresAt: now + 60_000 }));
        const seen: Array<{ removed: number; total?: number }> = [];
        expect(await store.clearExpired(now, { onProgress: (p) => seen.push(p) })).toBe(5);
        expect(seen).toEqual([
          { removed: 2, total: 5 },
          { removed: 4, total: 5 },
          { removed: 5, total: 5 },
        ]);
      } finally {
        await store.close();
        await admin.query(`DROP TABLE IF EXISTS "${table}", "${table}_locks"`);
      }
    });
  });
}

/** A port nothing listens on: bound, then released. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A TCP forwarder the test can cut and restore, standing in for a network outage. */
class TcpProxy {
  #server: Server | undefined;
  #sockets = new Set<Socket>();

  constructor(
    readonly host: string,
    readonly port: number,
  ) {}

  async start(port = 0): Promise<number> {
    const server = createServer((client) => {
      const upstream = tcpConnect(this.port, this.host);
      for (const socket of [client, upstream]) {
        this.#sockets.add(socket);
        socket.on('close', () => this.#sockets.delete(socket));
        socket.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    this.#server = server;
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    return (server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const socket of this.#sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
