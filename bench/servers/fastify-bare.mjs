/** Bare Fastify 5 with hand-rolled sessions: the framework's own cost, no session library. */
import Fastify from 'fastify';
import { addAll, addCapped, handRolledCarts, onStop, port, renderCart } from './common.mjs';

const carts = handRolledCarts();
const app = Fastify({ logger: false, keepAliveTimeout: 60_000 });
// FASTIFY_HOOKS=1: a pass-through onRequest and onSend hook, the two a session
// plugin needs, so every request runs Fastify's hook runners (their own cost, measured apart).
if (process.env.FASTIFY_HOOKS === '1') {
  app.decorateRequest('seen', false);
  app.addHook('onRequest', (request, _reply, done) => {
    request.seen = true;
    done();
  });
  app.addHook('onSend', (_request, _reply, payload, done) => done(null, payload));
}

const adder = (update, render) => async (request, reply) => {
  const { cart, setCookie } = carts.add(request.headers.cookie, update, request.params.item);
  if (setCookie) reply.header('set-cookie', setCookie);
  return render(cart, reply);
};
const html = (cart, reply) => reply.type('text/html; charset=utf-8').send(renderCart(cart));
const count = (cart, reply) => reply.type('text/plain').send(`${cart.length}`);

app.get('/add_to_cart/:item/', adder(addCapped, html));
app.get('/append/:item/', adder(addAll, count));
app.get('/cart/', async (request, reply) => html(carts.read(request.headers.cookie), reply));
app.get('/count/', async (request, reply) => count(carts.read(request.headers.cookie), reply));

await app.listen({ port: port(), host: '127.0.0.1' });
console.log('ready');
onStop(app.server);
