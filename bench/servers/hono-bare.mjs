/** Bare Hono 4 on @hono/node-server with hand-rolled sessions: the framework's own cost. */
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { addAll, addCapped, handRolledCarts, onStop, port, renderCart } from './common.mjs';

const carts = handRolledCarts();
const app = new Hono();
// HONO_MIDDLEWARE=1: one pass-through middleware, so every route goes through
// Hono's compose as it does under a session middleware (its own cost, measured apart).
if (process.env.HONO_MIDDLEWARE === '1') {
  app.use(async (c, next) => {
    c.set('seen', true);
    await next();
  });
}

const adder = (update, render) => (c) => {
  const { cart, setCookie } = carts.add(c.req.header('cookie'), update, c.req.param('item'));
  if (setCookie) c.header('set-cookie', setCookie);
  return render(c, cart);
};
const html = (c, cart) =>
  c.body(renderCart(cart), 200, { 'content-type': 'text/html; charset=utf-8' });
const count = (c, cart) => c.body(`${cart.length}`, 200, { 'content-type': 'text/plain' });

app.get('/add_to_cart/:item/', adder(addCapped, html));
app.get('/append/:item/', adder(addAll, count));
app.get('/cart/', (c) => html(c, carts.read(c.req.header('cookie'))));
app.get('/count/', (c) => count(c, carts.read(c.req.header('cookie'))));

const server = serve({ fetch: app.fetch, port: port(), hostname: '127.0.0.1' }, () =>
  console.log('ready'),
);
server.keepAliveTimeout = 60_000;
onStop(server);
