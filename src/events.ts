import type { StoreUnavailableError } from './errors.js';
import type { Logger } from './options.js';

/** Lifecycle events; `sessions.on(name, listener)`. Handles are opaque, never session IDs. */
export interface SessionEvents {
  created: { handle: string; owner: string | undefined };
  rotated: { oldHandle: string; handle: string; owner: string | undefined };
  destroyed: { handle: string; reason: 'flush' | 'emptied' | 'revoked' | 'corrupt' };
  /** An expired session seen on load (absolute timeout) or ended by setExpiry at save, or a count removed by clearExpired. */
  expired: { handle: string; via: 'load' | 'save' } | { count: number; via: 'cleanup' };
  'store-unavailable': { store: string; operation: string; error: StoreUnavailableError };
}

type Listener = (event: never) => void;

/** The lifecycle events of one manager. Listeners are optional: with none, no event object is built. */
export class Events {
  readonly #listeners = new Map<keyof SessionEvents, Set<Listener>>();
  readonly #logger: Logger;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  on<E extends keyof SessionEvents>(
    name: E,
    listener: (event: SessionEvents[E]) => void,
  ): () => void {
    let set = this.#listeners.get(name);
    if (!set) {
      set = new Set();
      this.#listeners.set(name, set);
    }
    set.add(listener as Listener);
    return () => void set.delete(listener as Listener);
  }

  /** True when someone listens to `name`. */
  has(name: keyof SessionEvents): boolean {
    return (this.#listeners.get(name)?.size ?? 0) > 0;
  }

  emit<E extends keyof SessionEvents>(name: E, make: () => SessionEvents[E]): void {
    const set = this.#listeners.get(name);
    if (!set || set.size === 0) return;
    const event = make();
    for (const listener of set) {
      try {
        (listener as (e: SessionEvents[E]) => void)(event);
      } catch (err) {
        this.#logger.error(`[satchel] a "${name}" listener threw`, { error: err });
      }
    }
  }
}
