import type { CommitResult } from '../manager.js';
import { bridgeCache } from './bridge.js';
import { applyCommitHeaders, type HeaderTarget, webHeaderTarget } from './headers.js';

/**
 * @hono/node-server (by default) replaces the global `Response` with a
 * lightweight one that keeps `[status, body, headers]` under a symbol until
 * something asks for its body, and writes such a response straight to
 * node:http: its fast path. Copying one through `response.body` turns it into
 * a real Response with a stream body and takes it off that path (about 110 µs
 * more CPU a request, bench/RESULTS.md run 6).
 *
 * A lightweight response whose body is a string, bytes or nothing is copied
 * with that same body, and the copy stays lightweight. The body is shared,
 * never consumed, so a constant Response a route returns to every visitor
 * stays whole. Its headers, when they are a plain object of strings (what
 * Hono's `c.text()`, `c.html()`, `c.json()` and `c.body()` with one header
 * give), are copied into a new plain object with the commit's headers
 * merged in: the bridge writes such an object to node:http as it is, where
 * a `Headers` object costs two copies, undici's checks on every field and
 * a sort (a Hono cart request: 313k -> 245k-248k instructions,
 * bench/RESULTS.md run 7). Other headers get a copy constructed with the
 * original as init, whose `Headers` the bridge copies.
 *
 * Anything else gets undefined (the caller makes the standard copy): another
 * Response class, a response already made real, a stream or Blob body, or a
 * future bridge that keeps other internals (the shape is checked, not assumed).
 */
export function lightweightCopy(
  response: Response,
  headers: CommitResult['headers'],
): Response | undefined {
  if (response.constructor !== globalThis.Response) return undefined;
  const cache = bridgeCache(response);
  if (cache === undefined) return undefined;
  const [status, body, fields] = cache;
  if (body !== null && typeof body !== 'string' && !(body instanceof Uint8Array)) return undefined;
  const plain = plainFields(fields, body, headers);
  if (plain !== undefined) {
    applyCommitHeaders(headers, plainTarget(plain));
    return new Response(body, new CopyInit(status, plain, response));
  }
  const copy = new Response(body, response);
  applyCommitHeaders(headers, webHeaderTarget(copy.headers));
  return copy;
}

/**
 * The init of a copy with plain headers. Its statusText is read from the
 * original only if someone asks (which makes the original real; the bridge
 * never sends it). A class, as an object literal with a getter is built
 * anew each time, at several times the cost.
 */
class CopyInit {
  readonly #original: Response;

  constructor(
    readonly status: number,
    readonly headers: Record<string, string>,
    original: Response,
  ) {
    this.#original = original;
  }

  get statusText(): string {
    return this.#original.statusText;
  }
}

/**
 * A new plain object holding `fields` (lower-cased names), when they are
 * none or a plain object of string values and the result will hold at most
 * one Set-Cookie (a plain object keeps one value per name; the bridge reads
 * it back into `Headers` joined, which Set-Cookie cannot be). Undefined
 * otherwise, and for no fields with a body: the bridge then adds its own
 * default Content-Type, which the copy made with the original as init keeps.
 */
function plainFields(
  fields: unknown,
  body: unknown,
  headers: CommitResult['headers'],
): Record<string, string> | undefined {
  let cookies = 0;
  for (const [name] of headers) if (name === 'set-cookie') cookies++;
  const plain: Record<string, string> = {};
  if (fields === undefined || fields === null) {
    if (body !== null) return undefined;
  } else {
    if (typeof fields !== 'object') return undefined;
    const proto: unknown = Object.getPrototypeOf(fields);
    if (proto !== Object.prototype && proto !== null) return undefined;
    const record = fields as Record<string, unknown>;
    for (const name in record) {
      if (!Object.hasOwn(record, name)) continue;
      const value = record[name];
      const lower = name.toLowerCase();
      // __proto__ would set the object's prototype, not a field: the standard copy takes it.
      if (typeof value !== 'string' || lower === '__proto__' || Object.hasOwn(plain, lower)) {
        return undefined;
      }
      if (lower === 'set-cookie') cookies++;
      plain[lower] = value;
    }
  }
  return cookies > 1 ? undefined : plain;
}

/** A plain object of lower-cased names as a commit's header target (append only adds: at most one Set-Cookie). */
function plainTarget(plain: Record<string, string>): HeaderTarget {
  return {
    get: (name) => plain[name],
    set: (name, value) => {
      plain[name] = value;
    },
    append: (name, value) => {
      plain[name] = value;
    },
  };
}
