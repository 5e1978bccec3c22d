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

/**
 * How many levels of objects and arrays (Maps, Sets and class instances
 * included) one session value may nest. Deeper data is refused with a
 * `SerializeError` when saved and read as corrupt when loaded: a recursive
 * walk of deeper data would overflow the stack, and no session needs it.
 */
export const MAX_DEPTH = 100;

/**
 * Digits a BigInt may have in stored rich data (sign excluded). Parsing a
 * decimal BigInt costs time quadratic in its length, so a huge literal in a
 * planted record would stall the process; longer ones are refused both ways.
 */
export const MAX_BIGINT_DIGITS = 10_000;

/** Where a value sits inside the session: the top-level key, then object keys, array indexes, or a Map/Set slot. */
type Segment = string | number | typeof MAP_KEY | typeof MAP_VALUE | typeof SET_ITEM;
type Path = Segment[];
const MAP_KEY = Symbol('Map key');
const MAP_VALUE = Symbol('Map value');
const SET_ITEM = Symbol('Set item');

function formatPath(path: Path): string {
  let out = String(path[0]);
  for (let i = 1; i < path.length; i++) {
    const seg = path[i];
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (typeof seg === 'symbol') out += `<${seg.description}>`;
    else out += /^[A-Za-z_$][\w$]*$/.test(seg as string) ? `.${seg}` : `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** `session key "cart" (at cart.items[2]): <what>`: the top-level key always, the inner path when there is one. */
function refuse(path: Path, what: string): SerializeError {
  const at = path.length > 1 ? ` (at ${formatPath(path)})` : '';
  return new SerializeError(`session key ${JSON.stringify(String(path[0]))}${at}: ${what}`);
}

/**
 * Error path only: tells a cycle from plain depth, within the depth cap.
 * `cleared` holds objects already searched, so shared sub-objects are visited once.
 */
function containsCycle(
  value: unknown,
  ancestors: Set<object> = new Set(),
  cleared: Set<object> = new Set(),
): boolean {
  if (typeof value !== 'object' || value === null || cleared.has(value)) return false;
  if (ancestors.has(value)) return true;
  if (ancestors.size > MAX_DEPTH) return false;
  ancestors.add(value);
  const children =
    value instanceof Map
      ? [...value].flat()
      : value instanceof Set
        ? [...value]
        : Object.values(value);
  const found = children.some((child) => containsCycle(child, ancestors, cleared));
  ancestors.delete(value);
  if (!found) cleared.add(value);
  return found;
}

function tooDeep(path: Path, top: unknown): SerializeError {
  return new SerializeError(
    containsCycle(top)
      ? `session key ${JSON.stringify(String(path[0]))}: cannot serialize a cycle (a value that contains itself)`
      : `session key ${JSON.stringify(String(path[0]))}: nested deeper than ${MAX_DEPTH} levels of objects and arrays (MAX_DEPTH); store it flatter`,
  );
}

function corruptDepth(): CorruptDataError {
  return new CorruptDataError(
    `session data is nested deeper than ${MAX_DEPTH} levels (MAX_DEPTH); satchel never writes that`,
  );
}

function assertPlainObject(value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CorruptDataError('session payload is not an object');
  }
  return value as Record<string, unknown>;
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function className(value: object): string {
  const name = Object.getPrototypeOf(value)?.constructor?.name;
  return typeof name === 'string' && name !== '' ? name : 'an unknown class';
}

// ---------------------------------------------------------------------------
// json

/** Why a non-plain object cannot go through JSON, in the words the error uses. */
function jsonRefusal(value: object): string {
  if (value instanceof Date) {
    return "a Date does not survive JSON (it reads back as a string); store date.toISOString() or use serializer: 'rich'";
  }
  if (value instanceof Map || value instanceof Set) {
    return `cannot serialize a ${value instanceof Map ? 'Map' : 'Set'} with the json serializer; use serializer: 'rich' (JSON would save it as {})`;
  }
  const name = className(value);
  const becomes =
    typeof (value as { toJSON?: unknown }).toJSON === 'function'
      ? 'what its toJSON() returns'
      : 'a plain object';
  return `cannot serialize an instance of ${name} with the json serializer (it would read back as ${becomes}); store plain data, or use serializer: 'rich' and register the class`;
}

/** A non-object leaf: strings, booleans, null and finite numbers pass; undefined passes here (objects drop it). */
function checkJsonLeaf(value: unknown, path: Path): void {
  switch (typeof value) {
    case 'number':
      if (!Number.isFinite(value)) {
        throw refuse(
          path,
          `${value} does not survive JSON (it reads back as null); use serializer: 'rich'`,
        );
      }
      return;
    case 'bigint':
      throw refuse(
        path,
        "cannot serialize a BigInt with the json serializer; use serializer: 'rich', or store it as a string",
      );
    case 'function':
    case 'symbol':
      throw refuse(path, `cannot serialize a ${typeof value} (JSON would drop it)`);
  }
}

/**
 * Refuses what JSON.stringify would change silently, so what is read back is
 * what was set. A plain walk, not a replacer: the common case (strings,
 * numbers, plain objects and arrays) costs one typeof per value.
 */
function checkJson(value: unknown, path: Path, top: unknown): void {
  if (typeof value !== 'object' || value === null) {
    checkJsonLeaf(value, path);
    return;
  }
  if (path.length > MAX_DEPTH) throw tooDeep(path, top);
  if (Array.isArray(value)) {
    if (Object.getPrototypeOf(value) !== Array.prototype) throw refuse(path, jsonRefusal(value));
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (typeof item === 'string' || typeof item === 'boolean' || item === null) continue;
      if (typeof item === 'number' && Number.isFinite(item)) continue;
      path.push(i);
      if (item === undefined) {
        throw refuse(
          path,
          "undefined (or an empty slot) in an array does not survive JSON (it reads back as null); use null or serializer: 'rich'",
        );
      }
      checkJson(item, path, top);
      path.pop();
    }
    return;
  }
  if (!isPlainObject(value)) throw refuse(path, jsonRefusal(value));
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    throw refuse(
      path,
      'an object with a toJSON method does not survive JSON (it reads back as what toJSON returns); store that instead',
    );
  }
  for (const key of Object.keys(value)) {
    const item = (value as Record<string, unknown>)[key];
    if (typeof item === 'string' || typeof item === 'boolean' || item === null) continue;
    path.push(key);
    checkJson(item, path, top);
    path.pop();
  }
}

/** Stored JSON: at most MAX_DEPTH levels, and no number JSON.stringify could not have written (1e999). */
function checkParsedJson(value: unknown, depth: number): void {
  if (typeof value === 'number') {
    if (!Number.isFinite(value))
      throw new CorruptDataError('session data holds a non-finite number');
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  if (depth > MAX_DEPTH) throw corruptDepth();
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (typeof item === 'object' || typeof item === 'number') checkParsedJson(item, depth + 1);
    }
    return;
  }
  for (const key of Object.keys(value)) {
    const item = (value as Record<string, unknown>)[key];
    if (typeof item === 'object' || typeof item === 'number') checkParsedJson(item, depth + 1);
  }
}

/**
 * JSON, as Django's default JSONSerializer: what you read back is what you
 * set, or the save fails. A `Date`, `Map`, `Set`, `BigInt`, class instance,
 * object with `toJSON`, function, symbol, `NaN`/`±Infinity` or `undefined`
 * inside an array is refused with a `SerializeError` naming the session key
 * (`undefined` as an object field is dropped, which reads back the same).
 * An own `__proto__` key stays an own data property both ways, as JSON.parse makes it.
 */
export const jsonSerializer: Serializer = {
  name: 'json',
  stringify(data) {
    for (const key of Object.keys(data)) {
      const value = data[key];
      if (typeof value !== 'string' && typeof value !== 'boolean' && value !== null) {
        checkJson(value, [key], value);
      }
    }
    try {
      return JSON.stringify(data);
    } catch (err) {
      // Only a getter or a Proxy that throws gets here; everything else was refused above.
      throw new SerializeError('session data is not serializable as JSON', err);
    }
  },
  parse(text) {
    const data = assertPlainObject(JSON.parse(text));
    checkParsedJson(data, 0);
    return data;
  },
};

// ---------------------------------------------------------------------------
// rich

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
  const byName = new Map(entries);

  // A top-level value is at depth 1; each container (array, plain object, Map,
  // Set, class instance and then its fields) adds one, the same way both ways.
  const encode = (value: unknown, path: Path, depth: number, seen: Set<object>): unknown => {
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
    const obj = value as object;
    if (seen.has(obj)) {
      throw refuse(path, 'cannot serialize a cycle (a value that contains itself)');
    }
    if (depth > MAX_DEPTH) throw tooDeep(path, undefined);
    seen.add(obj);
    const child = (item: unknown, seg: Segment): unknown => {
      path.push(seg);
      const out = encode(item, path, depth + 1, seen);
      path.pop();
      return out;
    };
    try {
      if (obj instanceof Date)
        return { [TAG]: 'Date', v: encode(obj.getTime(), path, depth, seen) };
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
      for (const [name, codec] of byName) {
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
          return { [TAG]: 'Class', n: name, v: encode(raw, path, depth + 1, seen) };
        }
      }
      throw refuse(
        path,
        `cannot serialize an instance of ${className(obj)}; register it with richSerializer({ Name: { type: Name } })`,
      );
    } finally {
      seen.delete(obj);
    }
  };

  const decode = (value: unknown, depth: number): unknown => {
    if (typeof value !== 'object' || value === null) return value;
    if (depth > MAX_DEPTH) throw corruptDepth();
    if (Array.isArray(value)) return value.map((item) => decode(item, depth + 1));
    const obj = value as Record<string, unknown>;
    if (!Object.hasOwn(obj, TAG)) return decodeFields(obj, depth);
    const v = obj.v;
    const tag = obj[TAG];
    switch (tag) {
      case 'Date': {
        // Read in place, not through decode(): a Date holds a number or a Number tag, nothing deeper.
        const time =
          typeof v === 'number'
            ? v
            : typeof v === 'object' &&
                v !== null &&
                (v as Record<string, unknown>)[TAG] === 'Number'
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
            return [decode(pair[0], depth + 1), decode(pair[1], depth + 1)];
          }),
        );
      case 'Set':
        if (!Array.isArray(v)) throw corrupt('a Set without items');
        return new Set(v.map((item: unknown) => decode(item, depth + 1)));
      case 'Object':
        if (typeof v !== 'object' || v === null || Array.isArray(v)) {
          throw corrupt('an Object tag without an object');
        }
        return decodeFields(v as Record<string, unknown>, depth);
      case 'Class': {
        const codec = typeof obj.n === 'string' ? byName.get(obj.n) : undefined;
        if (!codec) throw corrupt(`unknown class ${JSON.stringify(String(obj.n))}`);
        const data = decode(v, depth + 1);
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
      default:
        throw corrupt(`unknown tag ${typeof tag === 'string' ? JSON.stringify(tag) : typeof tag}`);
    }
  };

  const decodeFields = (obj: Record<string, unknown>, depth: number): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(obj)) put(out, k, decode(x, depth + 1));
    return out;
  };

  return {
    name: 'rich',
    stringify(data) {
      const seen = new Set<object>();
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(data)) put(out, k, encode(v, [k], 1, seen));
      return JSON.stringify(out);
    },
    parse(text) {
      const raw = assertPlainObject(JSON.parse(text));
      if (Object.hasOwn(raw, TAG)) throw new CorruptDataError('session payload is not an object');
      return decodeFields(raw, 0);
    },
  };
}
