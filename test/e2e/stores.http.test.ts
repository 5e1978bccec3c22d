/**
 * The shopping-cart demo started on each store the environment can select
 * (`SATCHEL_STORE=redis|postgres|cached|cookie`, and memory for contrast), as
 * `npm start` runs it: add twice through the tutorial route, read the cart,
 * restart the process, read it again.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import {
  type AppProcess,
  cartOf,
  spawnServer,
  startServer,
  stopAll,
  uniqueName,
  Visitor,
} from './harness.js';
import {
  DATABASE_URL,
  describeWithService,
  dropTable,
  postgresUnreachable,
  REDIS_URL,
  redisUnreachable,
} from '../support/services.js';

const [redisMissing, postgresMissing] = await Promise.all([
  redisUnreachable(),
  postgresUnreachable(),
]);

const tables: string[] = [];
const prefixes: string[] = [];

afterAll(async () => {
  await stopAll();
  if (tables.length > 0 && postgresMissing === undefined) {
    for (const table of tables) await dropTable(table);
  }
  if (prefixes.length > 0 && redisMissing === undefined) {
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      for (const prefix of prefixes) {
        const keys = await redis.keys(`${prefix}*`);
        if (keys.length > 0) await redis.unlink(...keys);
      }
    } finally {
      redis.disconnect();
    }
  }
});

function postgresTable(): string {
  const table = uniqueName('satchel_e2e');
  tables.push(table);
  return table;
}

function redisPrefix(): string {
  const prefix = `${uniqueName('satchel-e2e')}:`;
  prefixes.push(prefix);
  return prefix;
}

/** Adds awesome-item twice through the tutorial route and checks the cart page says x2. */
async function addTwice(app: AppProcess): Promise<Visitor> {
  const visitor = new Visitor(app.url);
  expect((await visitor.page('/add_to_cart/awesome-item/')).status).toBe(200);
  const added = await visitor.page('/add_to_cart/awesome-item/');
  expect(added.status).toBe(200);
  expect(cartOf(added.html)).toEqual({ 'awesome-item': 2 });
  const cart = await visitor.page('/cart/');
  expect(cart.status).toBe(200);
  expect(cartOf(cart.html)).toEqual({ 'awesome-item': 2 });
  expect(cart.html).toMatch(/<span class="qty">x2<\/span>/);
  return visitor;
}

/** What the session panel names as the store. */
function panelStore(html: string): string | undefined {
  return /id="session-store">([^<]*)</.exec(html)?.[1];
}

/** Stops `app` hard (SIGKILL: what was answered must be stored), starts it again, points `visitor` at it. */
async function restart(app: AppProcess, env: Record<string, string>, visitor: Visitor) {
  await app.stop('SIGKILL');
  const again = await startServer(env);
  visitor.base = again.url;
  return again;
}

describeWithService('cart demo on SATCHEL_STORE=redis', redisMissing, () => {
  it('keeps the cart in Redis, across a restart', async () => {
    const prefix = redisPrefix();
    const env = {
      PORT: '0',
      SATCHEL_STORE: 'redis',
      SATCHEL_REDIS_URL: REDIS_URL,
      SATCHEL_REDIS_PREFIX: prefix,
    };
    let app = await startServer(env);
    expect(app.stdout()).toContain(`Sessions: redis (${REDIS_URL}, prefix ${prefix})`);
    const visitor = await addTwice(app);
    expect(panelStore((await visitor.page('/cart/')).html)).toBe(
      `redis (${REDIS_URL}, prefix ${prefix})`,
    );

    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      // One record, under the prefix, keyed by a hash of the ID, never the ID.
      const keys = await redis.keys(`${prefix}*`);
      expect(keys).toHaveLength(1);
      expect(keys[0]).not.toContain(visitor.cookie);
    } finally {
      redis.disconnect();
    }

    app = await restart(app, env, visitor);
    expect(cartOf((await visitor.page('/cart/')).html)).toEqual({ 'awesome-item': 2 });
    await app.stop();
  });
});

