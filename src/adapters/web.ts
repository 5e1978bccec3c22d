import type { CommitResult, IncomingRequest, LoadOptions, Sessions } from '../manager.js';
import { commitNow, loadNow } from '../immediate.js';
import type { Session, SessionData } from '../session.js';
import { errorReply } from './errors.js';
import { applyCommitHeaders, webHeaderTarget } from './headers.js';
import { lightweightCopy } from './lightweight.js';

/**
 * A Web-standard `Request` as the manager sees it; `header` may read the
 * headers from elsewhere. Plain data properties: an object literal with a
 * getter is built anew on every request, at several times the cost (a Hono
 * cart request: 236.7k -> 216k-219k instructions, bench/RESULTS.md run 9).
 */
export function fromRequest(
  request: Request,
  header: IncomingRequest['header'] = (name) => request.headers.get(name) ?? undefined,
): IncomingRequest {
  const href = request.url;
  return { header, encrypted: href.startsWith('https:'), url: requestTarget(href) };
}

/**
 * The path and query of an absolute URL as `Request.url` serializes it:
 * for http(s), the text from the first slash after the host to the fragment
 * (the serializer has already normalized it, and a host or an encoded
 * userinfo holds no slash), as `pathname + search` gives it; any other
 * scheme goes through the URL parser.
 */
function requestTarget(href: string): string {
  const after = href.startsWith('https://') ? 8 : href.startsWith('http://') ? 7 : -1;
  const slash = after === -1 ? -1 : href.indexOf('/', after);
  if (slash === -1) {
    const url = new URL(href);
    return url.pathname + url.search;
  }
  const hash = href.indexOf('#', slash);
  const target = hash === -1 ? href.slice(slash) : href.slice(slash, hash);
  // An empty query ("/a?") has an empty `search`; "/a?b=?" keeps its last "?".
  return target.indexOf('?') === target.length - 1 ? target.slice(0, -1) : target;
}

/**
 * A copy of `response` carrying the commit's headers: each Set-Cookie
 * appended, Vary merged, the others replaced. A copy, as a response's headers
 * may be immutable (`Response.redirect`, `fetch`) or the response a shared
 * constant that must not collect one visitor's cookie for the next.
 */
export function withCommitHeaders(response: Response, headers: CommitResult['headers']): Response {
  if (headers.length === 0) return response;
  // A 101 (WebSocket upgrade) cannot be constructed, so it is amended in place.
  if (response.status < 200) {
    applyCommitHeaders(headers, webHeaderTarget(response.headers));
    return response;
  }
  // Constructed with a Response as init, a Response copies its status,
  // statusText and headers; the copy's headers are its own and mutable.
  const light = lightweightCopy(response, headers);
  if (light) return light;
  const copy = new Response(response.body, response);
  applyCommitHeaders(headers, webHeaderTarget(copy.headers));
  return copy;
}

/** A failed request's answer as a Web Response (see errorReply); the details are logged. */
export function errorResponse(sessions: Sessions<any>, err: unknown): Response {
  const { status, headers, body } = errorReply(sessions, err);
  return new Response(body, { status, headers });
}

export type WebHandler<D extends object, A extends unknown[]> = (
  request: Request,
  session: Session<D>,
  ...rest: A
) => Response | Promise<Response>;

/**
 * Wraps a fetch-style handler (Deno, Bun, Cloudflare Workers, Node with a
 * fetch adapter) so it gets the visitor's session; the session is committed
 * before the response is returned, so a redirect never races the save. A
 * store outage answers 503, a handler that throws 500 (logged, nothing saved).
 * Arguments after the request (`env`, `ctx`, `info`, ...) are passed through.
 *
 * ```ts
 * export default { fetch: withSessions(sessions, (request, session) => new Response('hi')) };
 * ```
 */
export function withSessions<D extends object = SessionData, A extends unknown[] = []>(
  sessions: Sessions<D>,
  handler: WebHandler<D, A>,
  options?: LoadOptions,
): (request: Request, ...rest: A) => Promise<Response> {
  return async (request, ...rest) => {
    let session: Session<D>;
    try {
      const loading = loadNow(sessions, fromRequest(request), options);
      session = loading instanceof Promise ? await loading : loading;
    } catch (err) {
      return errorResponse(sessions, err);
    }
    let response: Response;
    try {
      response = await handler(request, session, ...rest);
    } catch (err) {
      // Nothing is saved; a lock that cannot be released expires after lockTtl.
      await sessions.abandon(session).catch(() => {});
      return errorResponse(sessions, err);
    }
    let commit: CommitResult;
    try {
      const committing = commitNow(sessions, session, response.status);
      commit = committing instanceof Promise ? await committing : committing;
    } catch (err) {
      // The handler's answer is replaced; its body is never read.
      response.body?.cancel().catch(() => {});
      return errorResponse(sessions, err);
    }
    return withCommitHeaders(response, commit.headers);
  };
}
