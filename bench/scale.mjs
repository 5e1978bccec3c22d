/**
 * Scale runs (`node bench/run.mjs --scale`):
 *  - 1,000,000 live sessions in SQLite, PostgreSQL and Redis, then the
 *    latency of satchel's `load()` over random IDs (p50/p99, one at a time)
 *    and its throughput with 32 loads in flight;
 *  - `clearExpired()` over 1,000,000 expired sessions in SQLite and PostgreSQL;
 *  - the memory store at its bound: RSS while creating 5 × maxEntries sessions.
 * Records are written in the format the stores write (SQLite and PostgreSQL:
 * multi-row inserts into the store's own table; Redis: the store's own create()).
 * Everything lives under names of its own (a temporary SQLite file, the table
 * satchel_bench_scale, the Redis prefix satchel-bench-scale:) and is removed at the end.
 * --sessions=<n> changes 1,000,000; --quick uses 20,000.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { percentile } from './lib/http.mjs';

const BENCH = dirname(fileURLToPath(import.meta.url));
const ROOT = join(BENCH, '..');
const requireRoot = createRequire(join(ROOT, 'package.json'));
const dist = (path) => import(new URL(`../dist/${path}`, import.meta.url).href);
const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const DAY = 86_400_000;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');

const log = (m) => process.stderr.write(`[scale] ${m}\n`);
const fmt = (n, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '-');

/** Deterministic, well-formed session IDs: 32 bytes (SHA-256) as base64url. */
const idOf = (i) => createHash('sha256').update(`satchel-bench-${i}`).digest('base64url');

async function records(n, { expired }, batch, write) {
  const { storeKey, jsonSerializer } = await dist('index.js');
  const now = Date.now();
  const began = Date.now();
  for (let from = 0; from < n; from += batch) {
    const rows = [];
    for (let i = from; i < Math.min(n, from + batch); i++) {
      rows.push({
        key: storeKey(idOf(i)),
        data: jsonSerializer.stringify({ cart: [`item-${i % 50}`, 'awesome-item', 'rubber-duck'] }),
        version: 1,
        createdAt: expired ? now - 2 * DAY : now - 1000,
        expiresAt: expired ? now - DAY : now + DAY,
      });
    }
    await write(rows);
    if ((from / batch) % 10 === 9 || from + batch >= n) {
      log(
        `  ${Math.min(n, from + batch).toLocaleString('en')} / ${n.toLocaleString('en')} written (${fmt((Date.now() - began) / 1000, 1)} s)`,
      );
    }
  }
  return (Date.now() - began) / 1000;
}

/** load() over random IDs: latency one at a time, then throughput with 32 in flight. */
async function measureLoads(sessions, n, samples) {
  const request = (i) => ({
    header: (name) => (name === 'cookie' ? `sessionid=${idOf(i)}` : undefined),
    encrypted: false,
  });
  const pick = () => Math.floor(Math.random() * n);
  let hits = 0;
  const latencies = [];
  for (let j = 0; j < samples; j++) {
    const t0 = process.hrtime.bigint();
    const session = await sessions.load(request(pick()));
    latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (!session.isNew) hits++;
  }
  latencies.sort((a, b) => a - b);
  let done = 0;
  const began = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (done < samples) {
        done++;
        await sessions.load(request(pick()));
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - began) / 1e9;
  return {
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    hits,
    samples,
    throughput: samples / seconds,
  };
}

/**
 * A raw connection for bulk inserts, with the driver the store runs on:
 * node:sqlite (Node 22.13+) or better-sqlite3.
 */
function openRaw(driver, path) {
  if (driver === 'node:sqlite') {
    const { DatabaseSync } = process.getBuiltinModule('node:sqlite');
    const db = new DatabaseSync(path);
    return {
      db,
      transaction: (fn) => (rows) => {
        db.exec('BEGIN');
        try {
          fn(rows);
          db.exec('COMMIT');
        } catch (err) {
          db.exec('ROLLBACK');
          throw err;
        }
      },
    };
  }
  const Database = requireRoot('better-sqlite3');
  const db = new Database(path);
  return { db, transaction: (fn) => db.transaction(fn) };
}

/** The SQLite drivers this Node.js can run: node:sqlite where built in, better-sqlite3 when it loads. */
function sqliteDrivers() {
  const drivers = [];
  if (process.getBuiltinModule?.('node:sqlite')) drivers.push('node:sqlite');
  try {
    new (requireRoot('better-sqlite3'))(':memory:').close();
    drivers.push('better-sqlite3');
  } catch (err) {
    log(
      `sqlite: better-sqlite3 does not load on Node ${process.version}, skipped: ${err.message.split('\n')[0]}`,
    );
  }
  return drivers;
}

