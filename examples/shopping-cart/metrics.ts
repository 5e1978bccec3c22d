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
 * In your app import these from 'satchel'.
 */
import diagnostics from 'node:diagnostics_channel';
import type { Request, Response } from 'express';
import { Counter, Histogram, Registry } from 'prom-client';
import {
  type CommitMessage,
  type ConflictMessage,
  type LoadMessage,
  SatchelError,
  type StoreCallMessage,
} from '../../src/index.js';

/** A tracing channel's message: Node sets `error` when the call failed. */
type Traced<M> = M & { error?: unknown };

/**
 * Seconds, from 50 µs (an in-memory store) to 2.5 s (a store timing out).
 * Measured through the demo on one machine: SQLite calls about 0.1 ms, local
 * PostgreSQL 1–2 ms, local Redis 2 ms; a commit that backs off after
 * conflicts takes tens of milliseconds.
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
    help: 'Session commits, by outcome and kind: response (one per request that loaded a session) or save (session.save() in a handler)',
    labelNames: ['store', 'result', 'kind'] as const,
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
    help: 'Duration of sessions.commit and session.save(), compare-and-set retries included',
    labelNames: ['store', 'kind'] as const,
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

  /** Counts and times one tracing channel's calls; returns how to unsubscribe. */
  function trace<M extends { store: string }>(
    phase: 'load' | 'commit',
    count: Counter<string>,
    duration: Histogram<string>,
    resultOf: (message: Traced<M>) => string,
    labelsOf: (message: Traced<M>) => Record<string, string> = () => ({}),
  ): () => void {
    const channel = diagnostics.tracingChannel<unknown, Traced<M>>(`satchel:${phase}`);
    const handlers = {
      start: (message: Traced<M>) => void started.set(message, performance.now()),
      end: noop,
      asyncStart: noop,
      error({ store, error }: Traced<M>) {
        if (unavailable(error)) unavailableTotal.inc({ store, phase, code: error.code });
      },
      // The last event, after a success or an error.
      asyncEnd(message: Traced<M>) {
        const { store } = message;
        initStore(store);
        const labels = { store, ...labelsOf(message) };
        count.inc({ ...labels, result: message.error !== undefined ? 'error' : resultOf(message) });
        const start = started.get(message);
        if (start !== undefined) duration.observe(labels, (performance.now() - start) / 1000);
      },
    };
    channel.subscribe(handlers);
    return () => channel.unsubscribe(handlers);
  }

  const onConflict = (message: unknown) => {
    const { store } = message as ConflictMessage;
    initStore(store);
    conflicts.inc({ store });
  };
  const onStoreCall = (message: unknown) => {
    const { store, operation, durationMs, ok } = message as StoreCallMessage;
    storeCalls.observe({ store, operation, result: ok ? 'ok' : 'error' }, durationMs / 1000);
  };

  const unsubscribe = [
    trace<LoadMessage>('load', loads, loadDuration, (m) => (m.found ? 'found' : 'new')),
    // A commit message without a status is a handler's session.save().
    trace<CommitMessage>(
      'commit',
      commits,
      commitDuration,
      () => 'ok',
      (m) => ({
        kind: m.status === undefined ? 'save' : 'response',
      }),
    ),
  ];
  diagnostics.subscribe('satchel:conflict', onConflict);
  diagnostics.subscribe('satchel:store', onStoreCall);

  return {
    registry,
    async handler(_req, res) {
      const body = await registry.metrics();
      res.status(200).type(registry.contentType).set('cache-control', 'no-store').send(body);
    },
    close() {
      for (const stop of unsubscribe) stop();
      diagnostics.unsubscribe('satchel:conflict', onConflict);
      diagnostics.unsubscribe('satchel:store', onStoreCall);
    },
  };
}
