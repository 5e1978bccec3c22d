import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LoadOptions, Sessions } from '../manager.js';
import { loadNow } from '../immediate.js';
import type { Session, SessionData } from '../session.js';
import { commitBeforeResponse, incoming, isPromiseLike, sendError } from './http.js';

export type SessionRequest<D extends object = SessionData> = IncomingMessage & {
  session: Session<D>;
};

export type SessionHandler<D extends object = SessionData> = (
  req: SessionRequest<D>,
  res: ServerResponse,
) => unknown;

/**
 * Wraps a `node:http` request listener so `req.session` is loaded before it
 * runs and committed before the response leaves. A store outage answers 503.
 *
 * ```ts
 * http.createServer(withSessions(sessions, (req, res) => { req.session.set('seen', true); res.end('ok') }))
 * ```
 */
export function withSessions<D extends object = SessionData>(
  sessions: Sessions<D>,
  handler: SessionHandler<D>,
  options?: LoadOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (req, res) => {
    let session: Session<D>;
    try {
      const loading = loadNow(sessions, incoming(req), options);
      session = loading instanceof Promise ? await loading : loading;
    } catch (err) {
      sendError(sessions, res, err);
      return;
    }
    (req as SessionRequest<D>).session = session;
    const response = commitBeforeResponse(sessions, session, res);
    try {
      const handled = handler(req as SessionRequest<D>, res);
      if (isPromiseLike(handled)) await handled;
    } catch (err) {
      // Answered as a 500: the commit that follows saves nothing and releases the lock.
      sendError(sessions, res, err);
    } finally {
      response.settled();
    }
  };
}
