import type { MiddlewareHandler } from 'hono';
import { SatchelError } from '../errors.js';
import type { CommitResult, IncomingRequest, LoadOptions, Sessions } from '../manager.js';
import { commitNow, loadNow } from '../immediate.js';
import type { Session, SessionData } from '../session.js';
import { keepsIncoming } from './bridge.js';
import { errorResponse, fromRequest, withCommitHeaders } from './web.js';

declare module 'hono' {
  interface ContextVariableMap {
    /** The visitor's session, typed by your `SessionData` declaration. */
    session: Session<SessionData>;
  }
}

/** The Hono `Env` of an app or route using the middleware, for a session typed other than `SessionData`. */
export interface SessionEnv<D extends object = SessionData> {
  Variables: { session: Session<D> };
}

/**
 * Hono 4 middleware: `c.get('session')` (or `c.var.session`) for every later
 * handler, committed before the response is returned, redirects included.
 * What is saved depends on the final status, as in Django: a 5xx (a thrown
 * error included) saves nothing. A store outage answers 503 with a plain message.
 *
 * ```ts
 * app.use(session(sessions));
 * ```
 */
export function session<D extends object = SessionData>(
  sessions: Sessions<D>,
  options?: LoadOptions,
): MiddlewareHandler<SessionEnv<D>> {
  return async (c, next) => {
    let loaded: Session<D>;
    try {
      const request = fromRequest(c.req.raw, nodeHeader(c.req.raw, c.env));
      const loading = loadNow(sessions, request, options);
      loaded = loading instanceof Promise ? await loading : loading;
    } catch (err) {
      if (SatchelError.is(err)) return errorResponse(sessions, err);
      throw err;
    }
    c.set('session', loaded);
    try {
      // Hono turns a thrown Error into c.res through onError; only other throws get here.
      await next();
    } catch (err) {
      await sessions.abandon(loaded).catch(() => {});
      throw err;
    }
    let commit: CommitResult;
    try {
      const committing = commitNow(sessions, loaded, c.res.status);
      commit = committing instanceof Promise ? await committing : committing;
    } catch (err) {
      if (!SatchelError.is(err)) throw err;
      c.res.body?.cancel().catch(() => {});
      replace(c, errorResponse(sessions, err));
      return;
    }
    if (commit.headers.length > 0) replace(c, withCommitHeaders(c.res, commit.headers));
  };
}

/**
 * On @hono/node-server, request headers are read from the node:http request
 * (`env.incoming`): asking the bridge's Request for one header builds a
 * Headers object of all of them. Only when `request` is the one the bridge
 * built from that very request (it keeps it under a symbol): an `env` passed
 * on to `app.request()` or `app.fetch()` inside a handler belongs to the
 * visitor, not to the inner request.
 */
function nodeHeader(request: Request, env: unknown): IncomingRequest['header'] | undefined {
  const incoming = (env as { incoming?: { headers?: unknown } } | undefined)?.incoming;
  const headers = incoming?.headers;
  if (typeof headers !== 'object' || headers === null) return undefined;
  if (!keepsIncoming(request, incoming)) return undefined;
  return (name) => {
    const value = (headers as Record<string, string | string[] | undefined>)[name];
    return Array.isArray(value) ? value.join(', ') : value;
  };
}

/** Assigning c.res merges the old response's headers into the new one; clearing it first does not. */
function replace(c: { res: Response | undefined }, response: Response): void {
  c.res = undefined;
  c.res = response;
}
