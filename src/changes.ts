/**
 * The change log: a session's data as this request sees it, and the ordered
 * list of what this request did to it. After a conflicting write the
 * persistence replays the log on the newest stored data (DESIGN.md,
 * "Concurrency"), so every change is kept as an operation, not as a result.
 */
import { SatchelError } from './errors.js';

/** Keys satchel keeps in the data for itself; hidden from keys(), values() and entries(). */
export const RESERVED_PREFIX = '_satchel_';
export const FLASH_KEY = `${RESERVED_PREFIX}flash`;
export const EXPIRY_KEY = `${RESERVED_PREFIX}expiry`;
export const OWNER_KEY = `${RESERVED_PREFIX}owner`;
export const DEVICE_KEY = `${RESERVED_PREFIX}device`;

/** One recorded change; replayed in order on the newest data after a conflict. */
export type Op =
  | { t: 'set'; k: string; v: unknown }
  | { t: 'delete'; k: string }
  | { t: 'update'; k: string; fn: (value: any) => unknown }
  | { t: 'clear' }
  | { t: 'flash'; remove: string[] | 'all'; add: Record<string, unknown> };

export type SessionMap = Map<string, unknown>;

/** How values are copied and compared; the data codec provides both. `key` names the value in errors. */
export interface ValueCodec {
  clone(value: unknown, key: string): unknown;
  stringifyValue(value: unknown, key: string): string;
}

type Clone = (value: unknown, key: string) => unknown;
const same: Clone = (value) => value;

function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null;
}

/** Applies one recorded change to a data map; `clone` isolates values an updater may mutate. */
export function applyOp(data: SessionMap, op: Op, clone: Clone): void {
  switch (op.t) {
    case 'set':
      if (op.v === undefined) data.delete(op.k);
      else data.set(op.k, op.v);
      return;
    case 'delete':
      data.delete(op.k);
      return;
    case 'update': {
      const next = op.fn(clone(data.get(op.k), op.k));
      if (next === undefined) data.delete(op.k);
      else data.set(op.k, next);
      return;
    }
    case 'clear':
      data.clear();
      return;
    case 'flash': {
      const current = data.get(FLASH_KEY);
      const flashes: Record<string, unknown> =
        op.remove === 'all' || !isObject(current)
          ? {}
          : { ...(current as Record<string, unknown>) };
      if (op.remove !== 'all') for (const k of op.remove) delete flashes[k];
      Object.assign(flashes, op.add);
      if (Object.keys(flashes).length === 0) data.delete(FLASH_KEY);
      else data.set(FLASH_KEY, flashes);
      return;
    }
  }
}

/**
 * Replays `ops`, in order, on `base`: the newest stored data, freshly read,
 * which nobody else holds. `set` values are copied (the request may still
 * hold them); updaters get the values as they are, as nothing else sees them.
 */
export function replay(base: SessionMap, ops: readonly Op[], clone: Clone): SessionMap {
  for (const op of ops) applyOp(base, op.t === 'set' ? { ...op, v: clone(op.v, op.k) } : op, same);
  return base;
}

/** The record's indexed owner comes from the data, so merges and replays carry it like any key. */
export function ownerOf(data: SessionMap): { owner?: string } {
  const owner = data.get(OWNER_KEY);
  return typeof owner === 'string' ? { owner } : {};
}

export class ChangeLog {
  // Both maps are made when first needed: a loaded session replaces the
  // first at once, and values handed out by reference are the rarer case.
  #data: SessionMap | undefined;
  /** Saved data not read back yet (a group commit's other sessions), and its expiry setting. */
  #pending: { load: () => SessionMap; setting: unknown } | undefined;
  /** What this request changed since the last save, in order. */
  ops: Op[] = [];
  /** The handler read or wrote the session (responses then vary on the cookie). */
  accessed = false;
  /** Values handed out by reference, with their serialized form at that moment. */
  #handedOut: Map<string, { ref: object; text: string }> | undefined;
  readonly #codec: ValueCodec;

  constructor(codec: ValueCodec) {
    this.#codec = codec;
  }

  /** The data as this request sees it: loaded, then changed by `ops`. */
  get data(): SessionMap {
    if (this.#pending) {
      this.#data = this.#pending.load();
      this.#pending = undefined;
    }
    this.#data ??= new Map();
    return this.#data;
  }

  set data(data: SessionMap) {
    this.#pending = undefined;
    this.#data = data;
  }

  /** The per-session expiry setting, without reading back data a group commit saved. */
  get expirySetting(): unknown {
    return this.#pending ? this.#pending.setting : this.#data?.get(EXPIRY_KEY);
  }

  read(key: string): unknown {
    this.accessed = true;
    const value = this.data.get(key);
    if (isObject(value) && !this.#handedOut?.has(key)) {
      // Handed out by reference: a nested change (cart.push(x)) is found at commit.
      try {
        const text = this.#codec.stringifyValue(value, key);
        this.#handedOut ??= new Map();
        this.#handedOut.set(key, { ref: value, text });
      } catch (err) {
        // A value the serializer refuses (a Date under JSON) is reported by the commit, naming its key.
        if (!SatchelError.is(err)) throw err;
      }
    }
    return value;
  }

  has(key: string): boolean {
    this.accessed = true;
    return this.data.has(key);
  }

  /**
   * Applies `op` now and records it. An updater always gets a copy: one that
   * throws part-way leaves nothing behind and is not recorded, and a value the
   * handler holds (or the op log's set) never changes under it.
   */
  write(op: Op): void {
    this.accessed = true;
    applyOp(this.data, op, op.t === 'update' ? this.#codec.clone : same);
    this.ops.push(op);
  }

  /** True when a handed-out value was changed in place. */
  hasNestedChanges(): boolean {
    if (this.#handedOut === undefined) return false;
    for (const [key, { ref, text }] of this.#handedOut) {
      if (this.data.get(key) === ref && this.#codec.stringifyValue(ref, key) !== text) return true;
    }
    return false;
  }

  /** A handed-out value changed in place (cart.push(x)) is logged as if set. */
  recordNestedChanges(): void {
    if (this.#handedOut === undefined) return;
    for (const [key, entry] of this.#handedOut) {
      if (this.data.get(key) !== entry.ref) continue;
      const now = this.#codec.stringifyValue(entry.ref, key);
      if (now === entry.text) continue;
      this.ops.push({ t: 'set', k: key, v: entry.ref });
      // Re-baselined, so a change made after save() is caught by the next save.
      entry.text = now;
    }
  }

  /** The data was saved (possibly merged with newer data): start a new log from it. */
  saved(data: SessionMap): void {
    this.data = data;
    this.ops = [];
  }

  /**
   * The data was saved by a group commit along with other sessions': it is
   * read back from the record only if this request looks at it again.
   */
  savedLazily(load: () => SessionMap, setting: unknown): void {
    this.#pending = { load, setting };
    this.#data = undefined;
    this.ops = [];
  }

  /** flush(): no data, no pending changes, nothing handed out. */
  reset(): void {
    this.accessed = true;
    this.data.clear();
    this.ops = [];
    this.#handedOut?.clear();
  }
}
