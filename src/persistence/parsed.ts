import type { SessionMap } from '../changes.js';
import type { Serializer } from '../serializers.js';
import type { StoredSession } from '../store.js';
import { jsonSerializer } from '../serializers/json.js';

/** Sessions whose parsed data is kept; the least recently used goes first. */
const MAX_ENTRIES = 1_000;
/** Characters of stored text the kept sessions may add up to (their copies take a few times that). */
const MAX_TOTAL_TEXT = 8 * 1024 * 1024;
/** A longer payload is parsed every time rather than crowd out a hundred small ones. */
const MAX_TEXT = 64 * 1024;

/** A private copy of a session's data, and the exact text it is stored as. */
export interface Parsed {
  readonly text: string;
  /** Undefined for a custom serializer's data, which is parsed every time. */
  readonly data: SessionMap | undefined;
  /** The record read or written with that text (set when kept). */
  record?: StoredSession;
}

/**
 * The data of the sessions this process last read or wrote, parsed, under
 * their store key and with the exact text they were stored as. A load whose
 * record still holds that text gets a deep copy instead of a parse: on the
 * cart workload JSON.parse was the largest single cost of a request, and
 * copying an array of 20 strings costs a fraction of parsing them. A
 * different text (another process wrote) is a miss, so no data can go stale;
 * entries are per session, so no session's timing depends on another's data.
 * The kept record may be older than the store's (another process wrote
 * since): a commit that starts from it is a compare-and-set all the same.
 *
 * Copies only for the built-in JSON serializer, whose copy is exactly what
 * parsing its text gives back; a custom serializer's data is parsed every
 * time, but its record is kept all the same (see `record`).
 */
export class ParsedCache {
  readonly #entries = new Map<string, Parsed>();
  readonly #clone: ((value: unknown) => unknown) | undefined;
  #totalText = 0;

  constructor(serializer: Serializer) {
    this.#clone = serializer === jsonSerializer ? jsonSerializer.clone : undefined;
  }

  /** A private copy of the session's data if `text` is what this process last saw for `key`. */
  read(key: string, text: string): SessionMap | undefined {
    const entry = this.#entries.get(key);
    // A different text is older (a group commit's other sessions read back
    // later) or newer (another process wrote): kept either way until replaced.
    if (entry?.data === undefined || entry.text !== text) return undefined;
    this.#drop(key, entry);
    this.#add(key, entry);
    return this.#copy(entry.data);
  }

  /**
   * A copy of `data`, stored (or about to be) as `text`, taken now: a handler
   * that changes its values while the write is awaited cannot reach it.
   * Undefined when it would not be kept.
   */
  snapshot(text: string, data: SessionMap): Parsed | undefined {
    if (text.length > MAX_TEXT) return undefined;
    // `record` is set by keep(); declared here so that setting it does not reshape the object.
    return {
      text,
      data: this.#clone === undefined ? undefined : this.#copy(data),
      record: undefined,
    };
  }

  /**
   * The session is now stored as `record`, whose data `snapshot` copied
   * (undefined: forget what was kept).
   */
  keep(key: string, snapshot: Parsed | undefined, record?: StoredSession): void {
    // A read that finished after this process's own newer write leaves the newer one kept.
    const kept = this.#entries.get(key)?.record;
    if (record && kept && kept.version > record.version) return;
    this.forget(key);
    if (snapshot === undefined) return;
    snapshot.record = record;
    this.#add(key, snapshot);
    for (const [oldest, entry] of this.#entries) {
      if (this.#entries.size <= MAX_ENTRIES && this.#totalText <= MAX_TOTAL_TEXT) break;
      this.#drop(oldest, entry);
    }
  }

  /**
   * The record this process last read or wrote for `key`, while kept: a
   * commit whose load is older starts from it instead of conflicting with
   * this process's own save (`commits.ts`).
   */
  record(key: string): StoredSession | undefined {
    return this.#entries.get(key)?.record;
  }

  forget(key: string): void {
    const entry = this.#entries.get(key);
    if (entry !== undefined) this.#drop(key, entry);
  }

  #add(key: string, entry: Parsed): void {
    this.#entries.set(key, entry);
    this.#totalText += entry.text.length;
  }

  #drop(key: string, entry: Parsed): void {
    this.#entries.delete(key);
    this.#totalText -= entry.text.length;
  }

  #copy(data: SessionMap): SessionMap {
    const clone = this.#clone!;
    const copy: SessionMap = new Map();
    data.forEach((value, key) => {
      copy.set(key, clone(value));
    });
    return copy;
  }
}
