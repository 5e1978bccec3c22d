import { CorruptDataError, SerializeError } from '../errors.js';
import type { Serializer } from '../serializers.js';
import {
  assertPlainObject,
  className,
  corruptDepth,
  isPlainObject,
  MAP_KEY,
  MAP_VALUE,
  MAX_BIGINT_DIGITS,
  MAX_DEPTH,
  type Path,
  refuse,
  SET_ITEM,
  type Segment,
  tooDeep,
} from './walk.js';

/** A class the rich serializer may rebuild. Loading never calls its constructor. */
export interface ClassCodec<T extends object = object> {
  /** The constructor; instances are recognized by `instanceof`. */
  type: abstract new (
    ...args: never[]
  ) => T;
  /** Turns an instance into JSON-safe data. @default its own enumerable fields */
  serialize?: (value: T) => unknown;
  /**
   * Rebuilds an instance from that data, which comes from the store: read the
   * fields you expect rather than copying it wholesale. Data whose top level has
   * a `__proto__` or `constructor` key never reaches it (read as corrupt).
   * @default fields defined as own properties on `Object.create(type.prototype)`
   */
  revive?: (data: unknown) => T;
}

const TAG = '$t';

/** Keys class data may not have at its top level: `Object.assign` (or a naive reviver) would re-point the instance's prototype or shadow its class. */
const CLASS_FORBIDDEN = ['__proto__', 'constructor'] as const;

/** Defines an own property, so a "__proto__" key in the data stays data and never re-points a prototype. */
function put(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

const DIGITS = /^-?\d+$/;
const NUMBER_TAGS: Record<string, number> = {
  NaN: Number.NaN,
  Infinity: Number.POSITIVE_INFINITY,
  '-Infinity': Number.NEGATIVE_INFINITY,
  '-0': -0,
};

function numberTag(v: unknown): number | undefined {
  return typeof v === 'string' && Object.hasOwn(NUMBER_TAGS, v) ? NUMBER_TAGS[v] : undefined;
}

function corrupt(what: string): CorruptDataError {
  return new CorruptDataError(`${what} in session data`);
}

/** The classes one rich serializer may rebuild, by the name they are stored under. */
type Classes = ReadonlyMap<string, ClassCodec>;

/**
 * Tagged JSON that keeps Date, Map, Set, BigInt, undefined, NaN/±Infinity/-0 and
 * registered classes. Loading reads tags from a fixed table (and the classes
 * you registered by name); it never evaluates code from the payload, never
 * calls a constructor, and never lets stored data change a prototype.
 */
export function richSerializer(classes: Record<string, ClassCodec> = {}): Serializer {
  const entries = Object.entries(classes);
  for (const [name] of entries) {
    if (!/^[A-Za-z_$][\w$]*$/.test(name)) {
      throw new SerializeError(`class name "${name}" must be an identifier`);
    }
  }
  const byName: Classes = new Map(entries);
  return {
    name: 'rich',
    stringify(data) {
      const seen = new Set<object>();
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(data)) put(out, k, encode(v, [k], 1, seen, byName));
      return JSON.stringify(out);
    },
    parse(text) {
      const raw = assertPlainObject(JSON.parse(text));
      if (Object.hasOwn(raw, TAG)) throw new CorruptDataError('session payload is not an object');
      return decodeFields(raw, 0, byName);
    },
  };
}

// A top-level value is at depth 1; each container (array, plain object, Map,
// Set, class instance and then its fields) adds one, the same way both ways.
function encode(
  value: unknown,
  path: Path,
  depth: number,
  seen: Set<object>,
  classes: Classes,
): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      return Number.isFinite(value) && !Object.is(value, -0)
        ? value
        : { [TAG]: 'Number', v: Object.is(value, -0) ? '-0' : String(value) };
    case 'bigint': {
      const v = value.toString();
      if (v.length - (value < 0n ? 1 : 0) > MAX_BIGINT_DIGITS) {
        throw refuse(path, `a BigInt over ${MAX_BIGINT_DIGITS} digits (MAX_BIGINT_DIGITS)`);
      }
      return { [TAG]: 'BigInt', v };
    }
    case 'undefined':
      return { [TAG]: 'undefined' };
    case 'function':
    case 'symbol':
      throw refuse(path, `cannot serialize a ${typeof value}`);
  }
  if (value === null) return null;
  return encodeObject(value as object, path, depth, seen, classes);
}

