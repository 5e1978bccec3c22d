/** One wrk cell against a bench server, with the server's CPU µs per request when its PID is given. */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuMs, run } from './proc.mjs';

const LUA = join(dirname(fileURLToPath(import.meta.url)), '..', 'wrk', 'sessions.lua');

export async function wrkCell({ port, mode, seconds, cookieFile, connections, cpu, serverPid }) {
  const cpuBefore = serverPid === undefined ? undefined : cpuMs(serverPid);
  const flags = ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '-s', LUA];
  const result = await run('wrk', [...flags, `http://127.0.0.1:${port}`], {
    env: { BENCH_COOKIES: cookieFile, BENCH_MODE: mode },
    cpu,
  });
  const line = result.stdout.split('\n').find((l) => l.startsWith('BENCH_JSON '));
  if (!line) throw new Error(`wrk printed no result:\n${result.stdout}\n${result.stderr}`);
  const r = JSON.parse(line.slice('BENCH_JSON '.length));
  const cpuAfter = serverPid === undefined ? undefined : cpuMs(serverPid);
  return {
    cpuUs: ((cpuAfter - cpuBefore) * 1000) / r.requests,
    requests: r.requests,
    rps: r.requests / (r.duration_us / 1e6),
    p50: r.p50_us / 1000,
    p99: r.p99_us / 1000,
    errors: r.non2xx + r.connect + r.read + r.write + r.timeout,
    detail: r,
  };
}
