#!/usr/bin/env node
/**
 * Instructions per request of one server, counted by valgrind's callgrind:
 * unlike CPU time, the count does not move when a neighbour (another tenant,
 * a test suite on the other core) takes the machine, so it can decide
 * between two builds on a shared machine. The server runs under callgrind
 * with `node --single-threaded` (no background compiler or GC threads whose
 * timing would vary); one keep-alive client creates 200 sessions and then
 * sends N requests; the server is stopped and its total read. Two runs, with
 * N₁ and N₂ requests, side by side; (total₂ − total₁) ÷ (N₂ − N₁) is one
 * request, start-up and warm-up cancelled out.
 *
 *   node bench/callgrind.mjs [--server=satchel.mjs] [--adapter=node] [--store=memory]
 *        [--mode=cart|read] [--requests=3000,21000] [--dist=<other build>/dist/]
 *
 * Needs valgrind (Debian: apt-get install valgrind). Two to three minutes
 * for the defaults. The window is long because a full (mark-compact)
 * collection costs about 60 million instructions: over 6,000 requests
 * (run 9's 3000,9000) one more or one fewer moved the limit between 105k
 * and 122k a request, as much as the differences being measured; over
 * 18,000, repeats agree within 1 % (bench/RESULTS.md run 10). The first
 * 3,000 requests leave most of the JIT's warm-up out.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readArgs } from './lib/cli.mjs';
import { freePort } from './lib/proc.mjs';

const { option } = readArgs();
const server = resolve(
  fileURLToPath(new URL('servers/', import.meta.url)),
  option('server', 'satchel.mjs'),
);
const mode = option('mode', 'cart');
const [few, many] = option('requests', '3000,21000').split(',').map(Number);
if (!(few > 0 && many > few)) throw new Error('--requests=<fewer>,<more>');
const env = {
  ...process.env,
  ADAPTER: option('adapter', 'node'),
  STORE: option('store', 'memory'),
  ...(option('dist') === undefined ? {} : { SATCHEL_DIST: option('dist') }),
};

/** The server's total instructions after `count` requests. */
async function instructions(count, port) {
  const child = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      '--callgrind-out-file=/dev/null',
      process.execPath,
      '--single-threaded',
      // V8 sizes the young generation and runs its memory reducer by
      // allocation rate per millisecond, so under valgrind (and more so on
      // a busy machine) the number of collections varied with wall time:
      // repeats differed by up to 15 %. A fixed young generation and no
      // reducer bring repeats within 0.2 %.
      '--min-semi-space-size=32',
      '--max-semi-space-size=32',
      '--no-memory-reducer',
      server,
    ],
    { env: { ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise((done) => child.on('exit', done));
  await new Promise((ready, failed) => {
    child.stdout.on('data', (chunk) => chunk.toString().includes('ready') && ready());
    exited.then(() => failed(new Error(`server exited before it was ready:\n${stderr}`)));
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = (path, cookie) =>
    new Promise((done, failed) => {
      const headers = cookie === undefined ? {} : { cookie };
      http
        .get({ host: '127.0.0.1', port, path, agent, headers }, (res) => {
          res.resume();
          res.on('end', () => done(res.headers['set-cookie']?.[0]?.split(';')[0]));
        })
        .on('error', failed);
    });
  const cookies = [];
  for (let i = 0; i < 200; i++) cookies.push(await get(`/add_to_cart/seed-${i}/`));
  for (let i = 0; i < count; i++) {
    await get(mode === 'cart' ? `/add_to_cart/item-${i % 50}/` : '/cart/', cookies[i % 200]);
  }
  agent.destroy();
  child.kill('SIGTERM');
  await exited;
  const total = stderr.match(/Collected : (\d+)/)?.[1];
  if (total === undefined) throw new Error(`no callgrind total:\n${stderr}`);
  return Number(total);
}

// Ports the system hands out: two runs side by side (pid-derived ports did collide) never share one.
const [portOne, portTwo] = [await freePort(), await freePort()];
const [one, two] = await Promise.all([instructions(few, portOne), instructions(many, portTwo)]);
const perRequest = Math.round((two - one) / (many - few));
console.log(
  `${option('server', 'satchel.mjs')} ${env.ADAPTER}/${env.STORE} ${mode}: ${perRequest.toLocaleString('en')} instructions per request ` +
    `(${one.toLocaleString('en')} after ${few}, ${two.toLocaleString('en')} after ${many})`,
);
