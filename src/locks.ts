import { randomBytes, randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { LockTimeoutError } from './errors.js';
import type { HeldLock } from './identity.js';
import type { SessionStore } from './store.js';

/**
 * Per-key mutual exclusion in this process: holders of one key run one at a
 * time, in arrival order; different keys never wait for each other.
 */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>();

  /**
   * Waits for the key; resolves to the release function. With `timeoutMs`,
   * rejects with LockTimeoutError if the holders before it take longer (the
   * queue stays consistent: the place is given up as soon as it comes).
   */
  async acquire(key: string, timeoutMs?: number): Promise<() => void> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let done!: () => void;
    const turn = new Promise<void>((resolve) => {
      done = resolve;
    });
    const tail = previous.then(() => turn);
    this.#tails.set(key, tail);
    const release = () => {
      done();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    };
    if (timeoutMs === undefined) {
      await previous;
      return release;
    }
    if (!(await settlesWithin(previous, timeoutMs))) {
      // Our place is given up once the holders before us are done, never before.
      void previous.then(release);
      throw new LockTimeoutError(timeoutMs);
    }
    return release;
  }

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire(key);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** Resolves once every holder queued so far has finished. */
  async idle(): Promise<void> {
    while (this.#tails.size > 0) await Promise.all(this.#tails.values());
  }
}

function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), Math.max(0, ms));
    void promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export interface SessionLockOptions {
  store: SessionStore;
  /** Milliseconds to wait before LockTimeoutError. */
  timeout: number;
  /** Milliseconds after which a lock left by a crashed process expires. */
  ttl: number;
  /** Runs a store call, turning failures into StoreUnavailableError. */
  call<T>(what: string, fn: () => Promise<T>): Promise<T>;
}

/**
 * The per-session lock of `lock: true`: requests of this process queue on a
 * local mutex (no polling among themselves); the store's own lock, when it
 * has one, excludes other processes and is polled with capped backoff.
 */
export class SessionLocks {
  readonly #local = new KeyedMutex();
  readonly #o: SessionLockOptions;

  constructor(options: SessionLockOptions) {
    this.#o = options;
  }

  async acquire(key: string): Promise<HeldLock> {
    const { store, timeout, ttl, call } = this.#o;
    const deadline = Date.now() + timeout;
    const release = await this.#local.acquire(key, timeout);
    const token = randomBytes(16).toString('base64url');
    try {
      if (store.lock) {
        let wait = 5;
        while (!(await call('lock', () => store.lock!(key, token, ttl)))) {
          const left = deadline - Date.now();
          if (left <= 0) throw new LockTimeoutError(timeout);
          // The last try lands on the deadline rather than a poll interval before it.
          await sleep(Math.min(wait + randomInt(5), left));
          wait = Math.min(wait * 2, 100);
        }
      }
    } catch (err) {
      release();
      throw err;
    }
    return { key, token, release };
  }

  async release(lock: HeldLock): Promise<void> {
    const { store, call } = this.#o;
    try {
      if (store.unlock) await call('unlock', () => store.unlock!(lock.key, lock.token));
    } finally {
      lock.release();
    }
  }
}
