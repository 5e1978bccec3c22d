import type { FastifyInstance, FastifyPluginAsync, FastifyReply } from 'fastify';
import { SatchelError } from '../errors.js';
import type { CommitResult, LoadOptions, Sessions } from '../manager.js';
import { commitNow, loadNow } from '../immediate.js';
import type { Session, SessionData } from '../session.js';
import { errorReply } from './errors.js';
import { applyCommitHeaders, type HeaderTarget } from './headers.js';
import { incoming } from './http.js';
import { withCommitHeaders } from './web.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The visitor's session, typed by your `SessionData` declaration. */
    session: Session<SessionData>;
  }
}

export interface SessionPluginOptions extends LoadOptions {
  sessions: Sessions<SessionData>;
}

/** Per request: the loaded session and whether its commit has started. */
interface Pending {
  session: Session<SessionData>;
  open: boolean;
}

/**
 * Where a request keeps its Pending: a request decorator (declared on every
 * request, so their shape never changes), cheaper than a WeakMap's set and get.
 */
const PENDING = Symbol('satchel pending commit');
const pendingOf = (request: object) => request as unknown as Record<typeof PENDING, Pending | null>;

function sendError(sessions: Sessions<any>, reply: FastifyReply, err: SatchelError): string {
  const { status, headers, body } = errorReply(sessions, err);
  for (const name of Object.keys(reply.getHeaders())) reply.removeHeader(name);
  reply.code(status).headers(headers);
  return body;
}

const isResponse = (payload: unknown): payload is Response =>
  Object.prototype.toString.call(payload) === '[object Response]';

async function satchelSession(
  fastify: FastifyInstance,
  { sessions, ...loadOptions }: SessionPluginOptions,
): Promise<void> {
  fastify.decorateRequest('session', null as unknown as Session<SessionData>);
  fastify.decorateRequest(PENDING, null);

  // Callback-style hooks, not async ones: with a store that answers at once,
  // Fastify goes on in the same call instead of a promise job later.
  fastify.addHook('onRequest', (request, reply, done) => {
    const start = (session: Session<SessionData>) => {
      request.session = session;
      const state: Pending = { session, open: true };
      pendingOf(request)[PENDING] = state;
      // A reply that never reaches onSend (client gone, hijacked): release the lock, save nothing.
      // 'close' comes once per response: `on` spares the wrapper `once` builds.
      const abandon = () => {
        if (!state.open) return;
        state.open = false;
        sessions.abandon(session).catch(() => {});
      };
      reply.raw.on('close', abandon);
      if (reply.raw.closed) abandon();
      done();
    };
    const fail = (err: unknown) => {
      if (!SatchelError.is(err)) return done(asError(err));
      reply.send(sendError(sessions, reply, err));
    };
    let loading: Session<SessionData> | Promise<Session<SessionData>>;
    try {
      loading = loadNow(sessions, incoming(request.raw), loadOptions);
    } catch (err) {
      return fail(err);
    }
    if (loading instanceof Promise) {
      // start or fail threw before going on (what follows done() is Fastify's to catch).
      loading.then(start, fail).catch((err) => {
        if (pendingOf(request)[PENDING] === null) done(asError(err));
      });
    } else start(loading);
  });

  fastify.addHook('onSend', (request, reply, payload, done) => {
    const state = pendingOf(request)[PENDING];
    if (!state?.open) return done(null, payload);
    state.open = false;
    // A returned web Response sets its status and headers after onSend; read and extend it instead.
    const response = isResponse(payload) ? payload : undefined;
    const finish = ({ headers }: CommitResult) => {
      if (response) return done(null, withCommitHeaders(response, headers));
      applyCommitHeaders(headers, new ReplyHeaders(reply));
      done(null, payload);
    };
    const fail = (err: unknown) => {
      if (!SatchelError.is(err)) return done(asError(err));
      if (response) response.body?.cancel().catch(() => {});
      else (payload as { destroy?: () => void } | null)?.destroy?.();
      done(null, sendError(sessions, reply, err));
    };
    let committing: CommitResult | Promise<CommitResult>;
    try {
      committing = commitNow(sessions, state.session, response?.status ?? reply.statusCode);
    } catch (err) {
      return fail(err);
    }
    if (committing instanceof Promise) {
      committing.then(finish, fail).catch((err) => done(asError(err)));
    } else finish(committing);
  });
}

/**
 * A rejection's reason as Fastify's `done` needs it: `done(undefined)` means
 * success, so an empty reason becomes an Error (async hooks got Fastify's own
 * FST_ERR_SEND_UNDEFINED_ERR for it), never a response sent as if saved.
 */
function asError(err: unknown): Error {
  return err
    ? (err as Error)
    : new Error('satchel: a session load or commit failed with no reason');
}

/** A Fastify reply as a commit's header target; Fastify appends set-cookie values given one by one. */
class ReplyHeaders implements HeaderTarget {
  constructor(readonly reply: FastifyReply) {}

  get(name: string): string | undefined {
    const value = this.reply.getHeader(name);
    return value === undefined ? undefined : String(value);
  }

  set(name: string, value: string): void {
    this.reply.header(name, value);
  }

  append(name: string, value: string): void {
    this.reply.header(name, value);
  }
}

/**
 * Fastify 5 plugin: `request.session` in every route, committed in an
 * `onSend` hook, before the headers leave (redirects included). What is saved
 * depends on the final status, as in Django: a 5xx saves nothing. A store
 * outage answers 503 with a plain message.
 *
 * ```ts
 * await app.register(sessionPlugin, { sessions });
 * ```
 *
 * It applies to the whole app, not only to the context it is registered in,
 * as if wrapped by fastify-plugin (without depending on it).
 */
export const sessionPlugin = Object.assign(satchelSession, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'satchel',
  [Symbol.for('plugin-meta')]: { name: 'satchel', fastify: '5.x' },
}) as FastifyPluginAsync<SessionPluginOptions>;
