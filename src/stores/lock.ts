/**
 * In-process helpers shared by the stores: a per-key async mutex and a table
 * of advisory locks with expiry. Internal, not part of the public API.
 */

/** Runs callbacks one at a time per key; callbacks on different keys run concurrently. */
export class KeyedMutex {
  #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const done = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => done);
    this.#tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }

  /** Resolves once every callback queued so far has finished. */
  async idle(): Promise<void> {
    while (this.#tails.size > 0) {
      await Promise.all(this.#tails.values());
    }
  }
}

interface Held {
  token: string;
  expiresAt: number;
}

/**
 * Advisory locks with expiry, held in this process only. A token that already
 * holds a key may take it again, which extends its expiry.
 */
export class LockTable {
  #held = new Map<string, Held>();

  take(key: string, token: string, ttlMs: number, now = Date.now()): boolean {
    const held = this.#held.get(key);
    if (held !== undefined && held.token !== token && held.expiresAt > now) return false;
    this.#held.set(key, { token, expiresAt: now + ttlMs });
    return true;
  }

  release(key: string, token: string): void {
    if (this.#held.get(key)?.token === token) this.#held.delete(key);
  }

  /** Forgets expired locks; resolves to how many. */
  sweep(now = Date.now()): number {
    let removed = 0;
    for (const [key, held] of this.#held) {
      if (held.expiresAt <= now) {
        this.#held.delete(key);
        removed++;
      }
    }
    return removed;
  }

  get size(): number {
    return this.#held.size;
  }

  clear(): void {
    this.#held.clear();
  }
}
