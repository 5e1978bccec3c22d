import { createServer } from 'node:http';
import { createSessions } from 'satchel';
import { withSessions } from 'satchel/node';

declare module 'satchel' {
  interface SessionData {
    cart: string[];
  }
}

const sessions = createSessions(); // SQLite in ./satchel-sessions.db
createServer(
  withSessions(sessions, (req, res) => {
    const item = req.url?.match(/^\/add_to_cart\/([^/?]+)\/$/)?.[1];
    const cart = item
      ? req.session.update('cart', (cart = []) => [...cart, decodeURIComponent(item)])
      : req.session.get('cart', []);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(cart));
  }),
).listen(Number(process.env.PORT ?? 8000));