async function sqliteRuns(n, samples, results) {
  const { sqliteStore } = await dist('stores/sqlite.js');
  const { createSessions } = await dist('index.js');
  const dir = mkdtempSync(join(tmpdir(), 'satchel-bench-scale-'));
  try {
    for (const driver of sqliteDrivers()) {
      const name = `sqlite (${driver})`;
      for (const expired of [false, true]) {
        const path = join(
          dir,
          `sessions-${driver.replace(':', '-')}-${expired ? 'expired' : 'live'}.db`,
        );
        const store = sqliteStore({ path, driver });
        const { db, transaction } = openRaw(driver, path);
        db.exec('PRAGMA journal_mode = WAL');
        db.exec('PRAGMA synchronous = NORMAL');
        const insert = db.prepare(
          'INSERT INTO satchel_sessions (key, data, version, expires_at, created_at, owner) VALUES (?, ?, ?, ?, ?, NULL)',
        );
        const many = transaction((rows) => {
          for (const r of rows) insert.run(r.key, r.data, r.version, r.expiresAt, r.createdAt);
        });
        log(
          `${name}: inserting ${n.toLocaleString('en')} ${expired ? 'expired' : 'live'} sessions`,
        );
        const insertSeconds = await records(n, { expired }, 50_000, async (rows) => many(rows));
        db.close();
        const sessions = createSessions({ store });
        if (!expired) {
          const r = await measureLoads(sessions, n, samples);
          results.push({ store: name, what: 'load()', insertSeconds, ...r });
        } else {
          let transactions = 0;
          let longest = 0;
          let last = performance.now();
          const t0 = Date.now();
          // The store's own call: the manager's clearExpired() takes no progress callback.
          const removed = await store.clearExpired(Date.now(), {
            onProgress: () => {
              transactions++;
              const now = performance.now();
              longest = Math.max(longest, now - last);
              last = now;
            },
          });
          results.push({
            store: name,
            what: 'clearExpired()',
            seconds: (Date.now() - t0) / 1000,
            removed,
            n,
            note: `${transactions} transactions, longest step ${fmt(longest)} ms`,
          });
        }
        await sessions.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function postgresRuns(n, samples, results) {
  const { postgresStore, migrate } = await dist('stores/postgres.js');
  const { createSessions } = await dist('index.js');
  const pg = requireRoot('pg');
  const pool = new pg.Pool({ connectionString: PG_URL, max: 10 });
  const table = 'satchel_bench_scale';
  const drop = () =>
    pool.query(`DROP TABLE IF EXISTS "${table}"; DROP TABLE IF EXISTS "${table}_locks"`);
  try {
    for (const expired of [false, true]) {
      await drop();
      await migrate({ pool, table });
      log(`postgres: inserting ${n.toLocaleString('en')} ${expired ? 'expired' : 'live'} sessions`);
      const insertSeconds = await records(n, { expired }, 10_000, (rows) =>
        pool.query(
          `INSERT INTO "${table}" (key, data, version, expires_at, created_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::bigint[])`,
          [
            rows.map((r) => r.key),
            rows.map((r) => r.data),
            rows.map((r) => r.version),
            rows.map((r) => r.expiresAt),
            rows.map((r) => r.createdAt),
          ],
        ),
      );
      await pool.query(`VACUUM ANALYZE "${table}"`);
      const sessions = createSessions({ store: postgresStore({ pool, table }) });
      if (!expired) {
        const r = await measureLoads(sessions, n, samples);
        results.push({ store: 'postgres', what: 'load()', insertSeconds, ...r });
      } else {
        const t0 = Date.now();
        const removed = await sessions.clearExpired();
        results.push({
          store: 'postgres',
          what: 'clearExpired()',
          seconds: (Date.now() - t0) / 1000,
          removed,
          n,
        });
      }
    }
  } finally {
    await drop().catch(() => {});
    await pool.end();
  }
}

async function redisRuns(n, samples, results) {
  const { redisStore } = await dist('stores/redis.js');
  const { createSessions } = await dist('index.js');
  const Redis = requireRoot('ioredis');
  const client = new Redis(REDIS_URL);
  const prefix = 'satchel-bench-scale:';
  const clean = async () => {
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 5000);
      cursor = next;
      if (keys.length) await client.unlink(...keys);
    } while (cursor !== '0');
  };
  const store = redisStore({ client, prefix });
  try {
    await clean();
    log(`redis: creating ${n.toLocaleString('en')} live sessions through the store's create()`);
    const insertSeconds = await records(n, { expired: false }, 5_000, (rows) =>
      Promise.all(rows.map((r) => store.create(r.key, r))),
    );
    const info = await client.info('memory');
    const used = /used_memory_human:(\S+)/.exec(info)?.[1];
    const sessions = createSessions({ store });
    const r = await measureLoads(sessions, n, samples);
    results.push({ store: 'redis', what: 'load()', insertSeconds, usedMemory: used, ...r });
  } finally {
    log('redis: removing the scale keys');
    await clean().catch(() => {});
    client.disconnect();
  }
}

async function memoryRun(maxEntries, results) {
  const { memoryStore } = await dist('stores/memory.js');
  const { createSessions } = await dist('index.js');
  const sessions = createSessions({ store: memoryStore({ maxEntries }) });
  const total = 5 * maxEntries;
  const samples = [];
  const sample = (created) => {
    gc();
    const m = process.memoryUsage();
    samples.push({ created, rssMiB: m.rss / 2 ** 20, heapMiB: m.heapUsed / 2 ** 20 });
  };
  const noCookie = { header: () => undefined, encrypted: false };
  sample(0);
  const step = maxEntries / 4;
  for (let i = 0; i < total; ) {
    const batch = [];
    for (let j = 0; j < 1000 && i < total; j++, i++) {
      batch.push(
        sessions.load(noCookie).then((s) => {
          s.set('cart', [`item-${i % 50}`, 'awesome-item', 'rubber-duck']);
          return sessions.commit(s, 200);
        }),
      );
    }
    await Promise.all(batch);
    if (i % step === 0) sample(i);
  }
  await sessions.close();
  results.push({
    store: 'memory',
    what: `RSS creating ${total.toLocaleString('en')} sessions, maxEntries ${maxEntries.toLocaleString('en')}`,
    samples,
  });
}

export async function runScale({ quick, args }) {
  const option = (name, fallback) => {
    const hit = args.find((a) => a.startsWith(`--${name}=`));
    return hit === undefined ? fallback : Number(hit.slice(name.length + 3));
  };
  const n = option('sessions', quick ? 20_000 : 1_000_000);
  const samples = option('samples', quick ? 2_000 : 20_000);
  const maxEntries = option('max-entries', quick ? 10_000 : 100_000);
  const only = args.find((a) => a.startsWith('--only='))?.slice(7);
  const want = (name) => only === undefined || new RegExp(only).test(name);
  const results = [];
  const began = Date.now();
  const runs = [
    ['sqlite', () => sqliteRuns(n, samples, results)],
    ['postgres', () => postgresRuns(n, samples, results)],
    ['redis', () => redisRuns(n, samples, results)],
    ['memory', () => memoryRun(maxEntries, results)],
  ];
  const failures = [];
  for (const [name, fn] of runs) {
    if (!want(name)) continue;
    try {
      await fn();
    } catch (err) {
      failures.push(`${name}: ${err.message}`);
      log(`${name} FAILED: ${err.stack}`);
    }
  }
  const lines = [
    `## Scale runs of ${new Date().toISOString()}`,
    '',
    `- command: node bench/run.mjs ${args.join(' ')}`,
    `- ${n.toLocaleString('en')} sessions per store; ${samples.toLocaleString('en')} load() samples over random IDs`,
    '',
    '| store | live sessions | written in | load() p50 ms | load() p99 ms | loads/s (32 in flight) | found |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of results.filter((x) => x.what === 'load()')) {
    lines.push(
      `| ${r.store} | ${n.toLocaleString('en')}${r.usedMemory ? ` (Redis used_memory ${r.usedMemory})` : ''} | ${fmt(r.insertSeconds, 1)} s | ${fmt(r.p50, 3)} | ${fmt(r.p99, 3)} | ${fmt(r.throughput)} | ${r.hits}/${r.samples} |`,
    );
  }
  lines.push(
    '',
    '| store | expired sessions | clearExpired() | removed | notes |',
    '|---|---|---|---|---|',
  );
  for (const r of results.filter((x) => x.what === 'clearExpired()')) {
    lines.push(
      `| ${r.store} | ${r.n.toLocaleString('en')} | ${fmt(r.seconds, 1)} s | ${r.removed.toLocaleString('en')} | ${r.note ?? ''} |`,
    );
  }
  for (const r of results.filter((x) => x.store === 'memory')) {
    lines.push(
      '',
      `Memory store — ${r.what} (RSS after a full GC):`,
      '',
      '| sessions created | RSS MiB | heap used MiB |',
      '|---|---|---|',
    );
    for (const s of r.samples)
      lines.push(
        `| ${s.created.toLocaleString('en')} | ${fmt(s.rssMiB, 1)} | ${fmt(s.heapMiB, 1)} |`,
      );
  }
  if (failures.length) lines.push('', '### Failures', '', ...failures.map((f) => `- ${f}`));
  lines.push('', `Finished in ${fmt((Date.now() - began) / 1000)} s.`);
  const report = lines.join('\n');
  console.log(report);
  const { mkdirSync, writeFileSync } = await import('node:fs');
  mkdirSync(join(BENCH, 'results'), { recursive: true });
  writeFileSync(join(BENCH, 'results', quick ? 'scale-quick.md' : 'scale.md'), `${report}\n`);
  if (failures.length) process.exitCode = 1;
}
