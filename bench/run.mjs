#!/usr/bin/env node
/**
 * satchel's benchmark runner: one command installs what the comparison needs,
 * builds satchel, starts each contender (one server process on 127.0.0.1),
 * loads it with wrk and prints req/s, p50/p99 and the ratio to the limit
 * measured in the same run. See README.md.
 *
 *   node bench/run.mjs            full run (10 s per cell after a warm-up)
 *   node bench/run.mjs --quick    CI smoke: fewer contenders, short cells, < 2 min
 *   node bench/run.mjs --scale    the scale runs (1,000,000 sessions), see scale.mjs
 *
 * Other flags: --only=<regexp> (contender names), --duration=<s>, --warmup=<s>,
 * --connections=<n>, --hammer=<n>, --repeat=<n>, --no-setup, --no-build, --no-pin.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PG_URL, REDIS_URL, readArgs } from './lib/cli.mjs';
import { hammer, seedSessions, waitReady } from './lib/http.mjs';
import { wrkCell } from './lib/wrk.mjs';
import { cpuMs, freePort, installSignalHandlers, start, stop, stopAll } from './lib/proc.mjs';

const BENCH = dirname(fileURLToPath(import.meta.url));
const ROOT = join(BENCH, '..');
const { argv: args, flag, option, only, pin } = readArgs();

const quick = flag('quick');
const settings = {
  duration: Number(option('duration', quick ? 2 : 10)),
  warmup: Number(option('warmup', quick ? 1 : 3)),
  connections: Number(option('connections', 32)),
  sessions: 200,
  hammerTotal: Number(option('hammer', quick ? 256 : 2560)),
  // Cells a and b run this many times back to back; the one with the least server CPU per request is kept.
  repeat: Math.max(1, Number(option('repeat', 1))),
  hammerConnections: 64,
  pin,
};
const SERVER_CPU = settings.pin ? 0 : undefined;
const LOAD_CPU = settings.pin ? 1 : undefined;

function log(message) {
  process.stderr.write(`[bench] ${message}\n`);
}

function sh(cmd, cmdArgs, cwd) {
  const result = spawnSync(cmd, cmdArgs, { cwd, stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`${cmd} ${cmdArgs.join(' ')} failed (${result.status})`);
}

// ---------------------------------------------------------------- setup ---

function setup() {
  if (!flag('no-setup')) sh('bash', [join(BENCH, 'setup.sh')], BENCH);
  if (!flag('no-build')) {
    log('building satchel (npm run build in the repository root)');
    sh('npm', ['run', '--silent', 'build'], ROOT);
  }
}

const dist = (path) => existsSync(join(ROOT, 'dist', path));

async function redisUp() {
  const { createClient } = await import('redis');
  const client = createClient({ url: REDIS_URL, socket: { reconnectStrategy: false } });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
    return client;
  } catch {
    return undefined;
  }
}

async function postgresUp() {
  try {
    const { default: pg } = await import('pg');
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    await client.end();
    return true;
  } catch {
    return false;
  }
}

async function resolvable(name) {
  try {
    await import(name);
    return true;
  } catch {
    return false;
  }
}

/** Removes the keys bench servers left in Redis (only the bench's own prefixes). */
async function cleanRedis(client) {
  if (!client) return;
  for (const pattern of ['satchel-bench:*', 'sessbench:*']) {
    const keys = [];
    for await (const batch of client.scanIterator({ MATCH: pattern, COUNT: 1000 })) {
      keys.push(...batch);
    }
    for (let i = 0; i < keys.length; i += 1000) await client.unlink(keys.slice(i, i + 1000));
  }
}

// ---------------------------------------------------------- contenders ---

