import { CorruptDataError, SerializeError } from '../errors.js';
import type { Serializer } from '../serializers.js';
import {
  assertPlainObject,
  className,
  corruptDepth,
  isPlainObject,
  MAX_DEPTH,
  type Path,
  refuse,
  tooDeep,
} from './walk.js';

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

const TO_JSON =
  'an object with a toJSON method does not survive JSON (it reads back as what toJSON returns); store that instead';

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
    if (typeof (value as { toJSON?: unknown }).toJSON === 'function') throw refuse(path, TO_JSON);
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
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') throw refuse(path, TO_JSON);
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
 * A copy of plain JSON data without a round trip through text, read back as
 * JSON.parse would: -0 is 0, an object field holding undefined is dropped.
 * Anything else is kept as it is (the commit refuses it).
 */
function cloneJson(value: unknown, depth: number): unknown {
  if (value === 0) return 0;
  if (typeof value !== 'object' || value === null || depth > MAX_DEPTH) return value;
  if (Array.isArray(value)) {
    // Copied whole (strings and numbers are shared, being immutable), then
    // only what needs more than that is revisited: a cart of strings costs one copy.
    const copy: unknown[] = value.slice();
    for (let i = 0; i < copy.length; i++) {
      const item = copy[i];
      if ((typeof item === 'object' && item !== null) || item === 0) {
        copy[i] = cloneJson(item, depth + 1);
      }
    }
    return copy;
  }
  if (!isPlainObject(value)) return value;
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const item = cloneJson((value as Record<string, unknown>)[key], depth + 1);
    if (item === undefined) continue;
    // An own "__proto__" stays an own data property, as JSON.parse makes it.
    if (key === '__proto__') {
      Object.defineProperty(copy, key, {
        value: item,
        writable: true,
        enumerable: true,
        configurable: true,
      });
    } else copy[key] = item;
  }
  return copy;
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
  clone: (value) => cloneJson(value, 0),
};
