import type { MiddlewareHandler } from 'hono';
import { SatchelError } from '../errors.js';
import type { CommitResult, IncomingRequest, LoadOptions, Sessions } from '../manager.js';
import type { Session, SessionData } from '../session.js';
import { applyCommitHeaders, type NodeHeaders, nodeHeaderTarget } from './headers.js';
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
      loaded = await sessions.load(fromRequest(c.req.raw, nodeHeader(c.env)), options);
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
      commit = await sessions.commit(loaded, c.res.status);
    } catch (err) {
      if (!SatchelError.is(err)) throw err;
      c.res.body?.cancel().catch(() => {});
      replace(c, errorResponse(sessions, err));
      return;
    }
    if (commit.headers.length === 0) return;
    const outgoing = nodeOutgoing(c.env);
    if (outgoing && !overlaps(c.res))
      applyCommitHeaders(commit.headers, nodeHeaderTarget(outgoing));
    else replace(c, withCommitHeaders(c.res, commit.headers));
  };
}

/**
 * Reads request headers from @hono/node-server's `env.incoming` when the app
 * runs on it: asking its Request for one header builds a Headers object of all of them.
 */
function nodeHeader(env: unknown): IncomingRequest['header'] | undefined {
  const headers = (env as { incoming?: { headers?: unknown } } | undefined)?.incoming?.headers;
  if (typeof headers !== 'object' || headers === null) return undefined;
  return (name) => {
    const value = (headers as Record<string, string | string[] | undefined>)[name];
    return Array.isArray(value) ? value.join(', ') : value;
  };
}

/**
 * The node:http response @hono/node-server will write this Response to
 * (its `env.outgoing`), while nothing has been sent. Headers set there are
 * merged by Node with the Response's own, which is left untouched: no copy
 * of it (a copy reads its body as a stream, several times the cost of the
 * request) and no change to it (a route may return one shared Response to
 * every visitor).
 */
function nodeOutgoing(env: unknown): NodeHeaders | undefined {
  const outgoing = (env as { outgoing?: Partial<NodeHeaders> & { headersSent?: unknown } })
    ?.outgoing;
  if (typeof outgoing?.setHeader !== 'function' || typeof outgoing.getHeader !== 'function') {
    return undefined;
  }
  return outgoing.headersSent === false ? (outgoing as NodeHeaders) : undefined;
}

/** Headers Node would replace rather than merge (writeHead's own win), or a status a copy must not touch. */
function overlaps(response: Response): boolean {
  if (response.status < 200) return true;
  const headers = response.headers;
  return headers.has('set-cookie') || headers.has('vary') || headers.has('cache-control');
}

/** Assigning c.res merges the old response's headers into the new one; clearing it first does not. */
function replace(c: { res: Response | undefined }, response: Response): void {
  c.res = undefined;
  c.res = response;
}
