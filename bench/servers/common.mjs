/**
 * What every Node contender shares: the seed's cart.html, the cart rules and
 * a small response helper, so the contenders differ only in how they keep sessions.
 */
import { randomBytes } from 'node:crypto';

/** The cart keeps its last CART_MAX items on /add_to_cart/; /append/ keeps all of them. */
export const CART_MAX = 20;

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#x27;' };

export function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** The seed's cart/cart.html, rendered the way Django renders it (autoescaped items). */
export function renderCart(cart) {
  let items = '';
  for (const item of cart) items += `\n<li>${escapeHtml(item)}</li>`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="X-UA-Compatible" content="IE=edge">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Your Shopping Cart</title>
</head>
<body>
<h1>Your Shopping Cart</h1>
<ul>${items}
</ul>
</body>
</html>
`;
}

/** The pure cart updates (satchel re-runs them on the newest value after a conflict). */
export const addCapped = (item) => (cart) => [...(cart ?? []), item].slice(-CART_MAX);
export const addAll = (item) => (cart) => [...(cart ?? []), item];

/** The routes, as [kind, item]: kind is 'add', 'append', 'read', 'count' or undefined. */
export function route(url) {
  if (url.startsWith('/add_to_cart/') && url.endsWith('/')) {
    return ['add', decodeURIComponent(url.slice(13, -1))];
  }
  if (url.startsWith('/append/') && url.endsWith('/')) {
    return ['append', decodeURIComponent(url.slice(8, -1))];
  }
  if (url === '/cart/') return ['read', undefined];
  if (url === '/count/') return ['count', undefined];
  return [undefined, undefined];
}

export function send(res, status, body, type = 'text/html; charset=utf-8') {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export function port() {
  const value = Number(process.env.PORT);
  if (!Number.isInteger(value) || value <= 0) throw new Error('PORT must be set');
  return value;
}

/** Stops on SIGTERM/SIGINT after `cleanup`, exiting normally so --cpu-prof writes its profile. */
export function onStop(server, cleanup = async () => {}) {
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    server.closeAllConnections?.();
    server.close();
    try {
      await cleanup();
    } catch (err) {
      console.error('cleanup failed', err);
    }
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

/**
 * The hand-rolled sessions of the bare-framework contenders: carts in a Map
 * keyed by a random `sid` cookie, no expiry, no persistence. `add` returns
 * the new cart and, for a new visitor, the Set-Cookie value to send.
 */
export function handRolledCarts() {
  const carts = new Map();
  const COOKIE = /(?:^|;\s*)sid=([A-Za-z0-9_-]{32})(?:;|$)/;
  const idOf = (cookieHeader) => COOKIE.exec(cookieHeader ?? '')?.[1];
  return {
    read: (cookieHeader) => carts.get(idOf(cookieHeader)) ?? [],
    add(cookieHeader, update, item) {
      let id = idOf(cookieHeader);
      let setCookie;
      if (id === undefined || !carts.has(id)) {
        id = randomBytes(24).toString('base64url');
        setCookie = `sid=${id}; Path=/; HttpOnly; SameSite=Lax`;
      }
      const cart = update(item)(carts.get(id));
      carts.set(id, cart);
      return { cart, setCookie };
    },
  };
}
