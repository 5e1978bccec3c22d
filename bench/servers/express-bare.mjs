/** Bare Express 5 with hand-rolled sessions: the framework's own cost, no session library. */
import express from 'express';
import { addAll, addCapped, handRolledCarts, onStop, port, renderCart } from './common.mjs';

const carts = handRolledCarts();
const app = express();
app.set('etag', false);
app.set('x-powered-by', false);
// EXPRESS_MIDDLEWARE=1: one pass-through middleware, so every route goes through
// the router's middleware layer as it does under a session middleware (its own cost, measured apart).
if (process.env.EXPRESS_MIDDLEWARE === '1') {
  app.use((req, _res, next) => {
    req.seen = true;
    next();
  });
}

function add(req, res, update) {
  const { cart, setCookie } = carts.add(req.headers.cookie, update, req.params.item);
  if (setCookie) res.setHeader('set-cookie', setCookie);
  return cart;
}

app.get('/add_to_cart/:item/', (req, res) => {
  res.send(renderCart(add(req, res, addCapped)));
});
app.get('/append/:item/', (req, res) => {
  res.type('text/plain').send(`${add(req, res, addAll).length}`);
});
app.get('/cart/', (req, res) => {
  res.send(renderCart(carts.read(req.headers.cookie)));
});
app.get('/count/', (req, res) => {
  res.type('text/plain').send(`${carts.read(req.headers.cookie).length}`);
});

const server = app.listen(port(), '127.0.0.1', () => console.log('ready'));
server.keepAliveTimeout = 60_000;
onStop(server);
