import type { Server } from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { describe, expect, it } from 'vitest';
import { fromRequest, withSessions } from '../../src/adapters/web.js';
import { createSessions } from '../../src/index.js';
import { memoryStore } from '../../src/stores/memory.js';
import { describeAdapter, scenario } from './matrix.js';

describeAdapter('Web (Request/Response)', async (sessions) => {
  const fetch = withSessions(sessions, async (request, session) => {
    const reply = await scenario(session, new URL(request.url));
    return new Response(reply.body, {
      status: reply.status,
      headers: {
        'content-type': 'text/plain',
        ...(reply.location && { location: reply.location }),
        ...reply.headers,
      },
    });
  });
  return createAdaptorServer({ fetch }) as Server;
});

describe('Web adapter, called directly', () => {
  const logger = { warn: () => {}, error: () => {} };
  const cookieOf = (res: Response) => res.headers.get('set-cookie')?.split(';')[0] ?? '';

  it('adds the cookie to a response with immutable headers, and passes extra arguments on', async () => {
    const sessions = createSessions({ store: memoryStore(), logger });
    const handle = withSessions(sessions, (request, session, env: { to: string }) => {
      session.set('seen', request.url);
      return Response.redirect(env.to, 302);
    });
    const res = await handle(new Request('https://shop.test/login'), { to: 'https://shop.test/' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('https://shop.test/');
    expect(res.headers.get('set-cookie')).toMatch(/^sessionid=[\w-]{43};.*; Secure; SameSite=Lax$/);
    expect(res.headers.get('vary')).toBe('Cookie');
  });

  it('finds a cookie-less visitor by the ID in the request URL, with the URL transport', async () => {
    const sessions = createSessions<{ n: number }>({
      store: memoryStore(),
      logger,
      transport: { type: 'url' },
    });
    const handle = withSessions(sessions, (_request, session) => {
      const n = session.update('n', (v) => (v ?? 0) + 1);
      return new Response(`${n} ${session.encodeUrl('/cart/?page=2')}`);
    });
    const firstPage = await handle(new Request('https://shop.test/'));
    const [first, link] = (await firstPage.text()).split(' ');
    expect(first).toBe('1');
    expect(link).toMatch(/^\/cart\/\?page=2&sessionid=[\w-]{43}$/);
    const next = await handle(new Request(`https://shop.test${link}`));
    expect((await next.text()).split(' ')[0]).toBe('2');
  });

  it('gives the manager the request target as the URL parser reads it, in plain properties', () => {
    const urls = [
      'http://shop.test/a?b=1#frag',
      'https://shop.test:8443/%2F/x/../b?',
      'https://shop.test',
      'http://shop.test/?',
      'http://shop.test/a?b=?',
      'http://shop.test/a#x?y',
      'http://[::1]:8080/p?q=%23&sessionid=abc',
      'http://shop.test/caf%C3%A9?x=%20',
    ];
    for (const href of urls) {
      const request = new Request(href);
      const parsed = new URL(request.url);
      const incoming = fromRequest(request);
      expect(incoming.url).toBe(parsed.pathname + parsed.search);
      expect(incoming.encrypted).toBe(parsed.protocol === 'https:');
      // A copy (a proxy in front that overrides `encrypted`) keeps it.
      expect({ ...incoming, encrypted: true }.url).toBe(incoming.url);
    }
  });

  it('answers 500, saves nothing and releases the lock when the handler throws', async () => {
    const sessions = createSessions<{ n: number }>({
      store: memoryStore(),
      logger,
      lock: true,
      lockTimeout: 200,
    });
    const handle = withSessions(sessions, (request, session) => {
      const fail = new URL(request.url).pathname === '/fail';
      session.update('n', (n) => (n ?? 0) + 1);
      if (fail) throw new Error('boom');
      return new Response(String(session.get('n')));
    });
    const cookie = cookieOf(await handle(new Request('http://shop.test/')));
    const failed = await handle(new Request('http://shop.test/fail', { headers: { cookie } }));
    expect(failed.status).toBe(500);
    expect(failed.headers.get('set-cookie')).toBeNull();
    const next = await handle(new Request('http://shop.test/', { headers: { cookie } }));
    expect(await next.text()).toBe('2');
  });
});
