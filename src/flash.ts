import { FLASH_KEY, type Op, type SessionMap } from './changes.js';

/**
 * Flash values: set by one request, read once by a later one (Django's
 * messages, Rails' flash). Incoming values live in the data under FLASH_KEY;
 * this request's bookkeeping becomes one `flash` op at save time.
 */
export class Flash {
  /** Values set by earlier requests, as loaded. */
  #in: Record<string, unknown> = {};
  /** Values readable during this request only (flashNow). */
  #now: Record<string, unknown> = {};
  /** Values for the next request. */
  #out: Record<string, unknown> = {};
  #keep: Set<string> | 'all' = new Set();
  /** Incoming keys read here: removed at save (read once). */
  #read = new Set<string>();
  /** Incoming keys already removed by an earlier save() in this request. */
  #consumed = new Set<string>();

  /** Takes the incoming flash values from loaded data. */
  adopt(data: SessionMap): void {
    const flash = data.get(FLASH_KEY);
    if (flash && typeof flash === 'object') this.#in = { ...(flash as Record<string, unknown>) };
  }

  set(key: string, value: unknown): void {
    this.#out[key] = value;
  }

  setNow(key: string, value: unknown): void {
    this.#now[key] = value;
  }

  get(key: string): unknown {
    if (Object.hasOwn(this.#in, key)) this.#read.add(key);
    return Object.hasOwn(this.#now, key) ? this.#now[key] : this.#in[key];
  }

  all(): Record<string, unknown> {
    for (const key of Object.keys(this.#in)) this.#read.add(key);
    return { ...this.#in, ...this.#now };
  }

  keep(key?: string): void {
    if (key === undefined) this.#keep = 'all';
    else if (this.#keep !== 'all') this.#keep.add(key);
  }

  /** Values set for the next request and not saved yet. */
  get pending(): boolean {
    return Object.keys(this.#out).length > 0;
  }

  /**
   * The op that moves this request's flash bookkeeping into the data, once
   * per save; undefined when there is nothing to move.
   */
  drain(): Op | undefined {
    if (this.#read.size === 0 && !this.pending) return undefined;
    const kept = this.#keep;
    const remove =
      kept === 'all' ? [] : [...this.#read].filter((k) => !kept.has(k) && !this.#consumed.has(k));
    if (remove.length === 0 && !this.pending) return undefined;
    const op: Op = { t: 'flash', remove, add: this.#out };
    // Values read here stay readable for the rest of the request, even after save().
    for (const key of remove) this.#consumed.add(key);
    this.#out = {};
    return op;
  }

  /** flush(): every flash value is gone. */
  reset(): void {
    this.#in = {};
    this.#now = {};
    this.#out = {};
    this.#keep = new Set();
    this.#read = new Set();
    this.#consumed = new Set();
  }
}
