import Fastify from 'fastify';
import { createSessions } from 'satchel';
import { sessionPlugin } from 'satchel/fastify';

declare module 'satchel' {
  interface SessionData {
    cart: string[];
  }
}

const app = Fastify();
await app.register(sessionPlugin, { sessions: createSessions() }); // SQLite in ./satchel-sessions.db
app.post<{ Params: { item: string } }>('/add_to_cart/:item/', async (request, reply) => {
  request.session.update('cart', (cart = []) => [...cart, request.params.item]);
  return reply.redirect('/cart/', 303); // saved before the redirect leaves
});
app.get('/cart/', async (request) => request.session.get('cart', []));
await app.listen({ port: Number(process.env.PORT ?? 8000) });