function contenders(env) {
  const node = (name, script, extra = {}, meta = {}) => ({
    name,
    cmd: process.execPath,
    args: [join(BENCH, 'servers', script)],
    env: extra,
    ...meta,
  });
  const django = (engine, meta = {}, workerArgs = ['--worker-class', 'sync']) => ({
    name: `django ${engine}${meta.suffix ?? ''}`,
    cmd: '/usr/bin/gunicorn',
    args: [
      '--chdir',
      join(BENCH, 'django'),
      '--workers',
      '1',
      ...workerArgs,
      '--log-level',
      'warning',
      '--bind',
      '127.0.0.1:$PORT',
      'app:application',
    ],
    env: { BENCH_SESSION_ENGINE: engine },
    ...meta,
  });
  const satchel = (adapter, store, meta = {}) =>
    node(`satchel ${adapter} ${store}`, 'satchel.mjs', { ADAPTER: adapter, STORE: store }, meta);

  const list = [
    node('limit (node:http + Map)', 'limit.mjs', {}, { limit: true, quick: true }),
    node('express 5 + Map', 'express-bare.mjs', {}, { quick: true }),
    node('express-session memory', 'express-session.mjs', { STORE: 'memory' }, { quick: true }),
    node('express-session redis', 'express-session.mjs', { STORE: 'redis' }, { needs: 'redis' }),
    django('file', { quick: true }),
    django('db'),
    django('cache'),
  ];
  const stores = ['memory', 'sqlite', 'file', 'redis', 'postgres'];
  const storeNeeds = { redis: 'redis', postgres: 'postgres' };
  for (const store of stores) {
    list.push(
      satchel('node', store, {
        needs: storeNeeds[store],
        quick: store !== 'postgres',
      }),
    );
  }
  for (const store of stores) {
    list.push(satchel('express', store, { needs: storeNeeds[store], quick: store === 'memory' }));
  }
  // Each framework alone, so satchel's own cost can be told apart on every adapter.
  list.push(node('fastify 5 + Map', 'fastify-bare.mjs', {}, { needs: 'fastify', quick: true }));
  list.push(satchel('fastify', 'memory', { needs: 'fastify', quick: true }));
  list.push(node('hono 4 + Map', 'hono-bare.mjs', {}, { needs: 'hono', quick: true }));
  list.push(satchel('hono', 'memory', { needs: 'hono', quick: true }));
  // Not a contender for the tables: Django with 8 threads in its one worker,
  // to show what its sessions do to concurrent updates (workload c only).
  list.push(
    django('file', { suffix: ' (gthread, 8 threads)', workloads: ['c'] }, [
      '--worker-class',
      'gthread',
      '--threads',
      '8',
    ]),
  );

  // A probe, run only when --only names it: load/commit by hand, no adapter (what the adapter costs).
  list.push(satchel('direct', 'memory', { probe: true }));

  // The limit again at the end: how much the machine drifted during the run.
  if (!quick) list.push(node('limit again (end of run)', 'limit.mjs', {}, { drift: true }));

  return list.filter((c) => {
    if (quick && !c.quick) return false;
    if (only && !only.test(c.name) && !c.limit) return false;
    if (only && c.drift) return false;
    if (c.probe && !only) return false;
    if (c.needs && !env[c.needs]) {
      log(`skipping ${c.name}: ${c.needs} is not available`);
      return false;
    }
    return true;
  });
}

// --------------------------------------------------------------- load ---

function wrk(port, mode, seconds, cookieFile, serverPid) {
  const { connections } = settings;
  return wrkCell({ port, mode, seconds, cookieFile, connections, cpu: LOAD_CPU, serverPid });
}

/**
 * The least-disturbed of `n` runs of a cell: on a shared machine another
 * tenant only ever adds CPU time per request, so the minimum is the truest.
 * A run with errors is kept whatever its speed, so the failure is reported.
 */
async function bestOf(n, cell) {
  let best;
  for (let i = 0; i < n; i++) {
    const r = await cell();
    if (r.errors > 0 || r.requests === 0) return r;
    if (!best || r.cpuUs < best.cpuUs) best = r;
  }
  return best;
}

async function bench(contender, dataRoot) {
  const port = await freePort();
  const dataDir = mkdtempSync(join(dataRoot, 'c-'));
  const args = contender.args.map((a) => a.replace('$PORT', String(port)));
  const child = start(contender.cmd, args, {
    env: {
      ...contender.env,
      PORT: String(port),
      DATA_DIR: dataDir,
      BENCH_DATA_DIR: dataDir,
      REDIS_URL,
      PG_URL,
      NODE_ENV: 'production',
    },
    cwd: BENCH,
    cpu: SERVER_CPU,
    log: join(dataRoot, `${contender.name.replace(/\W+/g, '_')}.log`),
  });
  const rows = [];
  const failures = [];
  try {
    await waitReady(port, child);
    const workloads = contender.workloads ?? ['a', 'b', 'c'];
    if (workloads.includes('a') || workloads.includes('b')) {
      const cookies = await seedSessions(port, settings.sessions);
      const cookieFile = join(dataDir, 'cookies.txt');
      writeFileSync(cookieFile, `${cookies.join('\n')}\n`);
      await wrk(port, 'cart', settings.warmup, cookieFile);
      for (const [workload, mode] of [
        ['a', 'cart'],
        ['b', 'read'],
      ]) {
        if (!workloads.includes(workload)) continue;
        const r = await bestOf(settings.repeat, () =>
          wrk(port, mode, settings.duration, cookieFile, child.pid),
        );
        rows.push({
          contender: contender.name,
          workload,
          limit: contender.limit,
          load: loadavg()[0],
          ...r,
        });
        if (r.errors > 0 || r.requests === 0) {
          failures.push(`${contender.name} ${workload}: ${JSON.stringify(r.detail)}`);
        }
      }
    }
    if (workloads.includes('c')) {
      const cpuBefore = cpuMs(child.pid);
      const r = await hammer(port, {
        total: settings.hammerTotal,
        connections: settings.hammerConnections,
      });
      r.cpuUs = ((cpuMs(child.pid) - cpuBefore) * 1000) / r.requests;
      rows.push({
        contender: contender.name,
        workload: 'c',
        limit: contender.limit,
        load: loadavg()[0],
        ...r,
        errors: r.requests - r.ok,
      });
      if (r.ok !== r.requests) {
        failures.push(`${contender.name} c: statuses ${JSON.stringify(r.statuses)}`);
      }
    }
  } catch (err) {
    failures.push(`${contender.name}: ${err.message}`);
  } finally {
    await stop(child);
    rmSync(dataDir, { recursive: true, force: true });
  }
  return { rows, failures };
}

