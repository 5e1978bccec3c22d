import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { ClearExpiredOptions } from '../../store.js';
import type { Connection } from './driver.js';
import type { Statements } from './index.js';

// A large cleanup deletes rows whose keys (hashes) are spread over the whole
// primary-key index; while it runs, a page cache that holds most of that
// index lets each transaction rewrite a page once instead of re-reading it.
// Raised for the cleanup only, then put back.
const CLEAR_CACHE_KIB = 64 * 1024;

export interface CacheSize {
  raise(): void;
  restore(): void;
}

export interface ClearContext {
  db: Connection;
  statements: Statements;
  cache: CacheSize;
  batchSize: number;
  batchMs: number;
  run: <T>(op: string, fn: () => T) => T;
  guard: { readonly closed: boolean };
}

/**
 * clearExpired: transactions of DELETE statements, each until done or
 * `batchMs` has passed, yielding to the event loop between them.
 */
export async function clearExpiredRows(
  { db, statements, cache, batchSize, batchMs, run, guard }: ClearContext,
  now: number,
  opts: ClearExpiredOptions | undefined,
): Promise<number> {
  const clearBatch = () =>
    db.transaction(() => {
      const began = performance.now();
      let removed = 0;
      for (;;) {
        const changes = Number(statements.clearBatch.run(now, batchSize).changes);
        removed += changes;
        if (changes < batchSize) return { removed, done: true };
        if (performance.now() - began >= batchMs) return { removed, done: false };
      }
    });
  const onProgress = opts?.onProgress;
  let total = onProgress
    ? run('clearExpired', () => (statements.countExpired.get(now) as { n: number }).n)
    : undefined;
  let removed = 0;
  run('clearExpired', () => cache.raise());
  try {
    for (;;) {
      const batch = run('clearExpired', clearBatch);
      removed += batch.removed;
      if (onProgress) {
        // Rows that expired since the count was taken are removed too.
        if (total !== undefined && removed > total) total = removed;
        onProgress(total === undefined ? { removed } : { removed, total });
      }
      if (batch.done) break;
      await yieldToEventLoop();
    }
    run('clearExpired', () => statements.clearLocks.run(now));
  } finally {
    if (!guard.closed) run('clearExpired', () => cache.restore());
  }
  return removed;
}

/**
 * Raises the connection's page cache to CLEAR_CACHE_KIB while at least one
 * clearExpired runs, and puts the previous size back after the last one.
 */
export function largerCacheWhileClearing(db: Connection): CacheSize {
  const read = db.prepare('PRAGMA cache_size');
  const pageSize = db.prepare('PRAGMA page_size');
  let running = 0;
  let previous: number | undefined;
  return {
    raise() {
      if (running++ > 0) return;
      const current = (read.get() as { cache_size: number }).cache_size;
      const bytes =
        current < 0
          ? -current * 1024
          : current * (pageSize.get() as { page_size: number }).page_size;
      if (bytes >= CLEAR_CACHE_KIB * 1024) return;
      previous = current;
      db.exec(`PRAGMA cache_size = -${CLEAR_CACHE_KIB}`);
    },
    restore() {
      if (--running > 0 || previous === undefined) return;
      db.exec(`PRAGMA cache_size = ${previous}`);
      previous = undefined;
    },
  };
}
