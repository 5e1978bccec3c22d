import { type IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { SatchelError } from '../errors.js';
import type { CommitResult, IncomingRequest, Sessions } from '../manager.js';
import { commitNow } from '../immediate.js';
import type { Session } from '../session.js';
import { errorReply } from './errors.js';
import { applyCommitHeaders, nodeHeaderTarget } from './headers.js';
import { type Holder, hold, isGone, isWriteHead } from './hold.js';

/** node:http requests (Express's too) as the manager sees them. */
export function incoming(req: IncomingMessage): IncomingRequest {
  return {
    header(name) {
      const value = req.headers[name];
      return Array.isArray(value) ? value.join(', ') : value;
    },
    encrypted: Boolean((req.socket as TLSSocket).encrypted),
    url: req.url,
  };
}

/** Answers a failed request (see errorReply), or cuts the connection if the answer has begun. */
export function sendError(sessions: Sessions<any>, res: ServerResponse, err: unknown): void {
  const reply = errorReply(sessions, err);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  res.writeHead(reply.status, {
    ...reply.headers,
    'content-length': Buffer.byteLength(reply.body),
  });
  res.end(reply.body);
}

/**
 * Holds the response until the session is committed, so its Set-Cookie is
 * sent and the store written before the client sees anything — a redirect
 * never races the save. The first writeHead, write or end starts the commit;
 * calls made meanwhile are queued and replayed in order (see hold.ts).
 * `otherwise` gets errors that are not satchel's (default: answered as a 500).
 */
export function commitBeforeResponse<D extends object>(
  sessions: Sessions<D>,
  session: Session<D>,
  res: ServerResponse,
  otherwise?: (err: unknown) => void,
): { settled(): void } {
  const held = new HeldCommit(sessions, session, res, otherwise);
  // A client that goes away before the response (the response is destroyed):
  // nothing is saved, but the lock is kept until the handler answers (or
  // settles), so the next request of the session cannot run alongside it.
  // lockTtl is the backstop.
  hold(res, held);
  return held;
}

/**
 * One held response and its commit: one object a response, where the inline
 * version built six closures and two objects (no change measurable by
 * instructions, bench/RESULTS.md run 9; fewer objects for the collector).
 */
class HeldCommit<D extends object> implements Holder {
  state: Holder['state'] = 'open';
  readonly queue: Holder['queue'] = [];
  replayed: Holder['replayed'] = undefined;

  constructor(
    readonly sessions: Sessions<D>,
    readonly session: Session<D>,
    readonly res: ServerResponse,
    readonly otherwise: ((err: unknown) => void) | undefined,
  ) {}

  start(status: number | undefined): void {
    // Done at once (a synchronous store): the held call is replayed from inside itself.
    const commit = commitNow(this.sessions, this.session, status ?? this.res.statusCode);
    // A replayed call that throws (an invalid header the app gave writeHead) throws to the
    // handler when the commit was done at once; later, it goes where the handler's errors go.
    if (commit instanceof Promise) {
      commit
        .then(
          (done) => this.#send(done),
          (err) => this.#fail(err),
        )
        .catch((err) => this.#otherwise(err));
    } else this.#send(commit);
  }

  /** Nothing is saved for a client that left; the lock is released only now, as the handler is done. */
  giveUp(): void {
    this.state = 'done';
    this.sessions.abandon(this.session).catch(() => {});
  }

  /** The handler has settled: if its client left and it never answered, release now. */
  settled(): void {
    if (isGone(this.res) && this.state === 'open') this.giveUp();
  }

  #send({ headers }: CommitResult): void {
    const { res, queue } = this;
    this.state = 'done';
    const [first] = queue;
    if (!first || !isWriteHead(first[0]) || !joinedWriteHead(res, first[1], headers)) {
      // Headers given to writeHead() are set first, so the commit's merge with them.
      for (const [fn, args] of queue) if (isWriteHead(fn)) hoistHeaders(res, args);
      applyCommitHeaders(headers, nodeHeaderTarget(res));
    }
    let answer: unknown;
    for (const [fn, args] of queue) answer = fn.apply(res, args);
    this.replayed = { answer };
  }

  #fail(err: unknown): void {
    this.state = 'done';
    handleSessionError(this.sessions, this.res, err, (other) => this.#otherwise(other));
  }

  #otherwise(err: unknown): void {
    if (this.otherwise) this.otherwise(err);
    else sendError(this.sessions, this.res, err);
  }
}

/**
 * The quick way for a held `writeHead(status, [message], {headers})` on a
 * node:http response with no header set yet: the commit's headers join the
 * argument as one raw list, which Node writes as it is, with no setHeader
 * call. False, changing nothing, when a name is in both (the commit's
 * Set-Cookie appends, its Vary and Cache-Control merge: `hoistHeaders` and
 * `applyCommitHeaders` do that).
 */
function joinedWriteHead(
  res: ServerResponse,
  args: unknown[],
  commit: readonly [string, string][],
): boolean {
  const last = args.length - 1;
  const given = args[last];
  if (last < 1 || typeof given !== 'object' || given === null || Array.isArray(given)) {
    return false;
  }
  if (!(res instanceof ServerResponse) || res.getHeaderNames().length > 0) return false;
  const raw: unknown[] = [];
  for (const name in given) {
    if (!Object.hasOwn(given, name)) continue;
    const value = (given as Record<string, unknown>)[name];
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    for (const [taken] of commit) if (taken === lower) return false;
    raw.push(name, value);
  }
  for (const [name, value] of commit) raw.push(name, value);
  args[last] = raw;
  return true;
}

/** Moves the headers argument of a held writeHead(status, [message], headers) call onto the response. */
function hoistHeaders(res: ServerResponse, args: unknown[]): void {
  const last = args.length - 1;
  const headers = args[last];
  if (last < 1 || typeof headers !== 'object' || headers === null) return;
  if (Array.isArray(headers)) {
    // The raw form: [name, value, name, value, ...] or [[name, value], ...].
    const pairs = Array.isArray(headers[0])
      ? (headers as [string, string][])
      : headers.flatMap((_, i) =>
          i % 2 === 0 ? [[headers[i], headers[i + 1]] as [string, string]] : [],
        );
    for (const [name, value] of pairs) res.appendHeader(String(name), value);
  } else {
    for (const name in headers) {
      if (!Object.hasOwn(headers, name)) continue;
      const value = (headers as Record<string, string | string[] | undefined>)[name];
      if (value !== undefined) res.setHeader(name, value);
    }
  }
  args.splice(last, 1);
}

/** A handler's result worth awaiting (a promise, any thenable); awaiting anything else only costs a promise job. */
export function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null | undefined)?.then === 'function';
}

/** An error thrown by satchel becomes its status; anything else is not ours to answer. */
export function handleSessionError(
  sessions: Sessions<any>,
  res: ServerResponse,
  err: unknown,
  otherwise: (err: unknown) => void,
): void {
  if (SatchelError.is(err)) sendError(sessions, res, err);
  else otherwise(err);
}
