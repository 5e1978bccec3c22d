/**
 * The demo's GET /metrics (examples/shopping-cart/metrics.ts), scraped from a
 * real server process: the counters and histograms move by what the visits did.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateId } from '../../src/ids.js';
import { describeWithService, REDIS_URL, redisUnreachable } from '../support/services.js';
import {
  type AppProcess,
  cartOf,
  freePort,
  startServer,
  stopAll,
  uniqueName,
  Visitor,
} from './harness.js';

const redisMissing = await redisUnreachable();

/** One scrape: the value of each sample, by its name and labels as Prometheus prints them. */
type Samples = Map<string, number>;

function parseSamples(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** The sample `name{labels}` (labels in any order), 0 when absent. */
function sample(samples: Samples, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`);
  let total = 0;
  let found = false;
  for (const [key, value] of samples) {
    const match = /^([^{]+)(?:\{(.*)\})?$/.exec(key);
    if (match?.[1] !== name) continue;
    const present = new Set((match[2] ?? '').split(',').filter(Boolean));
    if (wanted.every((label) => present.has(label)) && present.size === wanted.length) {
      total += value;
      found = true;
    }
  }
  return found ? total : 0;
}

async function scrape(app: AppProcess): Promise<{ res: Response; samples: Samples }> {
  const res = await fetch(new URL('/metrics', app.url), { signal: AbortSignal.timeout(10_000) });
  return { res, samples: parseSamples(await res.text()) };
}

/** How much each sample moved between two scrapes. */
function moved(before: Samples, after: Samples) {
  return (name: string, labels: Record<string, string> = {}) =>
    sample(after, name, labels) - sample(before, name, labels);
}

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'satchel-metrics-http-'));
});

afterAll(async () => {
  await stopAll();
  await rm(dir, { recursive: true, force: true });
});

describe('the demo /metrics (sqlite store)', () => {
  let app: AppProcess;
  const store = { store: 'sqlite' };

  beforeAll(async () => {
    app = await startServer({
      PORT: String(await freePort()),
      SATCHEL_STORE: 'sqlite',
      SATCHEL_SQLITE_PATH: join(dir, 'sessions.db'),
    });
  });

  afterAll(async () => {
    await app?.stop();
  });

  it('answers in the Prometheus text format without loading or creating a session', async () => {
    const first = await scrape(app);
    expect(first.res.status).toBe(200);
    expect(first.res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(first.res.headers.get('set-cookie')).toBeNull();
    // A scrape that sends a session cookie does not load that session either.
    const res = await fetch(new URL('/metrics', app.url), {
      headers: { cookie: `sessionid=${generateId()}` },
      signal: AbortSignal.timeout(10_000),
    });
    expect(res.headers.get('set-cookie')).toBeNull();
    const second = parseSamples(await res.text());
    const delta = moved(first.samples, second);
    expect(delta('satchel_loads_total', { ...store, result: 'new' })).toBe(0);
    expect(delta('satchel_loads_total', { ...store, result: 'found' })).toBe(0);
    expect(delta('satchel_commits_total', { ...store, result: 'ok' })).toBe(0);
  });

  it('exports the conflict counter at 0 before any conflict', async () => {
    const { samples } = await scrape(app);
    expect(samples.get('satchel_conflicts_total{store="sqlite"}')).toBe(0);
  });

  it('counts one load and one commit per add, and times the store calls they made', async () => {
    const before = (await scrape(app)).samples;
    const visitor = new Visitor(app.url);
    for (let i = 0; i < 3; i++) {
      expect((await visitor.page('/add_to_cart/rubber-duck/')).status).toBe(200);
    }
    const delta = moved(before, (await scrape(app)).samples);

    expect(delta('satchel_loads_total', { ...store, result: 'new' })).toBe(1);
    expect(delta('satchel_loads_total', { ...store, result: 'found' })).toBe(2);
    expect(delta('satchel_commits_total', { ...store, result: 'ok', kind: 'response' })).toBe(3);
    // The demo saves before rendering, so each add also traces one session.save().
    expect(delta('satchel_commits_total', { ...store, result: 'ok', kind: 'save' })).toBe(3);
    expect(delta('satchel_load_duration_seconds_count', store)).toBe(3);
    expect(delta('satchel_commit_duration_seconds_count', { ...store, kind: 'response' })).toBe(3);
    expect(delta('satchel_load_duration_seconds_sum', store)).toBeGreaterThan(0);
    expect(delta('satchel_conflicts_total', store)).toBe(0);

    const calls = (operation: string) =>
      delta('satchel_store_call_duration_seconds_count', { ...store, operation, result: 'ok' });
    // The first add creates the session; the next two read it and write it back.
    expect(calls('create')).toBe(1);
    expect(calls('get')).toBe(2);
    expect(calls('update')).toBe(2);
    expect(
      delta('satchel_store_call_duration_seconds_sum', {
        ...store,
        operation: 'get',
        result: 'ok',
      }),
    ).toBeGreaterThan(0);
    // Every observation lands in the +Inf bucket, so its count equals the histogram's count.
    expect(
      delta('satchel_store_call_duration_seconds_bucket', {
        le: '+Inf',
        ...store,
        operation: 'update',
        result: 'ok',
      }),
    ).toBe(2);
  });
});

describeWithService('the demo /metrics on Redis, two processes racing', redisMissing, () => {
  // Within one process a session's commits queue up and go out as one write,
  // so they never conflict; two processes writing one session do.
  let apps: AppProcess[];
  const store = { store: 'redis' };
  const prefix = `${uniqueName('satchel-metrics')}:`;

  beforeAll(async () => {
    const env = {
      SATCHEL_STORE: 'redis',
      SATCHEL_REDIS_URL: REDIS_URL,
      SATCHEL_REDIS_PREFIX: prefix,
    };
    apps = await Promise.all([
      startServer({ ...env, PORT: String(await freePort()) }),
      startServer({ ...env, PORT: String(await freePort()) }),
    ]);
  });

  afterAll(async () => {
    await Promise.all((apps ?? []).map((app) => app.stop()));
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.unlink(...keys);
    } finally {
      redis.disconnect();
    }
  });

  it('counts each compare-and-set retry when one cart is written from two processes at once', async () => {
    const [a, b] = apps as [AppProcess, AppProcess];
    const visitor = new Visitor(a.url);
    await visitor.page('/add_to_cart/coffee-mug/');
    const cookie = `sessionid=${visitor.cookie}`;
    const add = (app: AppProcess) =>
      fetch(new URL('/add_to_cart/sticker-pack/', app.url), {
        headers: { cookie },
        signal: AbortSignal.timeout(10_000),
      }).then(async (res) => {
        await res.text();
        return res.status;
      });
    const before = await Promise.all(apps.map(async (app) => (await scrape(app)).samples));

    // Rounds of adds split between the two processes until one has to retry
    // (the first round nearly always does; bounded all the same).
    const perRound = 8;
    let rounds = 0;
    let conflicts = 0;
    let deltas: ReturnType<typeof moved>[] = [];
    while (conflicts === 0 && rounds < 10) {
      rounds++;
      const statuses = await Promise.all(
        Array.from({ length: perRound }, (_, i) => add(i % 2 === 0 ? a : b)),
      );
      expect(statuses).toEqual(Array(perRound).fill(200));
      const after = await Promise.all(apps.map(async (app) => (await scrape(app)).samples));
      deltas = apps.map((_, i) => moved(before[i]!, after[i]!));
      conflicts = deltas.reduce((sum, delta) => sum + delta('satchel_conflicts_total', store), 0);
    }
    expect(conflicts).toBeGreaterThan(0);

    // No add is lost.
    expect(cartOf((await visitor.page('/cart/')).html)).toEqual({
      'coffee-mug': 1,
      'sticker-pack': rounds * perRound,
    });
    for (const delta of deltas) {
      const found = delta('satchel_loads_total', { ...store, result: 'found' });
      expect(found).toBe((rounds * perRound) / 2);
      expect(delta('satchel_commits_total', { ...store, result: 'ok', kind: 'response' })).toBe(
        found,
      );
      // Every retry first reads the session again: one get per load, plus one per conflict.
      expect(
        delta('satchel_store_call_duration_seconds_count', {
          ...store,
          operation: 'get',
          result: 'ok',
        }),
      ).toBe(found + delta('satchel_conflicts_total', store));
    }
  });
});

describe('the demo /metrics with its store unreachable', () => {
  let app: AppProcess;

  beforeAll(async () => {
    // Nothing listens on this port: every Redis call fails at once.
    app = await startServer({
      PORT: String(await freePort()),
      SATCHEL_STORE: 'redis',
      SATCHEL_REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    });
  });

  afterAll(async () => {
    await app?.stop();
  });

  it('counts a load that fails with 503 and the failed store call', async () => {
    const before = (await scrape(app)).samples;
    const visitor = new Visitor(app.url);
    visitor.cookie = generateId();
    const res = await visitor.request('/cart/');
    expect(res.status).toBe(503);
    await res.text();
    const after = await scrape(app);
    expect(after.res.status).toBe(200);
    const delta = moved(before, after.samples);

    const redis = { store: 'redis' };
    expect(
      delta('satchel_unavailable_total', {
        ...redis,
        phase: 'load',
        code: 'ERR_SATCHEL_STORE_UNAVAILABLE',
      }),
    ).toBe(1);
    expect(delta('satchel_loads_total', { ...redis, result: 'error' })).toBe(1);
    expect(delta('satchel_load_duration_seconds_count', redis)).toBe(1);
    expect(
      delta('satchel_store_call_duration_seconds_count', {
        ...redis,
        operation: 'get',
        result: 'error',
      }),
    ).toBe(1);
  });
});
