import type { Server } from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import type { ContentfulStatusCode, RedirectStatusCode } from 'hono/utils/http-status';
import { describe, expect, it } from 'vitest';
import { type SessionEnv, session } from '../../src/adapters/hono.js';
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
