/**
 * The express-session site being moved away from: a real express +
 * express-session app whose cookies and records the importer tests read.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import session, { type Store } from 'express-session';

export const OLD_SECRET = 'keyboard cat';
export const DAY = 86_400_000;

/** express-session's req.session (satchel's Express adapter types `req.session` as its own). */
type LegacySession = session.Session & { user?: string; cart?: string[] };
const legacySession = (req: unknown) => (req as { session: LegacySession }).session;

/**
 * Starts the legacy app on a free port: /login (and /shop/login) store a user
 * and a cart, /logout destroys the session. `options` go to express-session.
 */
export async function legacyExpress(store: Store, options: Partial<session.SessionOptions> = {}) {
  const app = express();
  app.use(
    session({
      secret: OLD_SECRET,
      store,
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: DAY },
      ...options,
    }),
  );
  app.get(['/login', '/shop/login'], (req, res) => {
    legacySession(req).user = 'alice';
    legacySession(req).cart = ['apple', 'pear'];
    res.send('ok');
  });
  app.get('/logout', (req, res) => {
    legacySession(req).destroy(() => res.send('bye'));
  });
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    /** Logs in (at `path`) and returns the Cookie header a browser would send next. */
    async login(path = '/login'): Promise<string> {
      const res = await fetch(`${base}${path}`);
      await res.text();
      const setCookie = res.headers.getSetCookie()[0];
      if (setCookie === undefined) throw new Error(`express-session set no cookie (${res.status})`);
      return setCookie.split(';')[0]!;
    },
    async logout(cookie: string): Promise<void> {
      await (await fetch(`${base}/logout`, { headers: { cookie } })).text();
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
