#!/usr/bin/env node
/**
 * Interleaved A/B runs for noisy machines. run.mjs measures contenders one
 * after another, so host interference (steal time, a neighbour's build) lands
 * on whichever one is running and skews the ratios: identical code measured 88
 * and 153 CPU µs/request minutes apart. Here all selected servers run at once
 * and each round gives every contender, in turn, one cell of workload a and
 * one of b: interference spread over the run hits them all alike, and as a
 * neighbour only ever adds CPU time per request, the minimum over the rounds
 * is the truest figure (the median shows the spread).
 *
 *   node bench/interleave.mjs --only=<regexp> [--rounds=8] [--duration=2]
 *        [--warmup=2] [--cell-warmup=1] [--connections=32] [--no-pin] [--compare=<other>/dist]
 *
 * --compare runs every selected satchel contender a second time on another
 * build (named after the folder holding that dist/, which must also reach a
 * node_modules): the before/after of a change, measured side by side.
 *
 * The limit always runs; Redis/PostgreSQL contenders and the probe 'satchel direct
 * memory' only when --only names them. Linux (/proc). No setup or build (see run.mjs).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PG_URL, REDIS_URL, readArgs } from './lib/cli.mjs';
import { seedSessions, waitReady } from './lib/http.mjs';
import { wrkCell } from './lib/wrk.mjs';
import { freePort, installSignalHandlers, start, stopAll } from './lib/proc.mjs';

const BENCH = dirname(fileURLToPath(import.meta.url));
const { argv: args, option, only, pin } = readArgs();
const settings = {
  rounds: Math.max(1, Number(option('rounds', 8))),
  duration: Number(option('duration', 2)),
  warmup: Number(option('warmup', 2)),
  cellWarmup: Number(option('cell-warmup', 1)),
  connections: Number(option('connections', 32)),
  sessions: 200,
  pin,
};
const SERVER_CPU = settings.pin ? 0 : undefined;
const LOAD_CPU = settings.pin ? 1 : undefined;
const SERVER_ENV = { REDIS_URL, PG_URL, NODE_ENV: 'production' };
const log = (message) => process.stderr.write(`[interleave] ${message}\n`);

/**
 * run.mjs's node contenders (no Django, no workload c); `bare`: the same
 * framework alone, or for a network store, the limit over that store.
 */
function contenders() {
  const node = (name, script, env = {}, meta = {}) => ({ name, script, env, ...meta });
  const satchel = (adapter, store, meta = {}) =>
    node(`satchel ${adapter} ${store}`, 'satchel.mjs', { ADAPTER: adapter, STORE: store }, meta);
  const services = { redis: { needsRedis: true, optIn: true }, postgres: { optIn: true } };
  const list = [
    node('limit (node:http + Map)', 'limit.mjs', {}, { limit: true, frame: 'node' }),
    node('express 5 + Map', 'express-bare.mjs', {}, { frame: 'express' }),
    node('express-session memory', 'express-session.mjs', { STORE: 'memory' }),
    node('express-session redis', 'express-session.mjs', { STORE: 'redis' }, services.redis),
  ];
  for (const adapter of ['node', 'express']) {
    for (const store of ['memory', 'sqlite', 'file', 'redis', 'postgres']) {
      list.push(satchel(adapter, store, services[store]));
    }
  }
  list.push(node('fastify 5 + Map', 'fastify-bare.mjs', {}, { frame: 'fastify' }));
  list.push(satchel('fastify', 'memory'));
  list.push(node('hono 4 + Map', 'hono-bare.mjs', {}, { frame: 'hono' }));
  list.push(satchel('hono', 'memory'));
  list.push(satchel('direct', 'memory', { optIn: true }));
  // The limit with its carts in Redis or PostgreSQL: the same round trips, no session library.
  for (const store of ['redis', 'postgres']) {
    const floor = { ...services[store], frame: `node ${store}` };
    list.push(node(`limit + ${store} (node:http)`, 'limit-store.mjs', { STORE: store }, floor));
  }
  for (const c of list) {
    if (c.script !== 'satchel.mjs') continue;
    const frame = c.env.STORE === 'memory' ? c.env.ADAPTER : `${c.env.ADAPTER} ${c.env.STORE}`;
    c.bare = list.find((b) => b.frame === frame)?.name;
  }
  const chosen = list.filter((c) => c.limit || (only ? only.test(c.name) : !c.optIn));
  return compare ? [...chosen, ...chosen.filter(isSatchel).map(againstBuild)] : chosen;
}

