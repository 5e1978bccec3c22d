// deno run --allow-net --allow-env web-deno.ts (with satchel in package.json)
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
Deno.serve({ port: 8000 }, fetch);