describeWithService('cart demo on SATCHEL_STORE=postgres', postgresMissing, () => {
  it('runs satchel migrate at start-up, says so, and keeps the cart across a restart', async () => {
    const table = postgresTable();
    const env = {
      PORT: '0',
      SATCHEL_STORE: 'postgres',
      SATCHEL_DATABASE_URL: DATABASE_URL,
      SATCHEL_DATABASE_TABLE: table,
    };
    let app = await startServer(env);
    expect(app.stdout()).toContain(
      `Ran satchel migrate on table ${table} (${DATABASE_URL}): created table ${table}, index ${table}_expires_at, index ${table}_owner, table ${table}_locks`,
    );
    expect(app.stdout()).toContain(`Sessions: postgres (${DATABASE_URL}, table ${table})`);
    const visitor = await addTwice(app);
    expect(panelStore((await visitor.page('/cart/')).html)).toBe(
      `postgres (${DATABASE_URL}, table ${table})`,
    );

    app = await restart(app, env, visitor);
    expect(app.stdout()).toContain(
      `Ran satchel migrate on table ${table} (${DATABASE_URL}): already up to date, nothing created`,
    );
    expect(cartOf((await visitor.page('/cart/')).html)).toEqual({ 'awesome-item': 2 });
    await app.stop();
  });

  it('exits 1 with one line when PostgreSQL cannot be reached at start-up', async () => {
    const run = spawnServer({
      PORT: '0',
      SATCHEL_STORE: 'postgres',
      SATCHEL_DATABASE_URL: 'postgres://127.0.0.1:9/nowhere',
    });
    expect(await run.exited).toEqual({ code: 1, signal: null });
    expect(run.err()).toMatch(/^shopping-cart: \[postgres\] migrate failed: .*ECONNREFUSED.*\n$/);
  });
});

describeWithService('cart demo on SATCHEL_STORE=cached', postgresMissing, () => {
  it('keeps the cart in PostgreSQL behind a memory cache, across a restart', async () => {
    const table = postgresTable();
    const env = {
      PORT: '0',
      SATCHEL_STORE: 'cached',
      SATCHEL_DATABASE_URL: DATABASE_URL,
      SATCHEL_DATABASE_TABLE: table,
    };
    let app = await startServer(env);
    expect(app.stdout()).toContain(`Ran satchel migrate on table ${table}`);
    const visitor = await addTwice(app);
    expect(panelStore((await visitor.page('/cart/')).html)).toBe(
      `cached (memory cache in this process, re-read after 5000 ms, in front of postgres: ${DATABASE_URL}, table ${table})`,
    );
    // The restart empties the memory cache: the cart comes from the database.
    app = await restart(app, env, visitor);
    expect(cartOf((await visitor.page('/cart/')).html)).toEqual({ 'awesome-item': 2 });
    await app.stop();
  });
});

describeWithService(
  'cart demo on SATCHEL_STORE=cached with SATCHEL_CACHE=redis',
  redisMissing ?? postgresMissing,
  () => {
    it('keeps the cart in PostgreSQL behind a Redis cache, across a restart', async () => {
      const table = postgresTable();
      const prefix = redisPrefix();
      const env = {
        PORT: '0',
        SATCHEL_STORE: 'cached',
        SATCHEL_CACHE: 'redis',
        SATCHEL_REDIS_PREFIX: prefix,
        SATCHEL_DATABASE_TABLE: table,
      };
      let app = await startServer(env);
      const visitor = await addTwice(app);
      expect(panelStore((await visitor.page('/cart/')).html)).toBe(
        `cached (redis cache at ${REDIS_URL}, in front of postgres: ${DATABASE_URL}, table ${table})`,
      );
      const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
      try {
        expect(await redis.keys(`${prefix}cache:*`)).toHaveLength(1);
      } finally {
        redis.disconnect();
      }
      app = await restart(app, env, visitor);
      expect(cartOf((await visitor.page('/cart/')).html)).toEqual({ 'awesome-item': 2 });
      await app.stop();
    });
  },
);