/** Each satchel contender once more, on another build's dist/ (`--compare=<dir>`): a before/after line. */
const compare = option('compare');
const isSatchel = (c) => c.script === 'satchel.mjs';
function againstBuild(c) {
  const dist = pathToFileURL(`${resolve(compare)}/`).href;
  return {
    ...c,
    name: `${c.name} @${basename(resolve(compare, '..'))}`,
    env: { ...c.env, SATCHEL_DIST: dist },
  };
}

/** One wrk cell exactly as run.mjs runs it, with the server's CPU µs per request. */
function wrk(server, mode, seconds) {
  const { port, cookieFile, child } = server;
  const { connections } = settings;
  return wrkCell({
    port,
    mode,
    seconds,
    cookieFile,
    connections,
    cpu: LOAD_CPU,
    serverPid: child.pid,
  });
}

/** Starts every contender at once (all on SERVER_CPU), then seeds and warms each up. */
async function startAll(list, dataRoot, servers) {
  for (const c of list) {
    const port = await freePort();
    const dataDir = mkdtempSync(join(dataRoot, 'c-'));
    const env = { ...c.env, ...SERVER_ENV, DATA_DIR: dataDir, BENCH_DATA_DIR: dataDir };
    const child = start(process.execPath, [join(BENCH, 'servers', c.script)], {
      env: { ...env, PORT: String(port) },
      cwd: BENCH,
      cpu: SERVER_CPU,
      log: join(dataRoot, `${c.name.replace(/\W+/g, '_')}.log`),
    });
    servers.push({ ...c, port, dataDir, child, cells: { a: [], b: [] } });
  }
  for (const s of servers) {
    await waitReady(s.port, s.child).catch((err) => {
      throw new Error(`${s.name} did not start: ${err.message}`);
    });
    const cookies = await seedSessions(s.port, settings.sessions);
    s.cookieFile = join(s.dataDir, 'cookies.txt');
    writeFileSync(s.cookieFile, `${cookies.join('\n')}\n`);
    await wrk(s, 'cart', settings.warmup);
    log(`ready: ${s.name} (pid ${s.child.pid}, port ${s.port})`);
  }
}

/** Steal and all ticks so far on the servers' CPU (all CPUs unpinned), from /proc/stat. */
function stealTicks() {
  const lines = readFileSync('/proc/stat', 'utf8').split('\n');
  const fields = lines.find((l) => l.startsWith(`cpu${SERVER_CPU ?? ''} `)).split(/\s+/);
  const ticks = fields.slice(1, 9).map(Number); // user nice system idle iowait irq softirq steal
  return { steal: ticks[7], total: ticks.reduce((sum, t) => sum + t, 0) };
}

async function rounds(servers, failures) {
  for (let round = 1; round <= settings.rounds; round++) {
    // Odd rounds run the contenders in order, even rounds in reverse: no one always goes first.
    for (const s of round % 2 === 1 ? servers : [...servers].reverse()) {
      for (const [workload, mode] of Object.entries({ a: 'cart', b: 'read' })) {
        // An idle server's V8 shrinks its heap and may drop compiled code
        // while the others run: an unmeasured second brings it back first.
        if (settings.cellWarmup > 0) await wrk(s, mode, settings.cellWarmup);
        const r = await wrk(s, mode, settings.duration);
        s.cells[workload].push({ round, ...r });
        const what = `${s.name} ${workload} round ${round}: ${r.errors} errors`;
        if (r.errors > 0 || r.requests === 0) failures.push(`${what}, ${r.requests} requests`);
      }
    }
    const a = servers.map((s) => `${s.name} ${fmt(s.cells.a.at(-1).cpuUs)}`).join(', ');
    log(`round ${round}/${settings.rounds} (a, CPU µs/req): ${a}`);
  }
}

const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '-');

function summarize(s, workload) {
  const cells = s.cells[workload];
  const sorted = cells.map((c) => c.cpuUs).sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  const best = cells.reduce((x, y) => (y.cpuUs < x.cpuUs ? y : x));
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { min: best.cpuUs, median, rps: best.rps };
}

const HEADER =
  '| contender | min CPU µs/req | median CPU µs/req | CPU ratio | req/s (min-CPU round) |' +
  ' added µs/req vs limit | satchel ÷ bare framework (or store floor) |';

