// What both serializers share while walking a session value: the limits on
// depth and BigInt size, the path to the value being walked, and the errors
// that name it.
import { CorruptDataError, SerializeError } from '../errors.js';

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
export type Segment = string | number | typeof MAP_KEY | typeof MAP_VALUE | typeof SET_ITEM;
export type Path = Segment[];
export const MAP_KEY = Symbol('Map key');
export const MAP_VALUE = Symbol('Map value');
export const SET_ITEM = Symbol('Set item');

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
export function refuse(path: Path, what: string): SerializeError {
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

export function tooDeep(path: Path, top: unknown): SerializeError {
  return new SerializeError(
    containsCycle(top)
      ? `session key ${JSON.stringify(String(path[0]))}: cannot serialize a cycle (a value that contains itself)`
      : `session key ${JSON.stringify(String(path[0]))}: nested deeper than ${MAX_DEPTH} levels of objects and arrays (MAX_DEPTH); store it flatter`,
  );
}

export function corruptDepth(): CorruptDataError {
  return new CorruptDataError(
    `session data is nested deeper than ${MAX_DEPTH} levels (MAX_DEPTH); satchel never writes that`,
  );
}

export function assertPlainObject(value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CorruptDataError('session payload is not an object');
  }
  return value as Record<string, unknown>;
}

export function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

export function className(value: object): string {
  const name = Object.getPrototypeOf(value)?.constructor?.name;
  return typeof name === 'string' && name !== '' ? name : 'an unknown class';
}
