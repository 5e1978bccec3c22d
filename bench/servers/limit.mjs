/**
 * The limit: node:http with carts in a Map keyed by a random cookie. No
 * session library, no expiry, no persistence: what the workload costs when
 * sessions cost nothing.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { addAll, addCapped, onStop, port, renderCart, route, send } from './common.mjs';

const carts = new Map();
const COOKIE = /(?:^|;\s*)sid=([A-Za-z0-9_-]{32})(?:;|$)/;

const server = createServer((req, res) => {
  const [kind, item] = route(req.url);
  if (kind === undefined) return send(res, 404, 'not found\n', 'text/plain');
  const match = COOKIE.exec(req.headers.cookie ?? '');
  let id = match?.[1];
  let cart = id === undefined ? undefined : carts.get(id);
  if (kind === 'read' || kind === 'count') {
    cart ??= [];
    return kind === 'read' ? send(res, 200, renderCart(cart)) : send(res, 200, `${cart.length}`);
  }
  if (cart === undefined) {
    id = randomBytes(24).toString('base64url');
    res.setHeader('set-cookie', `sid=${id}; Path=/; HttpOnly; SameSite=Lax`);
  }
  cart = (kind === 'add' ? addCapped : addAll)(item)(cart);
  carts.set(id, cart);
  if (kind === 'add') send(res, 200, renderCart(cart));
  else send(res, 200, `${cart.length}`, 'text/plain');
});
server.keepAliveTimeout = 60_000;
server.listen(port(), '127.0.0.1', () => console.log('ready'));
onStop(server);
