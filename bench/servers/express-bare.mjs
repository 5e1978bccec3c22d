/** Bare Express 5 with a hand-rolled Map: the framework's own cost, no session library. */
import { randomBytes } from 'node:crypto';
import express from 'express';
import { addAll, addCapped, onStop, port, renderCart } from './common.mjs';

const carts = new Map();
const COOKIE = /(?:^|;\s*)sid=([A-Za-z0-9_-]{32})(?:;|$)/;

const app = express();
app.set('etag', false);
app.set('x-powered-by', false);

function cartOf(req) {
  const id = COOKIE.exec(req.headers.cookie ?? '')?.[1];
  return { id, cart: id === undefined ? undefined : carts.get(id) };
}

function add(req, res, update) {
  let { id, cart } = cartOf(req);
  if (cart === undefined) {
    id = randomBytes(24).toString('base64url');
    res.cookie('sid', id, { path: '/', httpOnly: true, sameSite: 'lax' });
  }
  cart = update(req.params.item)(cart);
  carts.set(id, cart);
  return cart;
}

app.get('/add_to_cart/:item/', (req, res) => {
  res.send(renderCart(add(req, res, addCapped)));
});
app.get('/append/:item/', (req, res) => {
  res.type('text/plain').send(`${add(req, res, addAll).length}`);
});
app.get('/cart/', (req, res) => {
  res.send(renderCart(cartOf(req).cart ?? []));
});
app.get('/count/', (req, res) => {
  res.type('text/plain').send(`${(cartOf(req).cart ?? []).length}`);
});

const server = app.listen(port(), '127.0.0.1', () => console.log('ready'));
server.keepAliveTimeout = 60_000;
onStop(server);
