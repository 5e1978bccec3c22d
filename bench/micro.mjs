#!/usr/bin/env node
/**
 * Per-request cost of satchel's manager without HTTP (memory store): how many
 * microseconds load() + update() + commit() and load() + get() + commit()
 * take, next to the pieces the CPU profile points at. Evidence for RESULTS.md.
 *
 *   node bench/micro.mjs
 */
import { createRequire } from 'node:module';

const dist = (path) => import(new URL(`../dist/${path}`, import.meta.url).href);
const { createSessions, jsonSerializer, storeKey } = await dist('index.js');
const { memoryStore } = await dist('stores/memory.js');

/** CPU time (user + system) of this process in µs: steadier than wall time on a shared machine. */
function cpu() {
  const { user, system } = process.cpuUsage();
  return user + system;
}

function time(label, n, fn) {
  for (let i = 0; i < Math.min(n, 20_000); i++) fn(i);
  const t0 = cpu();
  for (let i = 0; i < n; i++) fn(i);
  const us = (cpu() - t0) / n;
  console.log(`${label.padEnd(58)} ${us.toFixed(2).padStart(8)} CPU µs`);
  return us;
}

async function timeAsync(label, n, fn) {
  for (let i = 0; i < Math.min(n, 20_000); i++) await fn(i);
  const t0 = cpu();
  for (let i = 0; i < n; i++) await fn(i);
  const us = (cpu() - t0) / n;
  console.log(`${label.padEnd(58)} ${us.toFixed(2).padStart(8)} CPU µs`);
  return us;
}

const sessions = createSessions({ store: memoryStore() });
const cookies = [];
for (let i = 0; i < 200; i++) {
  const s = await sessions.load({ header: () => undefined, encrypted: false });
  s.set('cart', [`seed-${i}`]);
  const { headers } = await sessions.commit(s, 200);
  cookies.push(headers.find(([n]) => n === 'set-cookie')[1].split(';')[0]);
}
const req = (i) => ({
  header: (name) => (name === 'cookie' ? cookies[i % 200] : undefined),
  encrypted: false,
});
const add = (item) => (cart) => [...(cart ?? []), item].slice(-20);
const cart = Array.from({ length: 20 }, (_, i) => `item-${i}`);

console.log('per call, memory store, 20-item cart:');
await timeAsync('load() + update(cart) + commit()   [workload a]', 100_000, async (i) => {
  const s = await sessions.load(req(i));
  s.update('cart', add(`item-${i % 50}`));
  await sessions.commit(s, 200);
});
await timeAsync('load() + get(cart) + commit()      [workload b]', 100_000, async (i) => {
  const s = await sessions.load(req(i));
  s.get('cart');
  await sessions.commit(s, 200);
});
await timeAsync('load() alone', 100_000, async (i) => {
  await sessions.load(req(i));
});
console.log('pieces:');
time('storeKey(id) (SHA-256)', 200_000, (i) => storeKey(cookies[i % 200].slice(10)));
time('jsonSerializer.stringify({ cart }) (replacer)', 200_000, () =>
  jsonSerializer.stringify({ cart }),
);
time('JSON.stringify({ cart }) (no replacer)', 200_000, () => JSON.stringify({ cart }));
time('jsonSerializer.parse(text)', 200_000, () =>
  jsonSerializer.parse('{"cart":["item-0","item-1","item-2","item-3","item-4"]}'),
);
// satchel's own cookie package (the root's, not express-session's older copy in bench/).
const { serialize } = createRequire(new URL('../package.json', import.meta.url))('cookie');
const expires = new Date(Date.now() + 1_209_600_000);
time('cookie.serialize(name, value, attributes + expires)', 200_000, () =>
  serialize('sessionid', cookies[0].slice(10), {
    path: '/',
    httpOnly: true,
    sameSite: 'lax',
    secure: false,
    expires,
    maxAge: 1_209_600,
  }),
);
time('template literal Set-Cookie + toUTCString()', 200_000, () => {
  const v = cookies[0].slice(10);
  return `sessionid=${v}; Max-Age=1209600; Path=/; Expires=${expires.toUTCString()}; HttpOnly; SameSite=Lax`;
});
await sessions.close();
