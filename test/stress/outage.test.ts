/**
 * Redis and PostgreSQL lost under load. The app (test/stress/outage-app.ts)
 * runs in a child process with its store pointed at a TCP proxy the test
 * controls (test/support/tcp-proxy.ts); a few simulated browsers keep adding
 * to their carts while the proxy cuts the service and brings it back. While
 * it is down every answer is the plain 503; the process never crashes and
 * has no unhandled rejection; service is back within a second of the
 * service's return; and no session is lost or corrupted.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CutMode, TcpProxy } from '../support/tcp-proxy.js';
import { type Child, startChild } from './lib/child.js';
import { gate, size, STRESS_FULL } from './lib/env.js';
import { Browser, Client, type Reply } from './lib/http.js';
import { describeUnavailable } from './lib/skip.js';
import {
  POSTGRES_PORT,
  postgresKit,
  REDIS_PORT,
  redisKit,
  type StoreKit,
  storeFileExists,
} from './lib/stores.js';

const WORKERS = size('OUTAGE_WORKERS', 6, 16);
const RESTING = size('OUTAGE_SESSIONS', 10, 200);
const DOWN_MS = size('OUTAGE_DOWN_MS', 1_000, 5_000);
const ROUNDS = size('OUTAGE_ROUNDS', 1, 3);
/**
 * The default run cuts the service once (refused connections); the full run
 * also resets connections and makes a partition (blackhole) that lasts past
 * the Redis store's 5 s command timeout, so its 503s can be seen
 * (SATCHEL_STRESS_BLACKHOLE=1 adds the blackhole alone: ten seconds a store).
 */
const BLACKHOLE_MS = 8_000;
const BLACKHOLE_LATENCY_MS = 6_500;
const MODES: CutMode[] = STRESS_FULL
  ? ['refuse', 'reset', 'blackhole']
  : ['refuse', ...(process.env.SATCHEL_STRESS_BLACKHOLE === '1' ? (['blackhole'] as const) : [])];
/** How soon after the service returns requests must succeed again. */
const RECOVERY_MS = 1_000;
const UNAVAILABLE =
  'Service Unavailable: the session store cannot be reached; please try again shortly.\n';

interface Sample {
  worker: number;
  item: string;
  start: number;
  end: number;
  status: number;
  body: string;
  contentType: string | undefined;
}

/** One browser adding items in a loop until told to stop; every answer is recorded. */
async function worker(
  index: number,
  browser: Browser,
  samples: Sample[],
  stop: { now: boolean },
): Promise<void> {
  for (let n = 0; !stop.now && n < 100_000; n++) {
    const item = `w${index}-${n}`;
    const start = performance.now();
    let reply: Reply;
    try {
      reply = await browser.fetch(`/add?item=${item}`, { method: 'POST', timeoutMs: 10_000 });
    } catch (err) {
      reply = { status: 0, body: String(err), headers: {}, setCookie: [] };
    }
    const ct = reply.headers['content-type'];
    samples.push({
      worker: index,
      item,
      start,
      end: performance.now(),
      status: reply.status,
      body: reply.body,
      contentType: Array.isArray(ct) ? ct[0] : ct,
    });
    await sleep(10);
  }
}