function table(servers, workload) {
  const stats = new Map(servers.map((s) => [s.name, summarize(s, workload)]));
  const limit = stats.get(servers.find((s) => s.limit).name);
  const out = [HEADER, `|${'---|'.repeat(7)}`];
  for (const s of servers) {
    const st = stats.get(s.name);
    const added = s.name.startsWith('satchel ') ? fmt(st.min - limit.min) : '';
    const bare = stats.get(s.bare);
    const vsBare = bare ? `${fmt(st.min / bare.min, 2)} (vs ${s.bare})` : '';
    const row = [s.name, fmt(st.min), fmt(st.median), fmt(limit.min / st.min, 2), fmt(st.rps)];
    out.push(`| ${[...row, added, vsBare].join(' | ')} |`);
  }
  return { text: out.join('\n'), stats: Object.fromEntries(stats) };
}

/** Removes the keys bench servers left in Redis (only the bench's own prefixes). */
async function cleanRedis() {
  const { createClient } = await import('redis');
  const client = createClient({ url: REDIS_URL, socket: { reconnectStrategy: false } });
  client.on('error', () => {});
  await client.connect();
  for (const pattern of ['satchel-bench:*', 'sessbench:*']) {
    for await (const keys of client.scanIterator({ MATCH: pattern, COUNT: 1000 })) {
      if (keys.length) await client.unlink(keys);
    }
  }
  await client.quit();
}

function report(servers, steal, failures) {
  const tables = { a: table(servers, 'a'), b: table(servers, 'b') };
  const text = [
    `## Interleaved run of ${new Date().toISOString()}`,
    '',
    `- command: node bench/interleave.mjs ${args.join(' ')}`.trimEnd(),
    `- node ${process.version}; wrk -t1 -c${settings.connections}; warm-up ${settings.warmup} s; ${settings.rounds} rounds × ${settings.duration} s per cell, each after ${settings.cellWarmup} s unmeasured, contenders in turn (reversed every other round); ${settings.sessions} live sessions each`,
    `- pinning: ${settings.pin ? 'servers on CPU 0, load generator on CPU 1 (taskset)' : 'none'}; steal during the rounds: ${fmt(steal, 1)}% of ${settings.pin ? 'CPU 0' : 'all CPUs'}'s time`,
    `\n### a: cart (add_to_cart, 200 sessions)\n\n${tables.a.text}`,
    `\n### b: read-only page\n\n${tables.b.text}\n`,
    "CPU ratio: the limit's min ÷ the contender's min. Satchel ÷ bare framework: by min CPU µs/req.",
    failures.length ? `\n### Failures\n\n${failures.map((f) => `- ${f}`).join('\n')}` : '',
  ].join('\n');
  console.log(text);
  mkdirSync(join(BENCH, 'results'), { recursive: true });
  writeFileSync(join(BENCH, 'results', 'interleave.md'), `${text}\n`);
  const raw = servers.map(({ name, cells }) => ({ name, cells }));
  const summary = { a: tables.a.stats, b: tables.b.stats };
  const json = JSON.stringify({ settings, steal, summary, contenders: raw, failures }, null, 2);
  writeFileSync(join(BENCH, 'results', 'interleave.json'), json);
}

async function main() {
  installSignalHandlers();
  if (settings.pin) spawnSync('taskset', ['-pc', String(LOAD_CPU), String(process.pid)]);
  const list = contenders();
  log(`contenders: ${list.map((c) => c.name).join(', ')}`);
  const usesRedis = list.some((c) => c.needsRedis);
  const dataRoot = mkdtempSync(join(tmpdir(), 'satchel-interleave-'));
  const failures = [];
  const servers = [];
  try {
    if (usesRedis) await cleanRedis();
    await startAll(list, dataRoot, servers);
    const before = stealTicks();
    await rounds(servers, failures);
    const after = stealTicks();
    const steal = (100 * (after.steal - before.steal)) / (after.total - before.total || 1);
    report(servers, steal, failures);
  } catch (err) {
    failures.push(err.message);
    log(`FAILED ${err.message}`);
  } finally {
    await stopAll();
    for (const s of servers) rmSync(s.dataDir, { recursive: true, force: true });
    if (usesRedis) await cleanRedis().catch((err) => log(`cleaning Redis: ${err.message}`));
  }
  if (failures.length) log(`${failures.length} failure(s); server logs in ${dataRoot}`);
  else rmSync(dataRoot, { recursive: true, force: true });
  process.exitCode = failures.length ? 1 : 0;
}

main().catch((err) => {
  console.error(err);
  process.exit(1); // the 'exit' handler kills what this run started, by PID
});