/** Arrays, plain objects, Date, Map, Set and registered classes; a cycle or anything else is refused. */
function encodeObject(
  obj: object,
  path: Path,
  depth: number,
  seen: Set<object>,
  classes: Classes,
): unknown {
  if (seen.has(obj)) {
    throw refuse(path, 'cannot serialize a cycle (a value that contains itself)');
  }
  if (depth > MAX_DEPTH) throw tooDeep(path, undefined);
  seen.add(obj);
  const child = (item: unknown, seg: Segment): unknown => {
    path.push(seg);
    const out = encode(item, path, depth + 1, seen, classes);
    path.pop();
    return out;
  };
  try {
    if (obj instanceof Date)
      return { [TAG]: 'Date', v: encode(obj.getTime(), path, depth, seen, classes) };
    if (Array.isArray(obj)) {
      const out: unknown[] = new Array(obj.length);
      for (let i = 0; i < obj.length; i++) out[i] = child(obj[i], i);
      return out;
    }
    if (obj instanceof Map) {
      return {
        [TAG]: 'Map',
        v: [...obj].map(([k, v]) => [child(k, MAP_KEY), child(v, MAP_VALUE)]),
      };
    }
    if (obj instanceof Set) {
      return { [TAG]: 'Set', v: [...obj].map((v) => child(v, SET_ITEM)) };
    }
    if (isPlainObject(obj)) {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(obj)) put(out, k, child(v, k));
      // A plain object that itself has a "$t" key is wrapped so it is not read as a tag.
      return Object.hasOwn(out, TAG) ? { [TAG]: 'Object', v: out } : out;
    }
    for (const [name, codec] of classes) {
      if (obj instanceof codec.type) {
        const raw = codec.serialize ? codec.serialize(obj) : { ...obj };
        if (typeof raw === 'object' && raw !== null) {
          for (const key of CLASS_FORBIDDEN) {
            if (Object.hasOwn(raw, key)) {
              throw refuse(
                path,
                `an instance of ${name} whose data has an own "${key}" key cannot be revived safely`,
              );
            }
          }
        }
        return { [TAG]: 'Class', n: name, v: encode(raw, path, depth + 1, seen, classes) };
      }
    }
    throw refuse(
      path,
      `cannot serialize an instance of ${className(obj)}; register it with richSerializer({ Name: { type: Name } })`,
    );
  } finally {
    seen.delete(obj);
  }
}

function decode(value: unknown, depth: number, classes: Classes): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (depth > MAX_DEPTH) throw corruptDepth();
  if (Array.isArray(value)) return value.map((item) => decode(item, depth + 1, classes));
  const obj = value as Record<string, unknown>;
  if (!Object.hasOwn(obj, TAG)) return decodeFields(obj, depth, classes);
  const v = obj.v;
  const tag = obj[TAG];
  switch (tag) {
    case 'Date': {
      // Read in place, not through decode(): a Date holds a number or a Number tag, nothing deeper.
      const time =
        typeof v === 'number'
          ? v
          : typeof v === 'object' && v !== null && (v as Record<string, unknown>)[TAG] === 'Number'
            ? numberTag((v as Record<string, unknown>).v)
            : undefined;
      if (time === undefined) throw corrupt('a Date without a number');
      return new Date(time);
    }
    case 'BigInt':
      // Length first, so neither the regex nor BigInt() ever runs on a planted megabyte of digits.
      if (
        typeof v !== 'string' ||
        v.length - (v.startsWith('-') ? 1 : 0) > MAX_BIGINT_DIGITS ||
        !DIGITS.test(v)
      ) {
        throw corrupt(`a BigInt that is not 1 to ${MAX_BIGINT_DIGITS} decimal digits`);
      }
      return BigInt(v);
    case 'Number': {
      const n = numberTag(v);
      if (n === undefined) throw corrupt('a bad Number tag');
      return n;
    }
    case 'undefined':
      return undefined;
    case 'Map':
      if (!Array.isArray(v)) throw corrupt('a Map without entries');
      return new Map(
        v.map((pair: unknown) => {
          if (!Array.isArray(pair) || pair.length !== 2) throw corrupt('a bad Map entry');
          return [decode(pair[0], depth + 1, classes), decode(pair[1], depth + 1, classes)];
        }),
      );
    case 'Set':
      if (!Array.isArray(v)) throw corrupt('a Set without items');
      return new Set(v.map((item: unknown) => decode(item, depth + 1, classes)));
    case 'Object':
      if (typeof v !== 'object' || v === null || Array.isArray(v)) {
        throw corrupt('an Object tag without an object');
      }
      return decodeFields(v as Record<string, unknown>, depth, classes);
    case 'Class':
      return decodeClass(obj, depth, classes);
    default:
      throw corrupt(`unknown tag ${typeof tag === 'string' ? JSON.stringify(tag) : typeof tag}`);
  }
}

function decodeFields(
  obj: Record<string, unknown>,
  depth: number,
  classes: Classes,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(obj)) put(out, k, decode(x, depth + 1, classes));
  return out;
}

/** A `Class` tag: only a registered class, never with data that could re-point its prototype. */
function decodeClass(obj: Record<string, unknown>, depth: number, classes: Classes): unknown {
  const codec = typeof obj.n === 'string' ? classes.get(obj.n) : undefined;
  if (!codec) throw corrupt(`unknown class ${JSON.stringify(String(obj.n))}`);
  const data = decode(obj.v, depth + 1, classes);
  if (typeof data === 'object' && data !== null) {
    for (const key of CLASS_FORBIDDEN) {
      if (Object.hasOwn(data, key)) throw corrupt(`class data with a "${key}" key`);
    }
  }
  if (codec.revive) return codec.revive(data);
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw corrupt(`class data for ${obj.n} that is not an object`);
  }
  // Never Object.assign: own properties are defined, so no key can reach a prototype setter.
  const instance = Object.create(codec.type.prototype) as Record<string, unknown>;
  for (const [k, x] of Object.entries(data)) put(instance, k, x);
  return instance;
}
