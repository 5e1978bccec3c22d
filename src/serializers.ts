// The public face of the session-data serializers. Each format lives in its
// own file under serializers/: json.ts (the default, refuses what JSON would
// change), rich.ts (tagged JSON for Date, Map, Set, BigInt and registered
// classes), walk.ts (the limits and error paths both share).

/**
 * Turns a session's data (a plain object of top-level keys) into the string a
 * store keeps, and back. `parse` must never execute code from the payload.
 */
export interface Serializer {
  readonly name: string;
  stringify(data: Record<string, unknown>): string;
  /** Throws (any error) when the text is not a payload this serializer wrote. */
  parse(text: string): Record<string, unknown>;
  /**
   * Optional: a deep copy of one value, as `parse(stringify(value))` would
   * give for a value this serializer accepts (what it refuses may be returned
   * as it is: the commit refuses it). `session.update` hands updaters a copy;
   * without this method the copy is a round trip through the serializer.
   */
  clone?(value: unknown): unknown;
}

export { jsonSerializer } from './serializers/json.js';
export { type ClassCodec, richSerializer } from './serializers/rich.js';
export { MAX_BIGINT_DIGITS, MAX_DEPTH } from './serializers/walk.js';
