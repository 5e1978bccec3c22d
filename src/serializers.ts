import { CorruptDataError, SerializeError } from './errors.js';

/**
 * Turns a session's data (a plain object of top-level keys) into the string a
 * store keeps, and back. `parse` must never execute code from the payload.
 */
export interface Serializer {
  readonly name: string;
  stringify(data: Record<string, unknown>): string;
  /** Throws (any error) when the text is not a payload this serializer wrote. */
  parse(text: string): Record<string, unknown>;
}

function assertPlainObject(value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CorruptDataError('session payload is not an object');
  }
  return value as Record<string, unknown>;
}

function rejectUnserializable(key: string, value: unknown): void {
  if (typeof value === 'function' || typeof value === 'symbol') {
    throw new SerializeError(
      `cannot serialize a ${typeof value} (at key "${key}") as session data`,
    );
  }
  if (typeof value === 'bigint') {
    throw new SerializeError(
      `cannot serialize a bigint (at key "${key}") with the json serializer; use serializer: 'rich'`,
    );
  }
}

/** Functions and symbols, which JSON.stringify would drop silently, are refused (a JS walk is cheaper than a replacer). */
function assertNoFunctions(value: unknown, key: string): void {
  if (typeof value === 'function' || typeof value === 'symbol') rejectUnserializable(key, value);
  if (typeof value !== 'object' || value === null) return;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) assertNoFunctions(value[i], key);
    return;
  }
  if (value instanceof Map || value instanceof Set) {
    throw new SerializeError(
      `cannot serialize a ${value instanceof Map ? 'Map' : 'Set'} (at key "${key}") with the json serializer; use serializer: 'rich'`,
    );
  }
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return;
  for (const k of Object.keys(value)) assertNoFunctions((value as Record<string, unknown>)[k], k);
}

/** JSON, as Django's default JSONSerializer. Dates become strings; Map, Set and BigInt are refused. */
export const jsonSerializer: Serializer = {
  name: 'json',
  stringify(data) {
    let text: string;
    try {
      text = JSON.stringify(data);
    } catch (err) {
      if (err instanceof TypeError && /BigInt/i.test(err.message)) {
        throw new SerializeError(
          "cannot serialize a bigint with the json serializer; use serializer: 'rich'",
          err,
        );
      }
      throw new SerializeError('session data is not serializable as JSON', err);
    }
    // Only after stringify succeeded, so a cycle has already been refused.
    assertNoFunctions(data, '');
    return text;
  },
  parse(text) {
    return assertPlainObject(JSON.parse(text));
  },
};

/** A class the rich serializer may rebuild. Loading never calls its constructor. */
export interface ClassCodec<T extends object = object> {
  /** The constructor; instances are recognized by `instanceof`. */
  type: abstract new (
    ...args: never[]
  ) => T;
  /** Turns an instance into JSON-safe data. @default its own enumerable fields */
  serialize?: (value: T) => unknown;
  /** Rebuilds an instance from that data. @default fields assigned to `Object.create(type.prototype)` */
  revive?: (data: unknown) => T;
}

const TAG = '$t';

/** Defines an own property, so a "__proto__" key in the data stays data. */
function put(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

/**
 * Tagged JSON that keeps Date, Map, Set, BigInt, undefined, NaN/±Infinity and
 * registered classes. Loading reads tags from a fixed table (and the classes
 * you registered by name); it never evaluates code from the payload.
 */
export function richSerializer(classes: Record<string, ClassCodec> = {}): Serializer {
  const entries = Object.entries(classes);
  for (const [name] of entries) {
    if (!/^[A-Za-z_$][\w$]*$/.test(name)) {
      throw new SerializeError(`class name "${name}" must be an identifier`);
    }
  }
  const byName = new Map(entries);

  const encode = (value: unknown, key: string, seen: Set<object>): unknown => {
    switch (typeof value) {
      case 'string':
      case 'boolean':
        return value;
      case 'number':
        return Number.isFinite(value) ? value : { [TAG]: 'Number', v: String(value) };
      case 'bigint':
        return { [TAG]: 'BigInt', v: value.toString() };
      case 'undefined':
        return { [TAG]: 'undefined' };
      case 'function':
      case 'symbol':
        rejectUnserializable(key, value);
    }
    if (value === null) return null;
    const obj = value as object;
    if (seen.has(obj)) throw new SerializeError(`cannot serialize a cycle (at key "${key}")`);
    seen.add(obj);
    try {
      if (obj instanceof Date) return { [TAG]: 'Date', v: encode(obj.getTime(), key, seen) };
      if (Array.isArray(obj)) return obj.map((item, i) => encode(item, `${key}[${i}]`, seen));
      if (obj instanceof Map) {
        return {
          [TAG]: 'Map',
          v: [...obj].map(([k, v]) => [encode(k, key, seen), encode(v, key, seen)]),
        };
      }
      if (obj instanceof Set) return { [TAG]: 'Set', v: [...obj].map((v) => encode(v, key, seen)) };
      const proto = Object.getPrototypeOf(obj);
      if (proto === Object.prototype || proto === null) {
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(obj)) put(out, k, encode(v, k, seen));
        // A plain object that itself has a "$t" key is wrapped so it is not read as a tag.
        return TAG in out ? { [TAG]: 'Object', v: out } : out;
      }
      for (const [name, codec] of byName) {
        if (obj instanceof codec.type) {
          const raw = codec.serialize ? codec.serialize(obj) : { ...obj };
          return { [TAG]: 'Class', n: name, v: encode(raw, key, seen) };
        }
      }
      throw new SerializeError(
        `cannot serialize an instance of ${proto?.constructor?.name ?? 'an unknown class'} (at key "${key}"); register it with richSerializer({ Name: { type } })`,
      );
    } finally {
      seen.delete(obj);
    }
  };

  const decode = (value: unknown): unknown => {
    if (typeof value !== 'object' || value === null) return value;
    if (Array.isArray(value)) return value.map(decode);
    const obj = value as Record<string, unknown>;
    if (!Object.hasOwn(obj, TAG)) {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(obj)) put(out, k, decode(v));
      return out;
    }
    const v = obj.v;
    switch (obj[TAG]) {
      case 'Date':
        return new Date(decode(v) as number);
      case 'BigInt':
        return BigInt(v as string);
      case 'Number':
        return Number(v);
      case 'undefined':
        return undefined;
      case 'Map':
        return new Map((v as [unknown, unknown][]).map(([k, x]) => [decode(k), decode(x)]));
      case 'Set':
        return new Set((v as unknown[]).map(decode));
      case 'Object': {
        const out: Record<string, unknown> = {};
        for (const [k, x] of Object.entries(v as Record<string, unknown>)) put(out, k, decode(x));
        return out;
      }
      case 'Class': {
        const codec = byName.get(obj.n as string);
        if (!codec) throw new CorruptDataError(`unknown class "${String(obj.n)}" in session data`);
        const data = decode(v);
        if (codec.revive) return codec.revive(data);
        return Object.assign(Object.create(codec.type.prototype), data);
      }
      default:
        throw new CorruptDataError(`unknown tag "${String(obj[TAG])}" in session data`);
    }
  };

  return {
    name: 'rich',
    stringify(data) {
      const seen = new Set<object>();
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(data)) put(out, k, encode(v, k, seen));
      return JSON.stringify(out);
    },
    parse(text) {
      const raw = assertPlainObject(JSON.parse(text));
      if (Object.hasOwn(raw, TAG)) throw new CorruptDataError('session payload is not an object');
      return decode(raw) as Record<string, unknown>;
    },
  };
}
