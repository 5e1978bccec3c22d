/**
 * What satchel reads of @hono/node-server's internals, each found by its
 * shape, never assumed: the `[status, body, headers]` a lightweight Response
 * keeps, and the node:http request the bridge's Request was built from. Both
 * sit under symbols the bridge does not export; listing an object's symbols
 * costs more than the rest of the work here, so the symbol found last time
 * is tried first.
 */

/** Finds an own symbol-keyed value that passes `test`, trying the symbol that held the last one first. */
function rememberingLookup<W>(
  test: (symbol: symbol, value: unknown, wanted: W) => boolean,
): (target: object, wanted: W) => unknown {
  let last: symbol | undefined;
  return (target, wanted) => {
    const own = target as Record<symbol, unknown>;
    if (last !== undefined && test(last, own[last], wanted)) return own[last];
    for (const symbol of Object.getOwnPropertySymbols(target)) {
      if (!test(symbol, own[symbol], wanted)) continue;
      last = symbol;
      return own[symbol];
    }
    return undefined;
  };
}

function isCache(value: unknown): value is [number, unknown, unknown] {
  return Array.isArray(value) && value.length === 3 && typeof value[0] === 'number';
}

const cacheOf = rememberingLookup<void>(
  (symbol, value) => symbol.description === 'cache' && isCache(value),
);

/** The bridge's `[status, body, headers]` of a response not yet made real; undefined for any other. */
export function bridgeCache(response: Response): readonly [number, unknown, unknown] | undefined {
  return cacheOf(response, undefined) as [number, unknown, unknown] | undefined;
}

const incomingOf = rememberingLookup<unknown>((_, value, incoming) => value === incoming);

/** True when `request` keeps `incoming` under a symbol: the bridge built it from that very request. */
export function keepsIncoming(request: Request, incoming: unknown): boolean {
  return incomingOf(request, incoming) !== undefined;
}
