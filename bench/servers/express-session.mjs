/**
 * express-session (latest) on Express 5, configured as its README suggests:
 * resave false, saveUninitialized false. STORE=memory uses its MemoryStore;
 * STORE=redis uses connect-redis on node-redis.
 */
import { RedisStore } from 'connect-redis';
import express from 'express';
import session from 'express-session';
import { createClient } from 'redis';
import { addAll, addCapped, onStop, port, renderCart } from './common.mjs';

const kind = process.env.STORE ?? 'memory';
const prefix = `sessbench:${process.pid}:`;
let client;
let store;
if (kind === 'redis') {
  client = createClient({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' });
  client.on('error', (err) => console.error('redis', err.message));
  await client.connect();
  store = new RedisStore({ client, prefix });
} else if (kind !== 'memory') {
  throw new Error(`express-session: unknown STORE ${kind}`);
}

const app = express();
app.set('etag', false);
app.set('x-powered-by', false);
app.use(
  session({
    secret: 'bench-secret-bench-secret-bench-secret',
    resave: false,
    saveUninitialized: false,
    ...(store && { store }),
  }),
);

app.get('/add_to_cart/:item/', (req, res) => {
  req.session.cart = addCapped(req.params.item)(req.session.cart);
  res.send(renderCart(req.session.cart));
});
app.get('/append/:item/', (req, res) => {
  req.session.cart = addAll(req.params.item)(req.session.cart);
  res.type('text/plain').send(`${req.session.cart.length}`);
});
app.get('/cart/', (req, res) => {
  res.send(renderCart(req.session.cart ?? []));
});
app.get('/count/', (req, res) => {
  res.type('text/plain').send(`${(req.session.cart ?? []).length}`);
});

const server = app.listen(port(), '127.0.0.1', () => console.log('ready'));
server.keepAliveTimeout = 60_000;
onStop(server, async () => {
  if (!client) return;
  const keys = [];
  for await (const batch of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) {
    keys.push(...batch);
  }
  for (let i = 0; i < keys.length; i += 1000) await client.unlink(keys.slice(i, i + 1000));
  await client.quit();
});
