import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { createSessions } from 'satchel';
import { session } from 'satchel/hono';

declare module 'satchel' {
  interface SessionData {
    cart: string[];
  }
}

const app = new Hono();
app.use(session(createSessions())); // SQLite in ./satchel-sessions.db
app.post('/add_to_cart/:item/', (c) => {
  c.var.session.update('cart', (cart = []) => [...cart, c.req.param('item')]);
  return c.redirect('/cart/', 303);
});
app.get('/cart/', (c) => c.json(c.var.session.get('cart', [])));
serve({ fetch: app.fetch, port: Number(process.env.PORT ?? 8000) });