function describeOutage(
  name: string,
  makeKit: (proxyPort: number) => Promise<StoreKit>,
  target: number,
) {
  describe(`${name} lost under load (through a TCP proxy)`, () => {
    let proxy: TcpProxy;
    let kit: StoreKit;
    let app: Child;
    let client: Client;

    beforeAll(async () => {
      proxy = await TcpProxy.start({ port: target });
      kit = await makeKit(proxy.port);
      app = startChild('test/stress/outage-app.ts', { spec: kit.spec });
      const port = Number((await app.waitFor(/^listening (\d+)$/))[1]);
      client = new Client(`http://127.0.0.1:${port}`, WORKERS * 2);
    });

    afterAll(async () => {
      client?.close();
      app?.kill('SIGTERM');
      await Promise.race([app?.exited, sleep(5_000)]);
      app?.kill('SIGKILL');
      await proxy?.close();
      await kit?.cleanup();
    });

    for (const mode of MODES) {
      const downMs = mode === 'blackhole' ? BLACKHOLE_MS : DOWN_MS;
      // Refused or reset connections fail at once; a blackhole only times out.
      const maxLatency = mode === 'blackhole' ? BLACKHOLE_LATENCY_MS : 3_000;
      it(
        `answers 503 while ${name} is gone (${mode}), recovers within ${RECOVERY_MS} ms, and loses no session`,
        async () => {
          // Sessions made before the outage and left alone during it.
          const resting: { browser: Browser; cart: string[] }[] = [];
          for (let i = 0; i < RESTING; i++) {
            const browser = new Browser(client);
            const cart = [`r${i}-a`, `r${i}-b`, `r${i}-c`];
            for (const item of cart) {
              expect((await browser.fetch(`/add?item=${item}`, { method: 'POST' })).status).toBe(
                200,
              );
            }
            resting.push({ browser, cart });
          }
          const browsers = Array.from({ length: WORKERS }, () => new Browser(client));
          for (const [i, browser] of browsers.entries()) {
            expect((await browser.fetch(`/add?item=seed-${i}`, { method: 'POST' })).status).toBe(
              200,
            );
          }

          const samples: Sample[] = [];
          const stop = { now: false };
          const load = browsers.map((browser, i) => worker(i, browser, samples, stop));
          const outages: { cut: number; restored: number; recovery: number }[] = [];
          try {
            for (let round = 0; round < ROUNDS; round++) {
              await sleep(500);
              const cut = performance.now();
              await proxy.cut(mode);
              await sleep(downMs);
              const restored = performance.now();
              await proxy.restore();
              // Wait until every browser has been served again (bounded).
              const deadline = performance.now() + 10_000;
              while (performance.now() < deadline) {
                const back = new Set(
                  samples
                    .filter((s) => s.start >= restored && s.status === 200)
                    .map((s) => s.worker),
                );
                if (back.size === WORKERS) break;
                await sleep(20);
              }
              const firstOk = browsers.map((_, w) =>
                Math.min(
                  ...samples
                    .filter((s) => s.worker === w && s.start >= restored && s.status === 200)
                    .map((s) => s.end),
                ),
              );
              outages.push({ cut, restored, recovery: Math.max(...firstOk) - restored });
            }
            await sleep(300);
          } finally {
            stop.now = true;
            await Promise.all(load);
          }

          // Every answer was a success or the plain 503; nothing hung or failed otherwise.
          const odd = samples.filter(
            (s) =>
              !(
                s.status === 200 ||
                (s.status === 503 &&
                  s.body === UNAVAILABLE &&
                  /^text\/plain/.test(s.contentType ?? ''))
              ),
          );
          expect(odd.map((s) => `${s.status} ${s.body}`)).toEqual([]);
          for (const { cut, restored, recovery } of outages) {
            // Answers given while the service was gone were all the 503 (and there were some).
            const answered = samples.filter((s) => s.end > cut + 200 && s.end < restored);
            expect(answered.length).toBeGreaterThan(0);
            expect(answered.filter((s) => s.status !== 503)).toEqual([]);
            // No request waited longer than maxLatency for its answer, counted
            // from its start or from the cut (unless the service came back first).
            const waited = samples
              .filter((s) => s.end > cut && Math.max(s.start, cut) + maxLatency < restored)
              .map((s) => s.end - Math.max(s.start, cut));
            expect(Math.max(0, ...waited)).toBeLessThan(maxLatency);
            expect(recovery).toBeLessThan(RECOVERY_MS);
          }

          // The process stayed up, with no unhandled rejection.
          expect(app.alive()).toBe(true);
          const health = JSON.parse((await client.request('/__health')).body) as {
            pid: number;
            unhandledRejections: number;
            errors: Record<string, number>;
          };
          expect(health.pid).toBe(app.pid);
          expect(health.unhandledRejections).toBe(0);
          expect(
            Object.keys(health.errors).filter((c) => c !== 'ERR_SATCHEL_STORE_UNAVAILABLE'),
          ).toEqual([]);

          // No session lost or corrupted: resting carts are intact, and every
          // acknowledged add is in its cart (an add answered 503 may or may
          // not have landed: its reply, not its write, was lost).
          for (const { browser, cart } of resting) {
            expect(JSON.parse((await browser.fetch('/get?key=cart')).body)).toEqual(cart);
          }
          for (const [w, browser] of browsers.entries()) {
            const cart = JSON.parse((await browser.fetch('/get?key=cart')).body) as string[];
            const mine = samples.filter((s) => s.worker === w);
            const acknowledged = mine.filter((s) => s.status === 200).map((s) => s.item);
            expect(cart[0]).toBe(`seed-${w}`);
            expect(new Set(cart).size).toBe(cart.length);
            expect(cart).toEqual(expect.arrayContaining(acknowledged));
            const attempted = new Set([`seed-${w}`, ...mine.map((s) => s.item)]);
            expect(cart.filter((item) => !attempted.has(item))).toEqual([]);
          }

          const down = samples.filter((s) => s.status === 503);
          const downLatency = down.map((s) => s.end - s.start).sort((a, b) => a - b);
          console.info(
            `[stress] ${name} outage (${mode}) x${outages.length}, ${downMs} ms each: ${samples.length} requests, ` +
              `${down.length} answered 503 (median ${Math.round(downLatency[downLatency.length >> 1] ?? 0)} ms, ` +
              `max ${Math.round(downLatency.at(-1) ?? 0)} ms), recovery ${outages.map((o) => `${Math.round(o.recovery)} ms`).join(', ')}; ` +
              `${RESTING} resting sessions intact; process ${health.pid} alive, 0 unhandled rejections`,
          );
        },
        STRESS_FULL ? 300_000 : 60_000,
      );
    }
  });
}

const redis = await gate('redis', storeFileExists('redis'), { name: 'Redis', port: REDIS_PORT });
if (redis.run) describeOutage('Redis', redisKit, REDIS_PORT);
else describeUnavailable('Redis lost under load', redis);

const postgres = await gate('postgres', storeFileExists('postgres'), {
  name: 'PostgreSQL',
  port: POSTGRES_PORT,
});
if (postgres.run) describeOutage('PostgreSQL', postgresKit, POSTGRES_PORT);
else describeUnavailable('PostgreSQL lost under load', postgres);
