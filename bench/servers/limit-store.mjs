/**
 * The limit over a network store: limit.mjs's node:http server with the
 * carts kept in Redis (STORE=redis, ioredis) or PostgreSQL (STORE=postgres,
 * pg), through the same round trips satchel makes for a cart request: one
 * read, then one compare-and-set on a version (a Lua script; an UPDATE with
 * the version in its WHERE), re-read and retried on a conflict. No expiry
 * checks, no hashing, no owner index, no cookie signing: what the workload
 * costs when sessions cost nothing but their store's round trips, the floor
 * of the "satchel node redis|postgres" contenders.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { addAll, addCapped, onStop, port, renderCart, route, send } from './common.mjs';

const COOKIE = /(?:^|;\s*)sid=([A-Za-z0-9_-]{32})(?:;|$)/;
const tag = `bench_floor_${process.pid}`;
const carts = process.env.STORE === 'postgres' ? await postgresCarts() : await redisCarts();

/** get(id) → { cart, version } | undefined; put(id, cart, version) → true, or false on a conflict. */
async function redisCarts() {
  const { Redis } = await import('ioredis');
  const client = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  const prefix = `satchel-bench:${tag}:`;
  // ARGV[1]: the version read, '' when there was no cart.
  const cas = `local version = redis.call('HGET', KEYS[1], 'version') or ''
if version == ARGV[1] then
  redis.call('HSET', KEYS[1], 'data', ARGV[2], 'version', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], 3600000)
  return 1
end
return 0`;
  const sha = await client.script('LOAD', cas);
  return {
    async get(id) {
      const [data, version] = await client.hmget(prefix + id, 'data', 'version');
      return data === null ? undefined : { cart: JSON.parse(data), version: Number(version) };
    },
    async put(id, cart, version) {
      const done = await client.evalsha(
        sha,
        1,
        prefix + id,
        version === 0 ? '' : String(version),
        JSON.stringify(cart),
        String(version + 1),
      );
      return done === 1;
    },
    // The runner removes the satchel-bench:* keys.
    close: () => client.quit(),
  };
}

async function postgresCarts() {
  const { default: pg } = await import('pg');
  const connectionString = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const pool = new pg.Pool({ connectionString, max: 10 });
  const table = `satchel_${tag}`;
  await pool.query(`CREATE TABLE "${table}" (key TEXT PRIMARY KEY, data TEXT, version INT)`);
  return {
    async get(id) {
      const { rows } = await pool.query(`SELECT data, version FROM "${table}" WHERE key = $1`, [
        id,
      ]);
      return rows.length === 0
        ? undefined
        : { cart: JSON.parse(rows[0].data), version: rows[0].version };
    },
    async put(id, cart, version) {
      const data = JSON.stringify(cart);
      const result =
        version === 0
          ? await pool.query(
              `INSERT INTO "${table}" (key, data, version) VALUES ($1, $2, 1) ON CONFLICT DO NOTHING`,
              [id, data],
            )
          : await pool.query(
              `UPDATE "${table}" SET data = $2, version = $3 WHERE key = $1 AND version = $4`,
              [id, data, version + 1, version],
            );
      return result.rowCount === 1;
    },
    async close() {
      await pool.query(`DROP TABLE IF EXISTS "${table}"`).catch(() => {});
      await pool.end();
    },
  };
}

/** Reads, updates and compare-and-sets the cart until no one else wrote it in between. */
async function change(id, update) {
  for (;;) {
    const found = await carts.get(id);
    const cart = update(found?.cart);
    if (await carts.put(id, cart, found?.version ?? 0)) return cart;
  }
}

const server = createServer(async (req, res) => {
  const [kind, item] = route(req.url);
  if (kind === undefined) return send(res, 404, 'not found\n', 'text/plain');
  let id = COOKIE.exec(req.headers.cookie ?? '')?.[1];
  if (kind === 'read' || kind === 'count') {
    const cart = (id === undefined ? undefined : (await carts.get(id))?.cart) ?? [];
    return kind === 'read' ? send(res, 200, renderCart(cart)) : send(res, 200, `${cart.length}`);
  }
  if (id === undefined) {
    id = randomBytes(24).toString('base64url');
    res.setHeader('set-cookie', `sid=${id}; Path=/; HttpOnly; SameSite=Lax`);
  }
  const cart = await change(id, (kind === 'add' ? addCapped : addAll)(item));
  if (kind === 'add') send(res, 200, renderCart(cart));
  else send(res, 200, `${cart.length}`, 'text/plain');
});
server.keepAliveTimeout = 60_000;
server.listen(port(), '127.0.0.1', () => console.log('ready'));
onStop(server, () => carts.close());
