import { serve } from '@hono/node-server'; // npm install @hono/node-server: fetch handlers on node:http
import { createSessions } from 'satchel';
import { memoryStore } from 'satchel/stores/memory';
import { withSessions } from 'satchel/web';

declare module 'satchel' {
  interface SessionData {
    cart: string[];
  }
}

const sessions = createSessions({ store: memoryStore() });
const fetch = withSessions(sessions, (request, session) => {
  const item = new URL(request.url).pathname.match(/^\/add_to_cart\/([^/]+)\/$/)?.[1];
  const cart = item
    ? session.update('cart', (cart = []) => [...cart, decodeURIComponent(item)])
    : session.get('cart', []);
  return Response.json(cart);
});
serve({ fetch, port: Number(process.env.PORT ?? 8000) });
