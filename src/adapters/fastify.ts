import type { FastifyInstance, FastifyPluginAsync, FastifyReply } from 'fastify';
import { SatchelError } from '../errors.js';
import type { CommitResult, LoadOptions, Sessions } from '../manager.js';
import { commitNow, loadNow } from '../immediate.js';
import type { Session, SessionData } from '../session.js';
import { errorReply } from './errors.js';
import { applyCommitHeaders } from './headers.js';
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
const pending = new WeakMap<object, { session: Session<SessionData>; open: boolean }>();

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

  fastify.addHook('onRequest', async (request, reply) => {
    let session: Session<SessionData>;
    try {
      const loading = loadNow(sessions, incoming(request.raw), loadOptions);
      session = loading instanceof Promise ? await loading : loading;
    } catch (err) {
      if (!SatchelError.is(err)) throw err;
      return reply.send(sendError(sessions, reply, err));
    }
    request.session = session;
    const state = { session, open: true };
    pending.set(request, state);
    // A reply that never reaches onSend (client gone, hijacked): release the lock, save nothing.
    const abandon = () => {
      if (!state.open) return;
      state.open = false;
      sessions.abandon(session).catch(() => {});
    };
    reply.raw.once('close', abandon);
    if (reply.raw.closed) abandon();
  });

  fastify.addHook('onSend', async (request, reply, payload) => {
    const state = pending.get(request);
    if (!state?.open) return payload;
    state.open = false;
    // A returned web Response sets its status and headers after onSend; read and extend it instead.
    const response = isResponse(payload) ? payload : undefined;
    let commit: CommitResult;
    try {
      const committing = commitNow(sessions, state.session, response?.status ?? reply.statusCode);
      commit = committing instanceof Promise ? await committing : committing;
    } catch (err) {
      if (!SatchelError.is(err)) throw err;
      if (response) response.body?.cancel().catch(() => {});
      else (payload as { destroy?: () => void } | null)?.destroy?.();
      return sendError(sessions, reply, err);
    }
    if (response) return withCommitHeaders(response, commit.headers);
    applyCommitHeaders(commit.headers, {
      get(name) {
        const value = reply.getHeader(name);
        return value === undefined ? undefined : String(value);
      },
      set: (name, value) => void reply.header(name, value),
      // Fastify appends set-cookie values given one by one.
      append: (name, value) => void reply.header(name, value),
    });
    return payload;
  });
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
