import { FLASH_KEY, type Op, type SessionMap } from './changes.js';

const NONE: Readonly<Record<string, unknown>> = Object.freeze({});

/**
 * Flash values: set by one request, read once by a later one (Django's
 * messages, Rails' flash). Incoming values live in the data under FLASH_KEY;
 * this request's bookkeeping becomes one `flash` op at save time.
 */
export class Flash {
  // Most requests flash nothing: the bookkeeping is made on first use, not per request.
  /** Values set by earlier requests, as loaded (never changed in place). */
  #in: Readonly<Record<string, unknown>> = NONE;
  /** Values readable during this request only (flashNow). */
  #now: Record<string, unknown> | undefined;
  /** Values for the next request. */
  #out: Record<string, unknown> | undefined;
  #keep: Set<string> | 'all' | undefined;
  /** Incoming keys read here: removed at save (read once). */
  #read: Set<string> | undefined;
  /** Incoming keys already removed by an earlier save() in this request. */
  #consumed: Set<string> | undefined;

  /** Takes the incoming flash values from loaded data. */
  adopt(data: SessionMap): void {
    const flash = data.get(FLASH_KEY);
    if (flash && typeof flash === 'object') this.#in = { ...(flash as Record<string, unknown>) };
  }

  set(key: string, value: unknown): void {
    if (this.#out === undefined) this.#out = {};
    this.#out[key] = value;
  }

  setNow(key: string, value: unknown): void {
    if (this.#now === undefined) this.#now = {};
    this.#now[key] = value;
  }

  get(key: string): unknown {
    if (Object.hasOwn(this.#in, key)) this.#markRead(key);
    return this.#now && Object.hasOwn(this.#now, key) ? this.#now[key] : this.#in[key];
  }

  all(): Record<string, unknown> {
    for (const key of Object.keys(this.#in)) this.#markRead(key);
    return { ...this.#in, ...this.#now };
  }

  keep(key?: string): void {
    if (key === undefined) this.#keep = 'all';
    else if (this.#keep !== 'all') this.#keep = (this.#keep ?? new Set<string>()).add(key);
  }

  /** Values set for the next request and not saved yet. */
  get pending(): boolean {
    return this.#out !== undefined && Object.keys(this.#out).length > 0;
  }

  /**
   * The op that moves this request's flash bookkeeping into the data, once
   * per save; undefined when there is nothing to move.
   */
  drain(): Op | undefined {
    if (this.#read === undefined && !this.pending) return undefined;
    const kept = this.#keep;
    const remove =
      kept === 'all'
        ? []
        : [...(this.#read ?? [])].filter((k) => !kept?.has(k) && !this.#consumed?.has(k));
    if (remove.length === 0 && !this.pending) return undefined;
    const op: Op = { t: 'flash', remove, add: this.#out ?? {} };
    // Values read here stay readable for the rest of the request, even after save().
    if (remove.length > 0) {
      if (this.#consumed === undefined) this.#consumed = new Set();
      for (const key of remove) this.#consumed.add(key);
    }
    this.#out = undefined;
    return op;
  }

  #markRead(key: string): void {
    if (this.#read === undefined) this.#read = new Set();
    this.#read.add(key);
  }

  /** flush(): every flash value is gone. */
  reset(): void {
    this.#in = NONE;
    this.#now = undefined;
    this.#out = undefined;
    this.#keep = undefined;
    this.#read = undefined;
    this.#consumed = undefined;
  }
}
