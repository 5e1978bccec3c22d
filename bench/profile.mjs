#!/usr/bin/env node
/**
 * Profiles one satchel contender under the cart (or read-only) workload:
 * starts it with `node --cpu-prof`, seeds 200 sessions, runs wrk, stops it
 * (its profile is written on exit) and prints the hottest functions by self
 * time and the satchel functions by inclusive time. Load the .cpuprofile in
 * Chrome DevTools or speedscope for the flame graph.
 *
 *   node bench/profile.mjs [--adapter=node] [--store=memory] [--mode=cart|read] [--duration=10]
 *        [--server=satchel.mjs] [--interval=1000 (µs between samples)]
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { seedSessions, waitReady } from './lib/http.mjs';
import { freePort, installSignalHandlers, run, start, stop } from './lib/proc.mjs';

const BENCH = dirname(fileURLToPath(import.meta.url));
const option = (name, fallback) => {
  const hit = process.argv.slice(2).find((a) => a.startsWith(`--${name}=`));
  return hit === undefined ? fallback : hit.slice(name.length + 3);
};
const adapter = option('adapter', 'node');
const store = option('store', 'memory');
const mode = option('mode', 'cart');
const duration = Number(option('duration', 10));
const server = option('server', 'satchel.mjs');
// Sampling interval in µs (V8's default is 1000).
const interval = option('interval', '1000');

/** Self and inclusive time per function (name + file:line) from a V8 .cpuprofile. */
export function summarize(profile, top = 25) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map();
  const deltas = profile.timeDeltas;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + (deltas[i + 1] ?? 0));
  }
  const label = (n) => {
    const f = n.callFrame;
    const file = f.url.replace(/^file:\/\//, '').replace(/.*\/(dist|node_modules|bench)\//, '$1/');
    return `${f.functionName || '(anonymous)'} ${file ? `${file}:${f.lineNumber + 1}` : ''}`.trim();
  };
  const self = new Map();
  const incl = new Map();
  let total = 0;
  for (const [id, us] of selfUs) {
    total += us;
    const key = label(nodes.get(id));
    self.set(key, (self.get(key) ?? 0) + us);
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const k = label(nodes.get(cur));
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + us);
    }
  }
  const pct = (us) => `${((100 * us) / total).toFixed(1).padStart(5)}%`;
  const lines = [`total sampled: ${(total / 1e6).toFixed(2)} s`, '', 'self time:'];
  for (const [k, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    lines.push(`  ${pct(us)}  ${k}`);
  }
  lines.push('', 'inclusive time, satchel (dist/) functions:');
  for (const [k, us] of [...incl]
    .filter(([k]) => k.includes('dist/'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)) {
    lines.push(`  ${pct(us)}  ${k}`);
  }
  return lines.join('\n');
}

async function main() {
  installSignalHandlers();
  const dir = join(BENCH, 'results', 'profiles', `${adapter}-${store}-${mode}-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const child = start(
    process.execPath,
    [
      '--cpu-prof',
      `--cpu-prof-interval=${interval}`,
      `--cpu-prof-dir=${dir}`,
      join(BENCH, 'servers', server),
    ],
    {
      env: {
        ADAPTER: adapter,
        STORE: store,
        PORT: String(port),
        DATA_DIR: join(tmpdir(), 'satchel-bench-prof'),
      },
      cwd: BENCH,
    },
  );
  try {
    await waitReady(port, child);
    const cookies = await seedSessions(port, 200);
    const cookieFile = join(dir, 'cookies.txt');
    writeFileSync(cookieFile, `${cookies.join('\n')}\n`);
    const r = await run(
      'wrk',
      [
        '-t1',
        '-c32',
        `-d${duration}s`,
        '-s',
        join(BENCH, 'wrk', 'sessions.lua'),
        `http://127.0.0.1:${port}`,
      ],
      { env: { BENCH_COOKIES: cookieFile, BENCH_MODE: mode } },
    );
    console.log(r.stdout.split('\n').find((l) => l.startsWith('BENCH_JSON')));
  } finally {
    await stop(child);
  }
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile written in ${dir}`);
  const summary = summarize(JSON.parse(readFileSync(join(dir, file), 'utf8')));
  writeFileSync(join(dir, 'summary.txt'), `${summary}\n`);
  console.log(`${join(dir, file)}\n\n${summary}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
