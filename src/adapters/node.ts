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
  // Not an async function: one costs every request a promise, its own frame
  // and a job for each await, even when the store answered at once and the
  // handler returned nothing to wait for (bench/RESULTS.md run 10). What an
  // async function would reject with (a logger that throws inside sendError)
  // still rejects the returned promise: nothing escapes as a synchronous throw.
  return (req, res) => {
    try {
      let loading: Session<D> | Promise<Session<D>>;
      try {
        loading = loadNow(sessions, incoming(req), options);
      } catch (err) {
        sendError(sessions, res, err);
        return DONE;
      }
      if (!(loading instanceof Promise)) return serve(sessions, handler, req, res, loading);
      return loading.then(
        (session) => {
          const serving = serve(sessions, handler, req, res, session);
          // Adopting a promise costs jobs: only one with something left to wait for is returned.
          return serving === DONE ? undefined : serving;
        },
        (err) => sendError(sessions, res, err),
      );
    } catch (err) {
      return Promise.reject(err);
    }
  };
}

/** Settled at once and shared: what the listener returns when nothing was left to wait for. */
const DONE: Promise<void> = Promise.resolve();

/** Runs the handler with the session, holding the response for the commit. */
function serve<D extends object>(
  sessions: Sessions<D>,
  handler: SessionHandler<D>,
  req: IncomingMessage,
  res: ServerResponse,
  session: Session<D>,
): Promise<void> {
  (req as SessionRequest<D>).session = session;
  const response = commitBeforeResponse(sessions, session, res);
  let waiting: Promise<unknown> | undefined;
  try {
    const handled = handler(req as SessionRequest<D>, res);
    // Inside the try: reading `then` (or a promise's constructor) can throw too.
    if (isPromiseLike(handled)) waiting = Promise.resolve(handled);
  } catch (err) {
    failed(sessions, res, err, response);
    return DONE;
  }
  if (waiting === undefined) {
    response.settled();
    return DONE;
  }
  return waiting.then(
    () => response.settled(),
    (err) => failed(sessions, res, err, response),
  );
}

/** The handler threw: answered as a 500; the commit that follows saves nothing and releases the lock. */
function failed(
  sessions: Sessions<any>,
  res: ServerResponse,
  err: unknown,
  response: { settled(): void },
): void {
  try {
    sendError(sessions, res, err);
  } finally {
    response.settled();
  }
}
