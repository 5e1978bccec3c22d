/**
 * A table of advisory locks with expiry, for stores that keep their locks in
 * this process. Internal, not part of the public API. (The per-key mutex is
 * the core's: src/locks.ts.)
 */

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
