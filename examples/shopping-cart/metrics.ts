/**
 * Prometheus metrics for the demo, from what satchel publishes on Node's
 * `diagnostics_channel` (the README's "Observability"): loads, commits,
 * compare-and-set conflicts, 503s, and the latency of loads, commits and
 * every store call. The demo serves them at GET /metrics, mounted before the
 * session middleware so a scrape never loads or creates a session.
 *
 * Serve /metrics to your Prometheus only, never to the public internet: it
 * tells anyone how busy the site is and when its store struggles. The demo
 * listens on 127.0.0.1 by default.
 *
 * In your app import SatchelError from 'satchel'.
 */
import diagnostics from 'node:diagnostics_channel';
import type { Request, Response } from 'express';
import { Counter, Histogram, Registry } from 'prom-client';
import { SatchelError } from '../../src/index.js';

/** Message fields this file reads (see src/diagnostics.ts for the full shapes). */
interface LoadMessage {
  store: string;
  found?: boolean;
  error?: unknown;
}
interface CommitMessage {
  store: string;
  status: number;
  retries?: number;
  error?: unknown;
}
interface ConflictMessage {
  store: string;
}
interface StoreCallMessage {
  store: string;
  operation: string;
  durationMs: number;
  ok: boolean;
}

/**
 * Seconds, from 50 µs (an in-memory store) to 2.5 s (a store timing out):
 * Redis and PostgreSQL calls land around 0.2–5 ms, a commit that retries
 * after conflicts in the tens of milliseconds.
 */
export const LATENCY_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
];

export interface Metrics {
  /** The registry holding satchel's metrics; add your own to it. */
  registry: Registry;
  /** An Express handler answering with the metrics in Prometheus' text format. */
  handler(req: Request, res: Response): Promise<void>;
  /** Unsubscribes from satchel's channels; the counters stop moving. */
  close(): void;
}

/** An error that made satchel answer 503 (store unreachable, conflicts or lock wait exhausted). */
function unavailable(error: unknown): error is SatchelError {
  return SatchelError.is(error) && error.status === 503;
}

export interface MetricsOptions {
  /**
   * Store names whose conflict counter is exported at 0 from the start, so
   * alerts see a series before the first conflict. Other stores appear with
   * their first load or commit.
   * @default []
   */
  stores?: readonly string[];
}

/**
 * Subscribes to satchel's channels and keeps Prometheus metrics in a registry
 * of its own. Call `close()` when done, or two instances count everything twice.
 */
export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];

  const loads = new Counter({
    name: 'satchel_loads_total',
    help: 'Session loads, by whether a stored session was found, a new one started, or the load failed',
    labelNames: ['store', 'result'] as const,
    registers,
  });
  const commits = new Counter({
    name: 'satchel_commits_total',
    help: 'Session commits (one per request that loaded a session), by outcome',
    labelNames: ['store', 'result'] as const,
    registers,
  });
  const conflicts = new Counter({
    name: 'satchel_conflicts_total',
    help: 'Compare-and-set retries: another request saved the session first and the changes were re-applied',
    labelNames: ['store'] as const,
    registers,
  });
  const unavailableTotal = new Counter({
    name: 'satchel_unavailable_total',
    help: 'Loads and commits that failed with a 503 (store unreachable, too many conflicts, lock wait timed out), by error code',
    labelNames: ['store', 'phase', 'code'] as const,
    registers,
  });
  const storeCalls = new Histogram({
    name: 'satchel_store_call_duration_seconds',
    help: 'Duration of each call satchel made to its session store',
    labelNames: ['store', 'operation', 'result'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const loadDuration = new Histogram({
    name: 'satchel_load_duration_seconds',
    help: 'Duration of sessions.load, store calls included',
    labelNames: ['store'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const commitDuration = new Histogram({
    name: 'satchel_commit_duration_seconds',
    help: 'Duration of sessions.commit, compare-and-set retries included',
    labelNames: ['store'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  // Nothing is counted until the first message, but dashboards and alerts
  // should see the conflict counter at 0 rather than no series at all.
  const seenStores = new Set<string>();
  const initStore = (store: string) => {
    if (seenStores.has(store)) return;
    seenStores.add(store);
    conflicts.labels({ store }).inc(0);
  };
  for (const store of options.stores ?? []) initStore(store);

  // When each load or commit started, keyed by its message object (the same
  // object travels from `start` to `asyncEnd`).
  const started = new WeakMap<object, number>();
  const noop = () => {};

  const loadHandlers = {
    start(message: LoadMessage) {
      started.set(message, performance.now());
    },
    end: noop,
    asyncStart: noop,
    error({ store, error }: LoadMessage) {
      if (unavailable(error)) unavailableTotal.inc({ store, phase: 'load', code: error.code });
    },
    asyncEnd(message: LoadMessage) {
      const { store } = message;
      initStore(store);
      const result =
        message.error !== undefined ? 'error' : message.found === true ? 'found' : 'new';
      loads.inc({ store, result });
      const start = started.get(message);
      if (start !== undefined) loadDuration.observe({ store }, (performance.now() - start) / 1000);
    },
  };
  const commitHandlers = {
    start(message: CommitMessage) {
      started.set(message, performance.now());
    },
    end: noop,
    asyncStart: noop,
    error({ store, error }: CommitMessage) {
      if (unavailable(error)) unavailableTotal.inc({ store, phase: 'commit', code: error.code });
    },
    asyncEnd(message: CommitMessage) {
      const { store } = message;
      initStore(store);
      commits.inc({ store, result: message.error !== undefined ? 'error' : 'ok' });
      const start = started.get(message);
      if (start !== undefined) {
        commitDuration.observe({ store }, (performance.now() - start) / 1000);
      }
    },
  };
  const onConflict = (message: unknown) => {
    const { store } = message as ConflictMessage;
    initStore(store);
    conflicts.inc({ store });
  };
  const onStoreCall = (message: unknown) => {
    const { store, operation, durationMs, ok } = message as StoreCallMessage;
    storeCalls.observe({ store, operation, result: ok ? 'ok' : 'error' }, durationMs / 1000);
  };

  // The handlers are typed for the message fields read here; Node's types
  // describe the channels' messages as unknown.
  const load = diagnostics.tracingChannel('satchel:load');
  const commit = diagnostics.tracingChannel('satchel:commit');
  load.subscribe(loadHandlers as unknown as Parameters<typeof load.subscribe>[0]);
  commit.subscribe(commitHandlers as unknown as Parameters<typeof commit.subscribe>[0]);
  diagnostics.subscribe('satchel:conflict', onConflict);
  diagnostics.subscribe('satchel:store', onStoreCall);

  return {
    registry,
    async handler(_req, res) {
      const body = await registry.metrics();
      res.status(200).type(registry.contentType).set('cache-control', 'no-store').send(body);
    },
    close() {
      load.unsubscribe(loadHandlers as unknown as Parameters<typeof load.unsubscribe>[0]);
      commit.unsubscribe(commitHandlers as unknown as Parameters<typeof commit.unsubscribe>[0]);
      diagnostics.unsubscribe('satchel:conflict', onConflict);
      diagnostics.unsubscribe('satchel:store', onStoreCall);
    },
  };
}
