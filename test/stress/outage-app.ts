/**
 * Child process for outage.test.ts: satchel on node:http with the store the
 * test describes (pointed at its TCP proxy). Prints `listening <port>`.
 * GET /__health answers without touching the session store: the process's
 * pid, its unhandled rejections, and the satchel errors it logged by code.
 * Unhandled rejections are counted (and would otherwise crash the process);
 * uncaught exceptions are not caught at all, so any would kill it.
 *
 *   node --import tsx test/stress/outage-app.ts '{"spec":…}'
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { withSessions } from '../../src/adapters/node.js';
import { createSessions } from '../../src/index.js';
import { openSpec, type StoreSpec } from './lib/spec.js';

const { spec } = JSON.parse(process.argv[2] ?? '{}') as { spec: StoreSpec };

const health = { pid: process.pid, unhandledRejections: 0, errors: {} as Record<string, number> };
process.on('unhandledRejection', (reason) => {
  health.unhandledRejections++;
  process.stderr.write(`unhandled rejection: ${String(reason)}\n`);
});

const sessions = createSessions({
  store: await openSpec(spec),
  logger: {
    warn: () => {},
    error: (_message, details) => {
      const code = String(details?.code ?? 'other');
      health.errors[code] = (health.errors[code] ?? 0) + 1;
    },
  },
});

const app = withSessions(sessions, (req, res) => {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  if (url.pathname === '/add') {
    const item = url.searchParams.get('item') ?? '';
    const cart = req.session.update('cart', (c: string[] | undefined) => [...(c ?? []), item]);
    res.end(JSON.stringify(cart.length));
  } else if (url.pathname === '/get') {
    res.end(JSON.stringify(req.session.get(url.searchParams.get('key') ?? '') ?? null));
  } else {
    res.statusCode = 404;
    res.end('not found');
  }
});

const server = createServer((req, res) => {
  if (req.url === '/__health') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(health));
    return;
  }
  void app(req, res);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
});

process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => void sessions.close().finally(() => process.exit(0)));
});
// Never outlive the test run.
setTimeout(() => process.exit(3), 120_000).unref();
