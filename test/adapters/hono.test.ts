import type { Server } from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import type { ContentfulStatusCode, RedirectStatusCode } from 'hono/utils/http-status';
import { describe, expect, it } from 'vitest';
import { type SessionEnv, session } from '../../src/adapters/hono.js';
import { withCommitHeaders } from '../../src/adapters/web.js';
import { createSessions } from '../../src/index.js';
import { memoryStore } from '../../src/stores/memory.js';
import { describeAdapter, scenario } from './matrix.js';

describeAdapter('Hono', async (sessions) => {
  const app = new Hono();
  app.use(session(sessions));
  app.all('*', async (c) => {
    const reply = await scenario(c.get('session'), new URL(c.req.url));
    for (const [name, value] of Object.entries(reply.headers ?? {})) c.header(name, value);
    if (reply.location) return c.redirect(reply.location, reply.status as RedirectStatusCode);
    return c.text(reply.body, reply.status as ContentfulStatusCode);
  });
  return createAdaptorServer({ fetch: app.fetch }) as Server;
});

/** Serves `app` on @hono/node-server for the length of `run`. */
async function served(app: Hono<any>, run: (base: string) => Promise<void>): Promise<void> {
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    await run(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

describe('Hono adapter, on @hono/node-server', () => {
  it('keeps the session cookie when an outer middleware sets a cookie of its own after next()', async () => {
    const app = new Hono();
    app.use(async (c, next) => {
      await next();
      c.header('set-cookie', 'theme=dark; Path=/', { append: true });
    });
    app.use(session(createSessions({ store: memoryStore() })));
    app.get('/', (c) => {
      c.var.session.set('user', 'ann');
      return c.text('hi');
    });
    await served(app, async (base) => {
      const cookies = (await fetch(`${base}/`)).headers.getSetCookie();
      expect(cookies).toEqual([
        expect.stringMatching(/^sessionid=[\w-]{43};/),
        'theme=dark; Path=/',
      ]);
    });
  });

  it("never lets an inner app.request() given the visitor's env read or write the visitor's session", async () => {
    const app = new Hono();
    app.use(session(createSessions({ store: memoryStore() })));
    app.get('/login', (c) => {
      c.var.session.set('user', 'alice');
      return c.text('ok');
    });
    app.get('/inner', (c) => c.text(String(c.var.session.get('user') ?? 'nobody')));
    app.get('/outer', async (c) => {
      const inner = await app.request('/inner', {}, c.env);
      return c.text(`inner saw ${await inner.text()}`);
    });
    await served(app, async (base) => {
      const login = await fetch(`${base}/login`);
      const cookie = login.headers.getSetCookie()[0]!.split(';')[0]!;
      const outer = await fetch(`${base}/outer`, { headers: { cookie } });
      expect(await outer.text()).toBe('inner saw nobody');
    });
  });

  it("never adds a visitor's cookie to a Response a route keeps and returns again (a shared constant)", async () => {
    const app = new Hono();
    app.use(session(createSessions({ store: memoryStore() })));
    const shared = new Response('the same for everyone');
    app.get('/', (c) => {
      c.var.session.set('seen', true);
      return shared;
    });
    await served(app, async (base) => {
      const res = await fetch(`${base}/`);
      expect(await res.text()).toBe('the same for everyone');
      expect(res.headers.getSetCookie()).toHaveLength(1);
      expect(shared.headers.get('set-cookie')).toBeNull();
    });
  });
  it("never adds one visitor's cookie to the next when a route returns the same bridge Response to everyone", async () => {
    const app = new Hono();
    app.use(session(createSessions({ store: memoryStore() })));
    let shared: Response | undefined;
    app.get('/', (c) => {
      c.var.session.set('seen', true);
      // Made once the bridge is installed: @hono/node-server's lightweight Response.
      shared ??= new Response('the same for everyone', { headers: { 'x-kind': 'constant' } });
      return shared;
    });
    await served(app, async (base) => {
      const first = await fetch(`${base}/`);
      const second = await fetch(`${base}/`);
      for (const res of [first, second]) {
        expect(await res.text()).toBe('the same for everyone');
        expect(res.headers.get('x-kind')).toBe('constant');
        expect(res.headers.getSetCookie()).toHaveLength(1);
      }
      expect(first.headers.getSetCookie()[0]).not.toBe(second.headers.getSetCookie()[0]);
      expect(shared!.headers.get('set-cookie')).toBeNull();
      expect(await shared!.text()).toBe('the same for everyone');
    });
  });

  it("keeps a bridge response's status, headers and bytes body, and merges Vary and Cache-Control", async () => {
    const app = new Hono();
    app.use(session(createSessions({ store: memoryStore() })));
    app.get('/text', (c) => {
      c.var.session.set('n', 1);
      c.header('vary', 'Accept');
      c.header('cache-control', 'public, max-age=60');
      return c.text('made', 201, { 'x-app': 'yes' });
    });
    app.get('/bytes', (c) => {
      c.var.session.set('n', 2);
      return c.body(new TextEncoder().encode('raw bytes'), 202);
    });
    await served(app, async (base) => {
      const text = await fetch(`${base}/text`);
      expect(text.status).toBe(201);
      expect(await text.text()).toBe('made');
      expect(text.headers.get('x-app')).toBe('yes');
      expect(text.headers.get('vary')).toBe('Accept, Cookie');
      expect(text.headers.get('cache-control')).not.toMatch(/public/);
      expect(text.headers.getSetCookie()).toHaveLength(1);
      const bytes = await fetch(`${base}/bytes`);
      expect(bytes.status).toBe(202);
      expect(await bytes.text()).toBe('raw bytes');
      expect(bytes.headers.getSetCookie()).toHaveLength(1);
    });
  });

  it("copies a bridge Response without making it a real one (the bridge's fast path is kept)", async () => {
    await served(new Hono(), async () => {
      const isLightweight = (r: Response) =>
        Object.getOwnPropertySymbols(r).some((s) => s.description === 'cache');
      const original = new Response('body', { status: 201, headers: { 'x-app': 'yes' } });
      expect(isLightweight(original)).toBe(true);
      const copy = withCommitHeaders(original, [['set-cookie', 'sessionid=abc; Path=/']]);
      expect(isLightweight(original)).toBe(true);
      expect(isLightweight(copy)).toBe(true);
      expect(copy.status).toBe(201);
      expect(copy.headers.get('x-app')).toBe('yes');
      expect(copy.headers.getSetCookie()).toEqual(['sessionid=abc; Path=/']);
      expect(original.headers.get('set-cookie')).toBeNull();
      expect(await copy.text()).toBe('body');
      expect(await original.text()).toBe('body');
    });
  });

  it("merges the commit's headers into a bridge Response's plain headers, whatever their case, and keeps its statusText", async () => {
    await served(new Hono(), async () => {
      const cacheOf = (r: Response) => {
        const symbol = Object.getOwnPropertySymbols(r).find((s) => s.description === 'cache')!;
        return (r as unknown as Record<symbol, [number, unknown, unknown]>)[symbol]!;
      };
      const fields = { Vary: 'Accept', 'Cache-Control': 'public, max-age=60', 'X-App': 'yes' };
      const original = new Response('body', { status: 201, statusText: 'Made', headers: fields });
      const copy = withCommitHeaders(original, [
        ['set-cookie', 'sessionid=abc; Path=/'],
        ['vary', 'Cookie'],
        ['cache-control', 'private'],
      ]);
      // Still the bridge's plain object, which it writes to node:http as it is.
      expect(Object.getPrototypeOf(cacheOf(copy)[2])).toBe(Object.prototype);
      expect(cacheOf(copy)[2]).toEqual({
        vary: 'Accept, Cookie',
        'cache-control': 'private, max-age=60',
        'x-app': 'yes',
        'set-cookie': 'sessionid=abc; Path=/',
      });
      expect(fields).toEqual({
        Vary: 'Accept',
        'Cache-Control': 'public, max-age=60',
        'X-App': 'yes',
      });
      expect(copy.status).toBe(201);
      expect(copy.statusText).toBe('Made');
      expect(await copy.text()).toBe('body');
      expect(original.headers.get('set-cookie')).toBeNull();
    });
  });

  it('keeps every Set-Cookie, a default Content-Type and odd field names through the copy made with the original as init', async () => {
    await served(new Hono(), async () => {
      const ours: [string, string][] = [['set-cookie', 'sessionid=abc; Path=/']];
      // A plain object holds one value per name: the app's cookie and ours need Headers.
      const cookies = withCommitHeaders(
        new Response('a', { headers: { 'Set-Cookie': 'theme=dark; Path=/' } }),
        ours,
      );
      expect(cookies.headers.getSetCookie()).toEqual([
        'theme=dark; Path=/',
        'sessionid=abc; Path=/',
      ]);
      // No fields: the bridge's own default Content-Type is kept.
      const bare = withCommitHeaders(new Response('b'), ours);
      expect(bare.headers.get('content-type')).toMatch(/^text\/plain/);
      expect(bare.headers.getSetCookie()).toEqual(['sessionid=abc; Path=/']);
      // A field named __proto__ never becomes the copy's prototype: the copy says what the original says.
      const odd = JSON.parse('{"__proto__": "x", "x-app": "yes"}') as Record<string, string>;
      const original = new Response('c', { headers: odd });
      const copy = withCommitHeaders(original, ours);
      expect([...copy.headers].filter(([name]) => name !== 'set-cookie')).toEqual([
        ...original.headers,
      ]);
      expect(copy.headers.get('x-app')).toBe('yes');
      expect(await copy.text()).toBe('c');
    });
  });

  it('still answers a streamed body whole, through the standard copy', async () => {
    const app = new Hono();
    app.use(session(createSessions({ store: memoryStore() })));
    app.get('/', (c) => {
      c.var.session.set('n', 1);
      const chunks = ['one ', 'two ', 'three'];
      return c.body(
        new ReadableStream({
          pull(controller) {
            const next = chunks.shift();
            if (next === undefined) controller.close();
            else controller.enqueue(new TextEncoder().encode(next));
          },
        }),
      );
    });
    await served(app, async (base) => {
      const res = await fetch(`${base}/`);
      expect(await res.text()).toBe('one two three');
      expect(res.headers.getSetCookie()).toHaveLength(1);
    });
  });
});

describe('Hono adapter, through app.request', () => {
  interface Counter {
    n: number;
  }
  const logger = { warn: () => {}, error: () => {} };

  it('saves nothing and releases the lock when a route throws', async () => {
    const sessions = createSessions<Counter>({
      store: memoryStore(),
      logger,
      lock: true,
      lockTimeout: 200,
    });
    const app = new Hono<SessionEnv<Counter>>();
    app.use(session(sessions));
    app.onError((_err, c) => c.text('oops', 500));
    app.post('/add', (c) => c.text(String(c.get('session').update('n', (n = 0) => n + 1))));
    app.post('/fail', (c) => {
      c.get('session').set('n', 100);
      throw new Error('boom');
    });
    const first = await app.request('/add', { method: 'POST' });
    const cookie = first.headers.get('set-cookie')!.split(';')[0]!;
    const failed = await app.request('/fail', { method: 'POST', headers: { cookie } });
    expect(failed.status).toBe(500);
    expect(failed.headers.get('set-cookie')).toBeNull();
    const next = await app.request('/add', { method: 'POST', headers: { cookie } });
    expect(await next.text()).toBe('2');
  });

  it('adds the cookie to a Response a route built itself, and merges Vary', async () => {
    const app = new Hono();
    app.use(session(createSessions({ store: memoryStore(), logger })));
    app.get('/login', (c) => {
      c.var.session.set('user', 'ann');
      return Response.redirect('http://shop.test/', 303);
    });
    app.get('/negotiated', (c) => {
      c.header('vary', 'Accept');
      return c.json(c.var.session.get('user') ?? null);
    });
    const res = await app.request('/login');
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('http://shop.test/');
    expect(res.headers.getSetCookie()).toEqual([expect.stringMatching(/^sessionid=[\w-]{43};/)]);
    const cookie = res.headers.get('set-cookie')!.split(';')[0]!;
    const negotiated = await app.request('/negotiated', { headers: { cookie } });
    expect(await negotiated.json()).toBe('ann');
    expect(negotiated.headers.get('vary')).toBe('Accept, Cookie');
  });
});
