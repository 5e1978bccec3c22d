/** A small HTTP client for seeding sessions and the one-session hammer. */
import { Agent, request } from 'node:http';

export function get(port, path, { cookie, agent } = {}) {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'GET',
        agent: agent ?? false,
        headers: cookie ? { cookie } : {},
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`timeout on ${path}`)));
    req.on('error', reject);
    req.end();
  });
}

/** The first Set-Cookie's name=value, or undefined. */
export function cookieOf(res) {
  const header = res.headers['set-cookie'];
  const first = Array.isArray(header) ? header[0] : header;
  return first?.split(';')[0];
}

export async function waitReady(port, child, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`exited before answering:\n${child.output.slice(-2000)}`);
    }
    try {
      const res = await get(port, '/count/');
      if (res.status === 200) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`no answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Creates `n` sessions (each with one cart item), `concurrency` at a time; their cookies. */
export async function seedSessions(port, n, concurrency = 8) {
  const cookies = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const res = await get(port, `/add_to_cart/seed-${i}/`);
      const cookie = cookieOf(res);
      if (res.status !== 200 || !cookie) {
        throw new Error(`seeding: status ${res.status}, cookie ${cookie ?? 'none'}`);
      }
      cookies.push(cookie);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return cookies;
}

export function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/**
 * `total` appends to ONE session over `connections` keep-alive connections,
 * each request sent as soon as that connection's previous one answered. Then
 * reads the cart's length: how many of the acknowledged appends survived.
 */
export async function hammer(port, { total, connections }) {
  const first = await get(port, '/append/start/');
  const cookie = cookieOf(first);
  if (first.status !== 200 || !cookie) throw new Error(`hammer: start answered ${first.status}`);
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const latencies = [];
  const statuses = new Map();
  let next = 0;
  const began = process.hrtime.bigint();
  const worker = async () => {
    while (next < total) {
      const i = next++;
      const t0 = process.hrtime.bigint();
      const res = await get(port, `/append/h${i}/`, { cookie, agent });
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  const seconds = Number(process.hrtime.bigint() - began) / 1e9;
  agent.destroy();
  const count = await get(port, '/count/', { cookie });
  latencies.sort((a, b) => a - b);
  const ok = statuses.get(200) ?? 0;
  return {
    requests: total,
    rps: total / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    ok,
    statuses: Object.fromEntries(statuses),
    // The cart started with one item ("start").
    kept: Number(count.body) - 1,
  };
}
