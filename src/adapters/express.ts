import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { LoadOptions, Sessions } from '../manager.js';
import { loadNow } from '../immediate.js';
import type { Session, SessionData } from '../session.js';
import { commitBeforeResponse, handleSessionError, incoming } from './http.js';

declare global {
  namespace Express {
    interface Request {
      /** The visitor's session, typed by your `SessionData` declaration. */
      session: Session<SessionData>;
    }
  }
}

/**
 * Express 5 middleware: `req.session` for every later handler, committed
 * before the response leaves (redirects included). A store outage answers 503
 * with a plain message; other errors go to `next(err)`.
 *
 * ```ts
 * app.use(session(sessions));
 * ```
 */
export function session(sessions: Sessions<SessionData>, options?: LoadOptions): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    let loading: Session<SessionData> | Promise<Session<SessionData>>;
    try {
      loading = loadNow(sessions, incoming(req), options);
    } catch (err) {
      return handleSessionError(sessions, res, err, next);
    }
    // Loaded at once (a synchronous store): the next handler runs now, not a promise job later.
    if (loading instanceof Promise) {
      loading.then(
        (loaded) => begin(sessions, loaded, req, res, next),
        (err) => handleSessionError(sessions, res, err, next),
      );
    } else begin(sessions, loading, req, res, next);
  };
}

/** Gives the request its session, holds the response for the commit, and goes on. */
function begin(
  sessions: Sessions<SessionData>,
  loaded: Session<SessionData>,
  req: Request,
  res: Response,
  next: NextFunction,
): void {
  req.session = loaded;
  commitBeforeResponse(sessions, loaded, res, next);
  next();
}
