/**
 * The processes this harness starts, and only those: each is tracked by its
 * PID and ended by it (SIGTERM, then SIGKILL after a grace period), on normal
 * exit, on failure and on SIGINT/SIGTERM to the runner.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';

const children = new Set();

export const hasTaskset = spawnSync('taskset', ['-V']).status === 0;

/** Starts `cmd args`, optionally pinned to `cpu` with taskset (which execs: the PID stays). */
export function start(cmd, args, { env, cwd, cpu, log } = {}) {
  const argv =
    cpu !== undefined && hasTaskset ? ['taskset', '-c', String(cpu), cmd, ...args] : [cmd, ...args];
  const child = spawn(argv[0], argv.slice(1), {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
    child.once('error', (err) => {
      children.delete(child);
      resolve({ code: -1, signal: null, error: err });
    });
  });
  child.output = '';
  const sink = log ? createWriteStream(log, { flags: 'a' }) : undefined;
  for (const stream of [child.stdout, child.stderr]) {
    stream.on('data', (chunk) => {
      if (child.output.length < 1_000_000) child.output += chunk;
      sink?.write(chunk);
    });
  }
  child.exited.then(() => sink?.end());
  return child;
}

/** Ends one child by its PID: SIGTERM, then SIGKILL after `graceMs`. */
export async function stop(child, graceMs = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return child.exited;
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {
    return child.exited;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {}
  }, graceMs);
  const result = await child.exited;
  clearTimeout(timer);
  return result;
}

export async function stopAll() {
  await Promise.all([...children].map((child) => stop(child, 3000)));
}

/** Ends every child synchronously (for process 'exit'): SIGKILL by PID. */
function killAllNow() {
  for (const child of children) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {}
  }
}

let installed = false;
export function installSignalHandlers() {
  if (installed) return;
  installed = true;
  process.on('exit', killAllNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, async () => {
      console.error(`\n[bench] ${signal}: stopping the processes this run started`);
      await stopAll();
      process.exit(130);
    });
  }
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Runs a command to completion; resolves to { code, stdout, stderr }. */
export function run(cmd, args, options = {}) {
  const child = start(cmd, args, options);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => {
    stdout += c;
  });
  child.stderr.on('data', (c) => {
    stderr += c;
  });
  return child.exited.then(({ code, signal }) => ({ code, signal, stdout, stderr }));
}

/**
 * CPU time (user + system, in ms) used so far by `pid` and its live
 * descendants, from /proc (Linux only; undefined elsewhere). Counted for the
 * server under test only: Redis and PostgreSQL are separate processes.
 */
export function cpuMs(pid) {
  try {
    let ticks = 0;
    const stack = [pid];
    while (stack.length > 0) {
      const p = stack.pop();
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
      for (const tid of readdirSync(`/proc/${p}/task`)) {
        const children = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').trim();
        if (children) stack.push(...children.split(' ').map(Number));
      }
    }
    return (ticks * 1000) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;
