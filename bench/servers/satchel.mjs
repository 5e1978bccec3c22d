/**
 * satchel, imported from the repository's build (../../dist, made by `npm run
 * build`, which the runner does first). ADAPTER: node | express | fastify |
 * hono. STORE: memory | sqlite | file | redis | postgres. DATA_DIR holds the
 * SQLite database and the session files; Redis keys and the PostgreSQL table
 * are named after this process and removed when it stops.
 */
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { addAll, addCapped, onStop, port, renderCart, route, send } from './common.mjs';

const dist = new URL(process.env.SATCHEL_DIST ?? '../../dist/', import.meta.url);
const load = (path) => import(new URL(path, dist).href);

const adapter = process.env.ADAPTER ?? 'node';
const storeName = process.env.STORE ?? 'memory';
const dataDir = process.env.DATA_DIR ?? join(process.cwd(), '.bench-data');
mkdirSync(dataDir, { recursive: true });
const tag = `bench_${process.pid}`;

const { createSessions } = await load('index.js');
const { store, cleanup } = await openStore(storeName);
const sessions = createSessions({ store, logger: { warn: console.warn, error: console.error } });

async function openStore(name) {
  switch (name) {
    case 'memory': {
      const { memoryStore } = await load('stores/memory.js');
      return { store: memoryStore(), cleanup: async () => {} };
    }
    case 'sqlite': {
      const { sqliteStore } = await load('stores/sqlite.js');
      return { store: sqliteStore({ path: join(dataDir, `${tag}.db`) }), cleanup: async () => {} };
    }
    case 'file': {
      const { fileStore } = await load('stores/file.js');
      const dir = join(dataDir, `${tag}-files`);
      return { store: fileStore({ dir }), cleanup: async () => {} };
    }
    case 'redis': {
      const { redisStore } = await load('stores/redis.js');
      const prefix = `satchel-bench:${process.pid}:`;
      const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
      return {
        store: redisStore({ url, prefix }),
        // The runner removes the keys (it has a Redis client of its own).
        cleanup: async () => {},
      };
    }
    case 'postgres': {
      const mod = await load('stores/postgres.js');
      const connectionString = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
      const table = `satchel_${tag}`;
      const { default: pg } = await import('pg');
      const pool = new pg.Pool({ connectionString, max: 10 });
      await mod.migrate({ pool, table });
      return {
        store: mod.postgresStore({ pool, table }),
        cleanup: async () => {
          await pool.query(`DROP TABLE IF EXISTS "${table}" CASCADE`).catch(() => {});
          await pool.query(`DROP TABLE IF EXISTS "${table}_locks" CASCADE`).catch(() => {});
          await pool.end();
        },
      };
    }
    default:
      throw new Error(`satchel: unknown STORE ${name}`);
  }
}

/** The four routes on a session object, whatever the adapter. */
function handle(session, kind, item) {
  switch (kind) {
    case 'add':
      return [200, renderCart(session.update('cart', addCapped(item))), 'text/html; charset=utf-8'];
    case 'append':
      return [200, `${session.update('cart', addAll(item)).length}`, 'text/plain'];
    case 'read':
      return [200, renderCart(session.get('cart', [])), 'text/html; charset=utf-8'];
    case 'count':
      return [200, `${session.get('cart', []).length}`, 'text/plain'];
    default:
      return [404, 'not found\n', 'text/plain'];
  }
}

let close;
if (adapter === 'node') {
  const { withSessions } = await load('adapters/node.js');
  const server = createServer(
    withSessions(sessions, (req, res) => {
      const [kind, item] = route(req.url);
      const [status, body, type] = handle(req.session, kind, item);
      send(res, status, body, type);
    }),
  );
  server.keepAliveTimeout = 60_000;
  server.listen(port(), '127.0.0.1', () => console.log('ready'));
  close = server;
} else if (adapter === 'direct') {
  // A probe, not an adapter: load and commit called by hand, headers written
  // once, no wrapping of the response. How much the node adapter itself costs.
  const server = createServer(async (req, res) => {
    const session = await sessions.load({
      header: (name) => req.headers[name],
      encrypted: false,
      url: req.url,
    });
    const [kind, item] = route(req.url);
    const [status, body, type] = handle(session, kind, item);
    const { headers } = await sessions.commit(session, status);
    for (const [name, value] of headers) res.setHeader(name, value);
    send(res, status, body, type);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(port(), '127.0.0.1', () => console.log('ready'));
  close = server;
} else if (adapter === 'express') {
  const { default: express } = await import('express');
  const { session } = await load('adapters/express.js');
  const app = express();
  app.set('etag', false);
  app.set('x-powered-by', false);
  app.use(session(sessions));
  const reply = (kind) => (req, res) => {
    const [status, body, type] = handle(req.session, kind, req.params.item);
    // Answered as express-bare.mjs answers: res.send's own text/html default,
    // res.type() only for text/plain (a full type given to res.type() is
    // parsed again by res.send to set its charset: work the bare one never does).
    if (type !== 'text/html; charset=utf-8') res.type(type);
    res.status(status).send(body);
  };
  app.get('/add_to_cart/:item/', reply('add'));
  app.get('/append/:item/', reply('append'));
  app.get('/cart/', reply('read'));
  app.get('/count/', reply('count'));
  const server = app.listen(port(), '127.0.0.1', () => console.log('ready'));
  server.keepAliveTimeout = 60_000;
  close = server;
} else if (adapter === 'fastify') {
  const { default: Fastify } = await import('fastify');
  const { sessionPlugin } = await load('adapters/fastify.js');
  const app = Fastify({ logger: false, keepAliveTimeout: 60_000 });
  await app.register(sessionPlugin, { sessions });
  const reply = (kind) => async (request, res) => {
    const [status, body, type] = handle(request.session, kind, request.params.item);
    res.code(status).type(type);
    return body;
  };
  app.get('/add_to_cart/:item/', reply('add'));
  app.get('/append/:item/', reply('append'));
  app.get('/cart/', reply('read'));
  app.get('/count/', reply('count'));
  await app.listen({ port: port(), host: '127.0.0.1' });
  console.log('ready');
  close = app.server;
} else if (adapter === 'hono') {
  const { Hono } = await import('hono');
  const { serve } = await import('@hono/node-server');
  const { session } = await load('adapters/hono.js');
  const app = new Hono();
  app.use(session(sessions));
  const reply = (kind) => (c) => {
    const [status, body, type] = handle(c.get('session'), kind, c.req.param('item'));
    return c.body(body, status, { 'content-type': type });
  };
  app.get('/add_to_cart/:item/', reply('add'));
  app.get('/append/:item/', reply('append'));
  app.get('/cart/', reply('read'));
  app.get('/count/', reply('count'));
  close = serve({ fetch: app.fetch, port: port(), hostname: '127.0.0.1' }, () =>
    console.log('ready'),
  );
  close.keepAliveTimeout = 60_000;
} else {
  throw new Error(`satchel: unknown ADAPTER ${adapter}`);
}

onStop(close, async () => {
  await sessions.close();
  await cleanup();
});
