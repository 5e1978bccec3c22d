import type { SessionMap } from '../changes.js';
import type { DataCodec } from '../codec.js';

/** Sessions whose parsed data is kept; the least recently used goes first. */
const MAX_ENTRIES = 1_000;
/** Characters of stored text the kept sessions may add up to (their copies take a few times that). */
const MAX_TOTAL_TEXT = 8 * 1024 * 1024;
/** A longer payload is parsed every time rather than crowd out a hundred small ones. */
const MAX_TEXT = 64 * 1024;

interface Entry {
  text: string;
  data: SessionMap;
}

/**
 * The data of the sessions this process last read or wrote, parsed, under
 * their store key and with the exact text they were stored as. A load whose
 * record still holds that text gets a deep copy instead of a parse: on the
 * cart workload JSON.parse was the largest single cost of a request, and
 * copying an array of 20 strings costs a fraction of parsing them. A
 * different text (another process wrote) is a miss, so nothing can go stale;
 * entries are per session, so no session's timing depends on another's data.
 */
export class ParsedCache {
  readonly #entries = new Map<string, Entry>();
  readonly #codec: DataCodec;
  readonly #enabled: boolean;
  #totalText = 0;

  constructor(codec: DataCodec) {
    this.#codec = codec;
    // Without the serializer's clone(), a copy is a round trip: no cheaper than a parse.
    this.#enabled = codec.serializer.clone !== undefined;
  }

  /** A private copy of the session's data if `text` is what this process last saw for `key`. */
  read(key: string, text: string): SessionMap | undefined {
    const entry = this.#entries.get(key);
    // A different text is older (a group commit's other sessions read back
    // later) or newer (another process wrote): kept either way until replaced.
    if (entry === undefined || entry.text !== text) return undefined;
    this.#drop(key, entry);
    this.#keep(key, entry);
    return this.#copy(entry.data);
  }

  /** `data` was parsed from, or serialized as, `text`: keep a copy nobody else can reach. */
  remember(key: string, text: string, data: SessionMap): void {
    this.forget(key);
    if (!this.#enabled || text.length > MAX_TEXT) return;
    this.#keep(key, { text, data: this.#copy(data) });
    for (const [oldest, entry] of this.#entries) {
      if (this.#entries.size <= MAX_ENTRIES && this.#totalText <= MAX_TOTAL_TEXT) break;
      this.#drop(oldest, entry);
    }
  }

  forget(key: string): void {
    const entry = this.#entries.get(key);
    if (entry !== undefined) this.#drop(key, entry);
  }

  #keep(key: string, entry: Entry): void {
    this.#entries.set(key, entry);
    this.#totalText += entry.text.length;
  }

  #drop(key: string, entry: Entry): void {
    this.#entries.delete(key);
    this.#totalText -= entry.text.length;
  }

  #copy(data: SessionMap): SessionMap {
    const copy: SessionMap = new Map();
    const clone = this.#codec.clone;
    data.forEach((value, key) => {
      copy.set(key, clone(value, key));
    });
    return copy;
  }
}
