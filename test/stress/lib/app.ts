/**
 * The app the stress suites serve: satchel on a real node:http server
 * (src/adapters/node.ts) at 127.0.0.1 on a random port.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { withSessions } from '../../../src/adapters/node.js';
import type { Sessions } from '../../../src/index.js';
import type { SessionRequest } from '../../../src/adapters/node.js';

export type Route = (
  req: SessionRequest<any>,
  res: ServerResponse,
  url: URL,
) => unknown | Promise<unknown>;

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(text);
}

/** The routes every stress case uses; `extra` adds or replaces some. */
export function routes(extra: Record<string, Route> = {}): Record<string, Route> {
  return {
    /** Appends an item with update (never lost); answers the cart's length, or the cart with ?show=1. */
    '/add': (req, res, url) => {
      const item = url.searchParams.get('item') ?? '';
      const cart = req.session.update('cart', (c: string[] | undefined) => [...(c ?? []), item]);
      send(res, 200, url.searchParams.has('show') ? cart : cart.length);
    },
    '/set': (req, res, url) => {
      req.session.set(url.searchParams.get('key') ?? '', url.searchParams.get('value') ?? '');
      send(res, 200, 'ok');
    },
    '/get': (req, res, url) => {
      send(res, 200, JSON.stringify(req.session.get(url.searchParams.get('key') ?? '') ?? null));
    },
    '/dump': (req, res) => {
      send(res, 200, Object.fromEntries(req.session.entries()));
    },
    '/flush': (req, res) => {
      req.session.flush();
      send(res, 200, 'ok');
    },
    ...extra,
  };
}

export interface App {
  base: string;
  server: Server;
  close(): Promise<void>;
}

export async function startApp(sessions: Sessions<any>, table = routes()): Promise<App> {
  const handler = withSessions(sessions, async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const route = table[url.pathname];
    if (route === undefined) send(res, 404, 'not found');
    else await route(req, res, url);
  });
  const server = createServer({ keepAliveTimeout: 10_000 }, (req: IncomingMessage, res) => {
    void handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