describeWithService('cart demo on SATCHEL_STORE=cookie', undefined, () => {
  const oldKey = randomBytes(32).toString('base64url');
  const newKey = randomBytes(32).toString('base64url');

  it('keeps the cart sealed in the cookie, across a restart and a key rotation', async () => {
    const env = { PORT: '0', SATCHEL_STORE: 'cookie', SATCHEL_SECRET: oldKey };
    let app = await startServer(env);
    expect(app.stdout()).toContain('Sessions: cookie (AES-256-GCM sealed in the browser, 1 key;');
    expect(app.stdout()).not.toContain(oldKey);

    const visitor = new Visitor(app.url);
    const first = await visitor.request('/add_to_cart/awesome-item/');
    expect(first.status).toBe(200);
    const setCookie = first.headers.getSetCookie().find((c) => c.startsWith('sessionid='));
    expect(setCookie).toBeDefined();
    expect(setCookie).toMatch(/; HttpOnly/i);
    const sealed = visitor.cookie!;
    // Not the data, not encoded data, and not a session ID either.
    expect(sealed.length).toBeGreaterThan(43);
    expect(sealed).not.toContain('awesome');
    expect(decodeURIComponent(sealed)).not.toContain('cart');
    expect(Buffer.from(sealed, 'base64url').toString('latin1')).not.toContain('awesome-item');
    expect(Buffer.from(sealed, 'base64').toString('latin1')).not.toContain('awesome-item');

    const added = await visitor.page('/add_to_cart/awesome-item/');
    expect(cartOf(added.html)).toEqual({ 'awesome-item': 2 });
    expect(visitor.cookie).not.toBe(sealed);
    const page = await visitor.page('/cart/');
    expect(cartOf(page.html)).toEqual({ 'awesome-item': 2 });
    expect(page.html).toContain('<span class="qty">x2</span>');
    expect(panelStore(page.html)).toMatch(/^cookie \(AES-256-GCM/);
    expect(page.html).toContain('the server keeps nothing');

    // A tampered cookie reads as an empty session.
    const tampered = new Visitor(app.url);
    const current = visitor.cookie!;
    const i = Math.floor(current.length / 2);
    tampered.cookie = `${current.slice(0, i)}${current[i] === 'A' ? 'B' : 'A'}${current.slice(i + 1)}`;
    expect(cartOf((await tampered.page('/cart/')).html)).toEqual({});

    // A new key first and the old one after: nobody is logged out.
    const rotated = { ...env, SATCHEL_SECRET: `${newKey},${oldKey}` };
    app = await restart(app, rotated, visitor);
    expect(app.stdout()).toContain('2 keys');
    expect(cartOf((await visitor.page('/cart/')).html)).toEqual({ 'awesome-item': 2 });
    // A write seals the cookie again, with the new first key.
    expect(cartOf((await visitor.page('/add_to_cart/rubber-duck/')).html)).toEqual({
      'awesome-item': 2,
      'rubber-duck': 1,
    });

    // The old key rotated out: every cookie it sealed is revoked.
    const revoked = new Visitor(app.url);
    revoked.cookie = sealed;
    await app.stop();
    app = await startServer({ ...env, SATCHEL_SECRET: newKey });
    revoked.base = app.url;
    expect(cartOf((await revoked.page('/cart/')).html)).toEqual({});
    visitor.base = app.url;
    expect(cartOf((await visitor.page('/cart/')).html)).toEqual({
      'awesome-item': 2,
      'rubber-duck': 1,
    });
    await app.stop();
  });

  it.each([
    [{}, /^shopping-cart: the cookie store needs SATCHEL_SECRET: .*satchel keygen\)\n$/],
    [
      { SATCHEL_SECRET: 'too-short' },
      /^shopping-cart: SATCHEL_SECRET must be at least 32 characters; got 9 \(generate one with: npx satchel keygen\)\n$/,
    ],
  ])('exits 2 with a clear message when SATCHEL_SECRET is %j', async (extra, message) => {
    const run = spawnServer({ PORT: '0', SATCHEL_STORE: 'cookie', ...extra });
    expect(await run.exited).toEqual({ code: 2, signal: null });
    expect(run.err()).toMatch(message);
    expect(run.out()).toBe('');
  });
});

describeWithService('cart demo on SATCHEL_STORE=memory', undefined, () => {
  it('loses the cart on restart, as documented', async () => {
    const env = { PORT: '0', SATCHEL_STORE: 'memory' };
    let app = await startServer(env);
    const visitor = await addTwice(app);
    app = await restart(app, env, visitor);
    expect(cartOf((await visitor.page('/cart/')).html)).toEqual({});
    await app.stop();
  });
});
