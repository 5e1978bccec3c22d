import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { sessionPlugin } from '../../src/adapters/fastify.js';
import { createSessions, type Session, type Sessions } from '../../src/index.js';
import { memoryStore } from '../../src/stores/memory.js';
import { describeAdapter, scenario } from './matrix.js';

describeAdapter('Fastify', async (sessions) => {
  const app = Fastify();
  await app.register(sessionPlugin, { sessions });
  app.all('/*', async (request, reply) => {
    const result = await scenario(request.session, new URL(request.url, 'http://x'));
    reply.headers(result.headers ?? {});
    if (result.location) return reply.redirect(result.location, result.status);
    return reply.code(result.status).type('text/plain').send(result.body);
  });
  await app.ready();
  return app.server;
});

describe('Fastify adapter, through inject', () => {
  const logger = { warn: () => {}, error: () => {} };
  // request.session is typed by the app-wide SessionData; these routes keep a counter of their own.
  const counter = (session: Session<any>): Session<{ n: number }> => session;

  async function app() {
    const sessions = createSessions({ store: memoryStore(), logger, lock: true, lockTimeout: 200 });
    const fastify = Fastify();
    await fastify.register(sessionPlugin, { sessions });
    fastify.post('/add', async (request) =>
      String(counter(request.session).update('n', (n = 0) => n + 1)),
    );
    fastify.post('/fail', async (request) => {
      counter(request.session).set('n', 100);
      throw new Error('boom');
    });
    fastify.post('/hijack', async (request, reply) => {
      counter(request.session).set('n', 200);
      reply.hijack();
      reply.raw.end('raw');
    });
    fastify.post('/response', async (request) => {
      const status = Number((request.query as { status: string }).status);
      counter(request.session).set('n', status);
      return new Response('web', { status, headers: { vary: 'Accept' } });
    });
    const first = await fastify.inject({ method: 'POST', url: '/add' });
    const cookie = String(first.headers['set-cookie']).split(';')[0]!;
    const add = async () =>
      (await fastify.inject({ method: 'POST', url: '/add', headers: { cookie } })).body;
    return { fastify, cookie, add };
  }

  it('saves nothing and releases the lock when a route throws', async () => {
    const { fastify, cookie, add } = await app();
    const failed = await fastify.inject({ method: 'POST', url: '/fail', headers: { cookie } });
    expect(failed.statusCode).toBe(500);
    expect(failed.headers['set-cookie']).toBeUndefined();
    expect(await add()).toBe('2');
  });

  it('releases the lock of a hijacked reply, saving nothing', async () => {
    const { fastify, cookie, add } = await app();
    const hijacked = await fastify.inject({ method: 'POST', url: '/hijack', headers: { cookie } });
    expect(hijacked.body).toBe('raw');
    expect(await add()).toBe('2');
  });

  it('commits with the status of a returned web Response and merges its Vary', async () => {
    const { fastify, cookie, add } = await app();
    const failed = await fastify.inject({
      method: 'POST',
      url: '/response?status=500',
      headers: { cookie },
    });
    expect(failed.statusCode).toBe(500);
    expect(await add()).toBe('2');
    const ok = await fastify.inject({
      method: 'POST',
      url: '/response?status=201',
      headers: { cookie },
    });
    expect(ok.statusCode).toBe(201);
    expect(ok.headers.vary).toBe('Accept, Cookie');
    expect(await add()).toBe('202');
  });

  describe('with a Sessions object the app wrapped', () => {
    async function wrappedApp(wrap: (inner: Sessions<any>) => Partial<Sessions<any>>) {
      const inner = createSessions({ store: memoryStore(), logger });
      const fastify = Fastify();
      await fastify.register(sessionPlugin, {
        sessions: { ...inner, ...wrap(inner) } as Sessions<any>,
      });
      fastify.get('/add', async (request) =>
        String(counter(request.session).update('n', (n = 0) => n + 1)),
      );
      return fastify;
    }

    for (const [name, reason] of [
      ['an empty reason', undefined],
      ['a plain Error', new Error('wrapper broke')],
    ] as const) {
      it(`answers 500, never a success, when the wrapped commit rejects with ${name}`, async () => {
        const fastify = await wrappedApp(() => ({ commit: () => Promise.reject(reason) }));
        const res = await fastify.inject('/add');
        expect(res.statusCode).toBe(500);
        expect(res.headers['set-cookie']).toBeUndefined();
      });

      it(`answers 500, never running the route, when the wrapped load rejects with ${name}`, async () => {
        let ran = false;
        const fastify = await wrappedApp(() => ({ load: () => Promise.reject(reason) }));
        fastify.get('/ran', async () => {
          ran = true;
          return 'ran';
        });
        const res = await fastify.inject('/ran');
        expect(res.statusCode).toBe(500);
        expect(ran).toBe(false);
      });
    }

    it('goes on with a wrapped load and commit that answer later', async () => {
      const fastify = await wrappedApp((inner) => ({
        load: async (request, options) => inner.load(request, options),
        commit: async (session, status) => inner.commit(session, status),
      }));
      const first = await fastify.inject('/add');
      const cookie = String(first.headers['set-cookie']).split(';')[0]!;
      const second = await fastify.inject({ url: '/add', headers: { cookie } });
      expect([first.body, second.body]).toEqual(['1', '2']);
    });
  });
});
