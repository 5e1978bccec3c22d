/**
 * @hono/node-server (by default) replaces the global `Response` with a
 * lightweight one that keeps `[status, body, headers]` under a symbol until
 * something asks for its body, and writes such a response straight to
 * node:http: its fast path. Copying one through `response.body` turns it into
 * a real Response with a stream body and takes it off that path (about 110 µs
 * more CPU a request, bench/RESULTS.md run 6).
 *
 * A lightweight response whose body is a string, bytes or nothing is copied
 * with that same body instead, constructed with the original as its init: the
 * bridge then takes the status, statusText and a copy of the headers from it,
 * and the copy stays lightweight. The body is shared, never consumed, so a
 * constant Response a route returns to every visitor stays whole.
 *
 * Anything else gets undefined (the caller makes the standard copy): another
 * Response class, a response already made real, a stream or Blob body, or a
 * future bridge that keeps other internals (the shape is checked, not assumed).
 */
export function lightweightCopy(response: Response): Response | undefined {
  if (response.constructor !== globalThis.Response) return undefined;
  const body = cached(response)?.[1];
  if (body !== null && typeof body !== 'string' && !(body instanceof Uint8Array)) return undefined;
  return new Response(body, response);
}

/** The bridge's `[status, body, headers]` of a response not yet made real; undefined for any other. */
function cached(response: Response): readonly [number, unknown, unknown] | undefined {
  for (const symbol of Object.getOwnPropertySymbols(response)) {
    if (symbol.description !== 'cache') continue;
    const value: unknown = (response as unknown as Record<symbol, unknown>)[symbol];
    if (Array.isArray(value) && value.length === 3 && typeof value[0] === 'number') {
      return value as [number, unknown, unknown];
    }
  }
  return undefined;
}