// -------------------------------------------------------------- report ---

const WORKLOADS = {
  a: 'cart (add_to_cart, 200 sessions)',
  b: 'read-only page',
  c: `one session, ${settings.hammerConnections} conns`,
};

function fmt(n, digits = 0) {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

function table(rows) {
  const limit = new Map(rows.filter((r) => r.limit).map((r) => [r.workload, r]));
  const out = [];
  const header = [
    'contender',
    'workload',
    'req/s',
    'p50 ms',
    'p99 ms',
    'ratio',
    'server CPU µs/req',
    'CPU ratio',
    'kept/sent',
  ];
  out.push(`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`);
  for (const workload of ['a', 'b', 'c']) {
    for (const r of rows.filter((x) => x.workload === workload)) {
      r.ratio = r.rps / limit.get(workload)?.rps;
      r.cpuRatio = limit.get(workload)?.cpuUs / r.cpuUs;
      const kept = workload === 'c' ? `${r.kept}/${r.ok}` : '';
      out.push(
        `| ${r.contender} | ${workload}: ${WORKLOADS[workload]} | ${fmt(r.rps)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${fmt(r.ratio, 2)} | ${fmt(r.cpuUs)} | ${fmt(r.cpuRatio, 2)} | ${kept} |`,
      );
    }
  }
  return out.join('\n');
}

function targets(rows) {
  const find = (name, workload = 'a') =>
    rows.find((r) => r.contender === name && r.workload === workload);
  const lines = [];
  const check = (label, ok, evidence) =>
    lines.push(`| ${label} | ${ok === undefined ? 'n/a' : ok ? 'met' : 'MISSED'} | ${evidence} |`);
  for (const [store, min] of [
    ['memory', 0.75],
    ['sqlite', 0.5],
    ['redis', 0.4],
  ]) {
    for (const w of ['a', 'b']) {
      const r = find(`satchel node ${store}`, w);
      check(
        `satchel node:http ${store} ≥ ${min} × limit (${w})`,
        r && r.ratio >= min,
        r
          ? `ratio ${fmt(r.ratio, 2)} (${fmt(r.rps)} req/s); CPU ratio ${fmt(r.cpuRatio, 2)} (${fmt(r.cpuUs)} µs/req)`
          : 'not run',
      );
    }
  }
  for (const w of ['a', 'b']) {
    const bare = find('express 5 + Map', w);
    const ours = find('satchel express memory', w);
    const rel = ours && bare ? ours.rps / bare.rps : undefined;
    check(
      `satchel express memory within 10% of bare Express (${w})`,
      rel === undefined ? undefined : rel >= 0.9,
      rel === undefined
        ? 'not run'
        : `${fmt(rel * 100, 1)}% of bare Express's req/s; CPU µs/req ${fmt(ours.cpuUs)} vs ${fmt(bare.cpuUs)} (${fmt((100 * bare.cpuUs) / ours.cpuUs, 1)}%)`,
    );
  }
  const pairs = [
    ['satchel express memory', 'express-session memory'],
    ['satchel express redis', 'express-session redis'],
    ['satchel node memory', 'django cache'],
    ['satchel node sqlite', 'django db'],
    ['satchel node file', 'django file'],
    ['satchel node postgres', 'django db'],
  ];
  for (const [ours, theirs] of pairs) {
    for (const w of ['a', 'b', 'c']) {
      const a = find(ours, w);
      const b = find(theirs, w);
      const ok = a && b ? a.rps > b.rps && (w !== 'c' || a.kept >= b.kept) : undefined;
      check(
        `${ours} ahead of ${theirs} (${w})`,
        ok,
        a && b
          ? `${fmt(a.rps)} vs ${fmt(b.rps)} req/s, CPU µs/req ${fmt(a.cpuUs)} vs ${fmt(b.cpuUs)}${w === 'c' ? `, kept ${a.kept}/${a.ok} vs ${b.kept}/${b.ok}` : ''}`
          : 'not run',
      );
    }
  }
  return ['| target | result | evidence |', '|---|---|---|', ...lines].join('\n');
}

let loadRange = '-';

function machine() {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const wrkVersion = spawnSync('wrk', ['-v'], { encoding: 'utf8' }).stdout?.split('\n')[0];
  const django = spawnSync('/usr/bin/python3', ['-c', 'import django;print(django.__version__)'], {
    encoding: 'utf8',
  }).stdout?.trim();
  return [
    `- date: ${new Date().toISOString()}`,
    `- command: node bench/run.mjs ${args.join(' ')}`.trimEnd(),
    `- cpus: ${cpus().length} × ${model}; memory ${fmt(totalmem() / 2 ** 30, 1)} GiB`,
    `- node ${process.version}; ${wrkVersion ?? 'wrk ?'}; Django ${django || '?'}`,
    `- load: wrk -t1 -c${settings.connections}, warm-up ${settings.warmup} s, ${settings.duration} s per cell${settings.repeat > 1 ? ` (a and b: best of ${settings.repeat} by server CPU)` : ''}; ` +
      `${settings.sessions} live sessions; hammer ${settings.hammerTotal} appends over ${settings.hammerConnections} connections`,
    `- load average (1 min) while measuring: ${loadRange}`,
    `- pinning: ${settings.pin ? 'server on CPU 0, load generator on CPU 1 (taskset)' : 'none'}`,
  ].join('\n');
}

// ---------------------------------------------------------------- main ---

async function main() {
  installSignalHandlers();
  if (flag('scale')) {
    setup();
    const { runScale } = await import('./scale.mjs');
    await runScale({ quick, args });
    return;
  }
  const began = Date.now();
  setup();
  if (settings.pin) spawnSync('taskset', ['-pc', String(LOAD_CPU), String(process.pid)]);
  const redis = await redisUp();
  const env = {
    redis: redis !== undefined && dist('stores/redis.js'),
    postgres: dist('stores/postgres.js') && (await postgresUp()),
    fastify: dist('adapters/fastify.js') && (await resolvable('fastify')),
    hono:
      dist('adapters/hono.js') &&
      (await resolvable('hono')) &&
      (await resolvable('@hono/node-server')),
  };
  const dataRoot = mkdtempSync(join(tmpdir(), 'satchel-bench-'));
  const rows = [];
  const failures = [];
  const list = contenders(env);
  try {
    await cleanRedis(redis);
    for (const [i, contender] of list.entries()) {
      log(`(${i + 1}/${list.length}) ${contender.name}`);
      const result = await bench(contender, dataRoot);
      rows.push(...result.rows);
      failures.push(...result.failures);
      for (const r of result.rows) {
        log(
          `    ${r.workload}: ${fmt(r.rps)} req/s, p50 ${fmt(r.p50, 2)} ms, p99 ${fmt(r.p99, 2)} ms, ${fmt(r.cpuUs)} CPU µs/req` +
            (r.workload === 'c' ? `, kept ${r.kept}/${r.ok}` : '') +
            `, load average ${fmt(r.load, 1)}`,
        );
      }
      for (const f of result.failures) log(`    FAILED ${f}`);
    }
  } finally {
    await stopAll();
    await cleanRedis(redis).catch(() => {});
    await redis?.quit().catch(() => {});
  }
  const loads = rows.map((r) => r.load).filter(Number.isFinite);
  if (loads.length) loadRange = `${fmt(Math.min(...loads), 1)} to ${fmt(Math.max(...loads), 1)}`;
  const report = [
    `## Run of ${new Date().toISOString().slice(0, 10)}${quick ? ' (quick)' : ''}`,
    '',
    machine(),
    '',
    table(rows),
    '',
    ...(quick ? [] : ['### Targets', '', targets(rows), '']),
    failures.length ? `### Failures\n\n${failures.map((f) => `- ${f}`).join('\n')}\n` : '',
    `Finished in ${fmt((Date.now() - began) / 1000)} s.`,
  ].join('\n');
  console.log(report);
  mkdirSync(join(BENCH, 'results'), { recursive: true });
  const stamp = quick ? 'quick' : 'full';
  writeFileSync(join(BENCH, 'results', `${stamp}.md`), `${report}\n`);
  writeFileSync(
    join(BENCH, 'results', `${stamp}.json`),
    JSON.stringify({ settings, rows }, null, 2),
  );
  if (failures.length > 0 || rows.length === 0) {
    log(`${failures.length} failure(s); logs in ${dataRoot}`);
    process.exitCode = 1;
  } else {
    rmSync(dataRoot, { recursive: true, force: true });
  }
}

main().catch(async (err) => {
  console.error(err);
  await stopAll();
  process.exit(1);
});
