/**
 * Scale-out: three shopping-cart processes (different ports, one store) serve
 * one visitor. Separately on Redis and on PostgreSQL: a visitor alternating
 * between the processes sees one cart, and 300 concurrent adds spread over
 * the three keep all 300 items. The test never retries a request: a 503 from
 * ConflictError (retries exhausted) is a failure, reported with its count.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { migrate } from '../../src/stores/postgres.js';
import { type AppProcess, cartOf, startServer, stopAll, uniqueName, Visitor } from './harness.js';
import {
  DATABASE_URL,
  describeWithService,
  dropTable,
  postgresUnreachable,
  REDIS_URL,
  redisUnreachable,
} from '../support/services.js';

const PROCESSES = 3;
const ADDS = 300;
const IN_FLIGHT = 100;

const [redisMissing, postgresMissing] = await Promise.all([
  redisUnreachable(),
  postgresUnreachable(),
]);

afterAll(async () => {
  await stopAll();
});

/** Starts PROCESSES demo servers on their own free ports with one store configuration. */
async function startCluster(env: Record<string, string>): Promise<AppProcess[]> {
  const apps = await Promise.all(
    Array.from({ length: PROCESSES }, () =>
      // 300 items do not fit the demo's default cap of 200.
      startServer({ PORT: '0', CART_MAX_ITEMS: '1000', ...env }, 30_000),
    ),
  );
  expect(new Set(apps.map((app) => app.url)).size).toBe(PROCESSES);
  expect(new Set(apps.map((app) => app.pid)).size).toBe(PROCESSES);
  return apps;
}

/** The same visitor reads and writes through each process in turn and always sees one cart. */
async function alternate(apps: AppProcess[]): Promise<void> {
  const visitor = new Visitor(apps[0]!.url);
  const expected: Record<string, number> = {};
  for (let i = 0; i < 2 * PROCESSES; i++) {
    visitor.base = apps[i % PROCESSES]!.url;
    const item = `alt-${i}`;
    const { status, html } = await visitor.page(`/add_to_cart/${item}/`);
    expect(status).toBe(200);
    expected[item] = 1;
    expect(cartOf(html), `after adding ${item} on process ${i % PROCESSES}`).toEqual(expected);
    // Read back on the next process before writing there.
    visitor.base = apps[(i + 1) % PROCESSES]!.url;
    expect(cartOf((await visitor.page('/cart/')).html)).toEqual(expected);
  }
}

interface Outcome {
  ms: number;
  statuses: Record<number, number>;
  /** Plain-text bodies of the non-200 answers, counted. */
  errors: Record<string, number>;
  slowestMs: number;
}

/**
 * ADDS concurrent GET /add_to_cart/item-N/ for one session, round-robin over
 * the processes, at most IN_FLIGHT at a time. No request is retried.
 */
async function concurrentAdds(apps: AppProcess[], cookie: string): Promise<Outcome> {
  const statuses: Record<number, number> = {};
  const errors: Record<string, number> = {};
  let slowestMs = 0;
  let next = 0;
  const worker = async () => {
    while (next < ADDS) {
      const n = next++;
      const url = new URL(`/add_to_cart/item-${n}/`, apps[n % PROCESSES]!.url);
      const started = performance.now();
      const res = await fetch(url, {
        headers: { cookie: `sessionid=${cookie}` },
        redirect: 'manual',
        signal: AbortSignal.timeout(60_000),
      });
      const body = await res.text();
      slowestMs = Math.max(slowestMs, performance.now() - started);
      statuses[res.status] = (statuses[res.status] ?? 0) + 1;
      if (res.status !== 200) {
        const text = body.trim().slice(0, 200);
        errors[text] = (errors[text] ?? 0) + 1;
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  return { ms: Math.round(performance.now() - started), statuses, errors, slowestMs };
}

/** The whole scenario on one store configuration; `label` names it in the timing line. */
function scenario(label: string, env: () => Record<string, string>) {
  let apps: AppProcess[];

  beforeAll(async () => {
    apps = await startCluster(env());
  }, 60_000);

  afterAll(async () => {
    await Promise.all((apps ?? []).map((app) => app.stop()));
  });

  it('a visitor alternating between the three processes sees one cart', async () => {
    await alternate(apps);
  });

  it(`${ADDS} concurrent adds spread over the three processes keep all ${ADDS} items`, async () => {
    const visitor = new Visitor(apps[0]!.url);
    // The first change to the cart starts the session (browsing stores none).
    await visitor.page('/add_to_cart/start/');
    expect(visitor.cookie).toBeDefined();

    const outcome = await concurrentAdds(apps, visitor.cookie!);
    const cart = cartOf((await visitor.page('/cart/')).html);
    const items = Object.keys(cart).filter((item) => /^item-\d+$/.test(item));
    console.log(
      `[multiprocess] ${label}: ${ADDS} adds over ${PROCESSES} processes, ${IN_FLIGHT} in flight: ` +
        `${outcome.ms} ms (slowest request ${Math.round(outcome.slowestMs)} ms); ` +
        `statuses ${JSON.stringify(outcome.statuses)}; ${items.length} distinct items kept` +
        (Object.keys(outcome.errors).length > 0
          ? `; errors ${JSON.stringify(outcome.errors)}`
          : ''),
    );
    expect(outcome.statuses, JSON.stringify(outcome.errors)).toEqual({ 200: ADDS });
    expect(items).toHaveLength(ADDS);
    expect(Object.values(cart).every((quantity) => quantity === 1)).toBe(true);
    for (let n = 0; n < ADDS; n++) expect(cart[`item-${n}`]).toBe(1);
  }, 120_000);
}

describeWithService('three demo processes sharing one Redis', redisMissing, () => {
  const prefix = `${uniqueName('satchel-multi')}:`;

  afterAll(async () => {
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.unlink(...keys);
    } finally {
      redis.disconnect();
    }
  });

  scenario('redis', () => ({
    SATCHEL_STORE: 'redis',
    SATCHEL_REDIS_URL: REDIS_URL,
    SATCHEL_REDIS_PREFIX: prefix,
  }));
});

describeWithService('three demo processes sharing one PostgreSQL', postgresMissing, () => {
  const table = uniqueName('satchel_multi');

  beforeAll(async () => {
    await migrate({ connectionString: DATABASE_URL, table });
  });

  afterAll(async () => {
    await dropTable(table);
  });

  scenario('postgres', () => ({
    SATCHEL_STORE: 'postgres',
    SATCHEL_DATABASE_URL: DATABASE_URL,
    SATCHEL_DATABASE_TABLE: table,
  }));
});
