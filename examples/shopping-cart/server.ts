/**
 * Runs the shopping cart: `npm start`, then open
 * http://127.0.0.1:8000/add_to_cart/awesome-item/
 *
 *   HOST, PORT              where to listen (default 127.0.0.1:8000; PORT=0 picks a free port)
 *   SATCHEL_STORE           sqlite (default) | file | memory | redis | postgres | cached | cookie
 *   SATCHEL_SQLITE_PATH     the SQLite file (default ./satchel-sessions.db)
 *   SATCHEL_FILE_PATH       the file store's folder, as Django's SESSION_FILE_PATH (default: OS temp)
 *   SATCHEL_REDIS_URL       redis (default redis://127.0.0.1:6379); SATCHEL_REDIS_PREFIX (default satchel:)
 *   SATCHEL_DATABASE_URL    postgres (default postgres://127.0.0.1:5432/postgres);
 *                           SATCHEL_DATABASE_TABLE (default satchel_sessions)
 *   SATCHEL_CACHED_STORE    cached: the durable store, postgres (default) | sqlite | file
 *   SATCHEL_CACHE           cached: the cache, memory (default) | redis; SATCHEL_CACHE_TTL_MS
 *   SATCHEL_SECRET          cookie: comma-separated keys of 32+ characters (`satchel keygen`)
 *   SATCHEL_TRANSPORT       where the session ID travels: cookie (default) | url (a URL
 *                           parameter for browsers without cookies) | header (API clients)
 *   CART_MAX_ITEMS          most items in one cart (default 200)
 *
 * GET /metrics answers Prometheus metrics (metrics.ts); serve it to your
 * Prometheus only, never publicly.
 *
 * With postgres (or cached in front of it) the server runs `satchel migrate`
 * at start-up, which creates the table if it is missing and says so.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  migrationFromEnv,
  migrationSummary,
  runMigration,
  type StoreChoice,
  StoreEnvError,
  selectedStore,
  storeFromEnv,
} from '../../src/cli/config.js';
import { SatchelError } from '../../src/index.js';
import { createApp, MAX_CART_ITEMS, TRANSPORTS, type TransportName } from './app.js';

function fail(message: string, code: number): never {
  console.error(`shopping-cart: ${message}`);
  process.exit(code);
}

const host = process.env.HOST || '127.0.0.1';
const portText = process.env.PORT || '8000';
const port = Number(portText);
if (!/^\d+$/.test(portText) || port > 65_535) {
  fail(`PORT must be a number from 0 to 65535; got ${JSON.stringify(portText)}`, 2);
}
const maxText = process.env.CART_MAX_ITEMS || String(MAX_CART_ITEMS);
const maxCartItems = Number(maxText);
if (!/^\d+$/.test(maxText) || maxCartItems < 1 || !Number.isSafeInteger(maxCartItems)) {
  fail(`CART_MAX_ITEMS must be a positive whole number; got ${JSON.stringify(maxText)}`, 2);
}

const transportText = process.env.SATCHEL_TRANSPORT || 'cookie';
const transportName = transportText.trim().toLowerCase();
if (!Object.hasOwn(TRANSPORTS, transportName)) {
  fail(
    `unknown SATCHEL_TRANSPORT ${JSON.stringify(transportText)}; expected one of: ${Object.keys(TRANSPORTS).join(', ')}`,
    2,
  );
}
const transport = TRANSPORTS[transportName as TransportName];

let choice: StoreChoice;
try {
  if (transportName === 'url' && selectedStore(process.env) === 'cookie') {
    // Refused by createSessions too; said here before any store is opened.
    throw new StoreEnvError(
      'SATCHEL_TRANSPORT=url needs a server-side store; SATCHEL_STORE=cookie keeps the whole session in the cookie, which does not belong in URLs',
    );
  }
  // The table first, as an operator would run `satchel migrate` before deploying.
  const migration = migrationFromEnv(process.env);
  if (migration !== undefined) {
    const report = await runMigration(migration);
    console.log(
      `Ran satchel migrate on table ${report.table} (${report.shownUrl}): ${migrationSummary(report)}`,
    );
  }
  choice = await storeFromEnv(process.env);
} catch (err) {
  if (err instanceof StoreEnvError) fail(err.message, 2);
  if (SatchelError.is(err)) fail(err.message.replace(/^\[satchel\] /, ''), 1);
  throw err;
}

const { app, close } = createApp({
  store: choice.store,
  storeDescription: choice.description,
  maxCartItems,
  sessions: { transport },
  metrics: true,
});
const server = createServer(app);

const TRANSPORT_LINES: Record<TransportName, string> = {
  cookie: 'cookie',
  url: 'url (browsers without cookies carry ?sessionid= in their links; see the README for the risks)',
  header: 'header (Authorization: Session <id> in, Session-Id out; no cookies: for API clients)',
};

server.once('error', async (err: NodeJS.ErrnoException) => {
  await close().catch(() => {});
  if (err.code === 'EADDRINUSE') {
    fail(`${host}:${port} is already in use; stop the other server or choose another PORT`, 1);
  }
  if (err.code === 'EACCES') fail(`no permission to listen on ${host}:${port}`, 1);
  if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') {
    fail(`cannot listen on host ${JSON.stringify(host)}: ${err.code}`, 1);
  }
  fail(`cannot listen on ${host}:${port}: ${err.message}`, 1);
});

server.listen(port, host, () => {
  const address = server.address() as AddressInfo;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${shown}:${address.port}/`;
  console.log(
    `Shopping cart running at ${url}\nSessions: ${choice.description}\nTransport: ${TRANSPORT_LINES[transportName as TransportName]}\nTry ${url}add_to_cart/awesome-item/ (Ctrl+C to stop)`,
  );
});

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: shutting down`);
  // Browsers hold keep-alive connections open; close idle ones now and
  // give requests in flight a moment to finish.
  const force = setTimeout(() => server.closeAllConnections(), 3000);
  force.unref();
  server.closeIdleConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  clearTimeout(force);
  try {
    await close();
  } catch (err) {
    fail(`closing the session store failed: ${(err as Error).message}`, 1);
  }
  process.exit(0);
}
process.once('SIGINT', () => void shutdown('SIGINT'));
process.once('SIGTERM', () => void shutdown('SIGTERM'));
