import { SatchelError, StoreUnavailableError } from '../errors.js';
import { channels, type StoreCallMessage } from '../diagnostics.js';
import type { Events } from '../events.js';
import type { SessionStore } from '../store.js';

export type StoreCall = <T>(what: string, fn: () => Promise<T>) => Promise<T>;
/** The same for a store's synchronous twins (`SessionStore.sync`): a failure is thrown at once. */
export type StoreCallNow = <T>(what: string, fn: () => T) => T;

/**
 * Wraps store calls so any failure surfaces as StoreUnavailableError naming
 * the store (adapters answer 503), and is announced as `store-unavailable`.
 */
export function storeCaller(store: SessionStore, events: Events): StoreCall {
  const call: StoreCall = async (what, fn) => {
    try {
      return await fn();
    } catch (err) {
      throw unavailable(store, events, what, err);
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
      published(store, what, started, ok);
    }
  };
  // Not async itself: a wrapper that only forwards would cost every store call two more ticks.
  return (what, fn) => (channels.store.hasSubscribers ? measured(what, fn) : call(what, fn));
}

/** `storeCaller` for synchronous calls: the same errors, events and timing, and no wait. */
export function storeCallerNow(store: SessionStore, events: Events): StoreCallNow {
  return (what, fn) => {
    const started = channels.store.hasSubscribers ? performance.now() : undefined;
    let ok = false;
    try {
      const result = fn();
      ok = true;
      return result;
    } catch (err) {
      throw unavailable(store, events, what, err);
    } finally {
      if (started !== undefined) published(store, what, started, ok);
    }
  };
}

/** A failed store call as StoreUnavailableError, announced; satchel's own errors pass as they are. */
function unavailable(store: SessionStore, events: Events, what: string, err: unknown): unknown {
  if (SatchelError.is(err) && err.code !== 'ERR_SATCHEL_STORE_UNAVAILABLE') return err;
  const error = SatchelError.is(err)
    ? (err as StoreUnavailableError)
    : new StoreUnavailableError(
        store.name,
        `${what} failed: ${err instanceof Error ? err.message : String(err)}`,
        err,
      );
  events.emit('store-unavailable', () => ({ store: store.name, operation: what, error }));
  return error;
}

function published(store: SessionStore, what: string, started: number, ok: boolean): void {
  const message: StoreCallMessage = {
    store: store.name,
    operation: what,
    durationMs: performance.now() - started,
    ok,
  };
  channels.store.publish(message);
}
