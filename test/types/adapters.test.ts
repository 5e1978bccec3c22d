import { createServer } from 'node:http';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { describe, expectTypeOf, it } from 'vitest';
import { session as expressSession } from '../../src/adapters/express.js';
import { sessionPlugin } from '../../src/adapters/fastify.js';
import { type SessionEnv, session as honoSession } from '../../src/adapters/hono.js';
import { withSessions as nodeSessions } from '../../src/adapters/node.js';
import { withSessions as webSessions } from '../../src/adapters/web.js';
import { createSessions, type Session } from '../../src/index.js';

// The app's session shape, declared once; every adapter then hands out a typed session.
// In an app: `declare module 'satchel'`; here the declaring module is named by its path.
declare module '../../src/session.js' {
  interface SessionData {
    cart: string[];
  }
}

// These checks are compile-time: `npm run typecheck` fails when a type is wrong.
// The functions are never called; the test only makes vitest accept the file.
const sessions = createSessions();

function nodeTypes() {
  createServer(
    nodeSessions(sessions, (req, res) => {
      expectTypeOf(req.session.get('cart')).toEqualTypeOf<string[] | undefined>();
      // @ts-expect-error a cart is a list of item names
      req.session.set('cart', 1);
      res.end();
    }),
  );
}

function expressTypes() {
  const app = express();
  app.use(expressSession(sessions));
  app.get('/', (req, res) => {
    expectTypeOf(req.session.get('cart')).toEqualTypeOf<string[] | undefined>();
    expectTypeOf(req.session.update('cart', (c) => [...(c ?? []), 'x'])).toEqualTypeOf<string[]>();
    // @ts-expect-error a cart is a list of item names
    req.session.set('cart', 1);
    res.end();
  });
}

async function fastifyTypes() {
  const app = Fastify();
  await app.register(sessionPlugin, { sessions });
  // @ts-expect-error the plugin needs its sessions
  await app.register(sessionPlugin, {});
  app.get('/', async (request) => {
    expectTypeOf(request.session).toEqualTypeOf<Session>();
    expectTypeOf(request.session.get('cart')).toEqualTypeOf<string[] | undefined>();
    // @ts-expect-error a cart is a list of item names
    request.session.set('cart', 1);
    return 'ok';
  });
}

function honoTypes() {
  const app = new Hono();
  app.use(honoSession(sessions));
  app.get('/', (c) => {
    expectTypeOf(c.get('session').get('cart')).toEqualTypeOf<string[] | undefined>();
    expectTypeOf(c.var.session.get('cart')).toEqualTypeOf<string[] | undefined>();
    // @ts-expect-error a cart is a list of item names
    c.var.session.set('cart', 1);
    return c.text('ok');
  });

  // A session typed other than SessionData, through the app's Env.
  interface Counter {
    visits: number;
  }
  const counted = new Hono<SessionEnv<Counter>>();
  counted.use(honoSession(createSessions<Counter>()));
  counted.get('/', (c) => {
    expectTypeOf(c.get('session').get('visits')).toEqualTypeOf<number | undefined>();
    return c.text('ok');
  });
}

function webTypes() {
  return webSessions(sessions, (request, session, env: { greeting: string }) => {
    expectTypeOf(request).toEqualTypeOf<Request>();
    expectTypeOf(session.get('cart')).toEqualTypeOf<string[] | undefined>();
    // @ts-expect-error a cart is a list of item names
    session.set('cart', 1);
    return new Response(env.greeting);
  });
}
expectTypeOf(webTypes()).toEqualTypeOf<
  (request: Request, env: { greeting: string }) => Promise<Response>
>();

describe('typed session data', () => {
  it('is checked on every adapter by the type checker', () => {
    for (const check of [nodeTypes, expressTypes, fastifyTypes, honoTypes, webTypes]) {
      expectTypeOf(check).toBeFunction();
    }
  });
});
