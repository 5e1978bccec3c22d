import { SatchelError, StoreUnavailableError } from '../errors.js';
import { channels, type StoreCallMessage } from '../diagnostics.js';
import type { Events } from '../events.js';
import type { SessionStore } from '../store.js';

export type StoreCall = <T>(what: string, fn: () => Promise<T>) => Promise<T>;

/**
 * Wraps store calls so any failure surfaces as StoreUnavailableError naming
 * the store (adapters answer 503), and is announced as `store-unavailable`.
 */
export function storeCaller(store: SessionStore, events: Events): StoreCall {
  const call: StoreCall = async (what, fn) => {
    try {
      return await fn();
    } catch (err) {
      if (SatchelError.is(err) && err.code !== 'ERR_SATCHEL_STORE_UNAVAILABLE') throw err;
      const error = SatchelError.is(err)
        ? (err as StoreUnavailableError)
        : new StoreUnavailableError(
            store.name,
            `${what} failed: ${err instanceof Error ? err.message : String(err)}`,
            err,
          );
      events.emit('store-unavailable', () => ({ store: store.name, operation: what, error }));
      throw error;
    }
  };
  const measured: StoreCall = async (what, fn) => {
    const started = performance.now();
    let ok = false;
    try {
      const result = await call(what, fn);
      ok = true;
      return result;
    } finally {
      const message: StoreCallMessage = {
        store: store.name,
        operation: what,
        durationMs: performance.now() - started,
        ok,
      };
      channels.store.publish(message);
    }
  };
  // Not async itself: a wrapper that only forwards would cost every store call two more ticks.
  return (what, fn) => (channels.store.hasSubscribers ? measured(what, fn) : call(what, fn));
}
