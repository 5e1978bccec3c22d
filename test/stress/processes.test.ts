/**
 * Bursts of commits to one session from three processes sharing one store:
 * each process groups its own commits into one compare-and-set, the
 * processes race each other, and retries are bounded by time (retryTimeout),
 * not by a count. Every acknowledged item must be kept, and no request may be
 * refused with a 503 ConflictError. 600 commits in CI; 5,000 in the full
 * run (`npm run test:stress`).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

const PROCESSES = 3;
const COMMITS = size('BURST_COMMITS', 600, 5_000);
const IN_FLIGHT = 96;

function describeBurst(name: string, makeKit: () => Promise<StoreKit>) {
  describe(`${name}: three processes, one session`, () => {
    let kit: StoreKit;
    const apps: Child[] = [];
    const clients: Client[] = [];

    beforeAll(async () => {
      kit = await makeKit();
      for (let i = 0; i < PROCESSES; i++) {
        apps.push(startChild('test/stress/outage-app.ts', { spec: kit.spec }));
      }
      for (const app of apps) {
        const port = Number((await app.waitFor(/^listening (\d+)$/))[1]);
        clients.push(new Client(`http://127.0.0.1:${port}`, IN_FLIGHT));
      }
    });

    afterAll(async () => {
      for (const client of clients) client.close();
      for (const app of apps) app.kill('SIGTERM');
      await Promise.race([Promise.all(apps.map((app) => app.exited)), sleep(5_000)]);
      for (const app of apps) app.kill('SIGKILL');
      await kit?.cleanup();
    });

    it(
      `keeps all ${COMMITS} items of a ${COMMITS}-commit burst and refuses none (no ConflictError 503)`,
      async () => {
        const seed = new Browser(clients[0]!);
        expect((await seed.fetch('/add?item=seed', { method: 'POST' })).status).toBe(200);
        const cookie = `sessionid=${seed.cookie}`;
        const statuses: Record<number, number> = {};
        let next = 0;
        const started = performance.now();
        const worker = async () => {
          while (next < COMMITS) {
            const n = next++;
            const reply: Reply = await clients[n % PROCESSES]!.request(`/add?item=item-${n}`, {
              method: 'POST',
              cookie,
              timeoutMs: 60_000,
            });
            statuses[reply.status] = (statuses[reply.status] ?? 0) + 1;
          }
        };
        await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
        const ms = Math.round(performance.now() - started);
        const cart = JSON.parse((await seed.fetch('/get?key=cart')).body) as string[];
        const kept = new Set(cart.filter((item) => item.startsWith('item-'))).size;
        console.info(
          `[stress] ${name}: ${COMMITS} commits to one session over ${PROCESSES} processes, ` +
            `${IN_FLIGHT} in flight: ${ms} ms; statuses ${JSON.stringify(statuses)}; ${kept} kept`,
        );
        expect(statuses).toEqual({ 200: COMMITS });
        expect(kept).toBe(COMMITS);
        expect(cart).toHaveLength(COMMITS + 1);
      },
      STRESS_FULL ? 600_000 : 120_000,
    );
  });
}

const redis = await gate('redis', storeFileExists('redis'), { name: 'Redis', port: REDIS_PORT });
if (redis.run) describeBurst('Redis', () => redisKit());
else describeUnavailable('Redis: three processes, one session', redis);

const postgres = await gate('postgres', storeFileExists('postgres'), {
  name: 'PostgreSQL',
  port: POSTGRES_PORT,
});
if (postgres.run) describeBurst('PostgreSQL', () => postgresKit());
else describeUnavailable('PostgreSQL: three processes, one session', postgres);
