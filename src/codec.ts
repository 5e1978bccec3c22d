import type { SessionMap } from './changes.js';
import { PayloadTooLargeError } from './errors.js';
import type { IssuedId } from './identity.js';
import { generateId, isWellFormedId, type Signer, storeKey } from './ids.js';
import type { Logger } from './options.js';
import type { Serializer } from './serializers.js';
import type { StoredSession } from './store.js';

/** Session data in and out of the serializer: parse, serialize (size-limited), clone. */
export interface DataCodec {
  readonly serializer: Serializer;
  /** The stored data, or undefined when it cannot be read (logged: a corrupt record reads as empty). */
  parse(record: StoredSession): SessionMap | undefined;
  /** The text a store keeps; PayloadTooLargeError past the limit, and nothing is saved. */
  serialize(data: SessionMap): string;
  /** A deep copy through the serializer, so an updater never mutates stored state. */
  clone(value: unknown, key: string): unknown;
  /** One value's serialized form, to notice changes made in place; `key` names it in errors. */
  stringifyValue(value: unknown, key: string): string;
}

export function createDataCodec(
  serializer: Serializer,
  maxPayloadBytes: number,
  logger: Logger,
  storeName: string,
): DataCodec {
  // A computed key is an own property even when it is "__proto__".
  const stringifyValue = (value: unknown, key: string): string =>
    serializer.stringify({ [key]: value });
  return {
    serializer,
    parse(record) {
      try {
        return new Map(Object.entries(serializer.parse(record.data)));
      } catch (err) {
        logger.warn(
          `[satchel] [${storeName}] stored session data could not be read; starting an empty session`,
          {
            store: storeName,
            serializer: serializer.name,
            error: err instanceof Error ? err.message : String(err),
          },
        );
        return undefined;
      }
    },
    serialize(data) {
      const text = serializer.stringify(Object.fromEntries(data));
      // A UTF-16 code unit is at most 3 UTF-8 bytes: short text needs no counting.
      if (text.length * 3 <= maxPayloadBytes) return text;
      const size = Buffer.byteLength(text);
      if (size > maxPayloadBytes) throw new PayloadTooLargeError(size, maxPayloadBytes);
      return text;
    },
    clone(value, key) {
      if (value === null || typeof value !== 'object') return value;
      if (serializer.clone) return serializer.clone(value);
      return serializer.parse(stringifyValue(value, key))[key];
    },
    stringifyValue,
  };
}

/** Why an incoming value was not taken as a session ID. */
export type IdRejection = 'malformed' | 'unsigned' | 'signed';

/** Session IDs in and out of the transport: issue, sign, verify. */
export interface IdCodec {
  issue(): IssuedId;
  /** What the transport carries for `id`: the ID, signed when secrets are set. */
  encode(id: string): string;
  /**
   * The ID in an incoming value, or why there is none. `resign` marks an
   * unsigned ID accepted during a signing rollout: the response re-sends it signed.
   */
  decode(value: string): DecodedId | { rejected: IdRejection };
}

export interface DecodedId {
  id: string;
  resign: boolean;
}

export interface IdCodecOptions {
  signer: Signer | undefined;
  /** Accept unsigned IDs while signing is rolled out (`acceptUnsignedIds`). */
  acceptUnsigned: boolean;
}

export function createIdCodec({ signer, acceptUnsigned }: IdCodecOptions): IdCodec {
  const issue = (): IssuedId => {
    const id = generateId();
    return { id, key: storeKey(id) };
  };
  if (!signer) {
    return {
      issue,
      encode: (id) => id,
      decode(value) {
        if (isWellFormedId(value)) return { id: value, resign: false };
        return { rejected: value.length === 87 && value[43] === '.' ? 'signed' : 'malformed' };
      },
    };
  }
  return {
    issue,
    encode: (id) => signer.sign(id),
    decode(value) {
      const id = signer.unsign(value);
      if (id !== undefined && isWellFormedId(id)) return { id, resign: false };
      if (!isWellFormedId(value)) return { rejected: 'malformed' };
      return acceptUnsigned ? { id: value, resign: true } : { rejected: 'unsigned' };
    },
  };
}
