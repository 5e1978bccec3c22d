import { channels } from './diagnostics.js';
import type { CommitResult, IncomingRequest, LoadOptions, Sessions } from './manager.js';
import type { Session } from './session.js';

export const IMMEDIATE = Symbol('satchel.immediate');

/**
 * What adapters call instead of `load` and `commit`: the same, with no
 * promise when none is needed; `of` is the object whose `load` and
 * `commit` these stand for.
 */
export interface Immediately<D extends object> {
  [IMMEDIATE]: {
    of: Pick<Sessions<D>, 'load' | 'commit'>;
    load(request: IncomingRequest, options?: LoadOptions): Session<D> | Promise<Session<D>>;
    commit(session: Session<D>, status: number): CommitResult | Promise<CommitResult>;
  };
}

/** The immediate forms, while `sessions.load` and `.commit` are still satchel's own (not wrapped or replaced). */
function immediate<D extends object>(
  sessions: Sessions<D>,
): Immediately<D>[typeof IMMEDIATE] | undefined {
  const now = (sessions as Partial<Immediately<D>>)[IMMEDIATE];
  return now !== undefined && sessions.load === now.of.load && sessions.commit === now.of.commit
    ? now
    : undefined;
}

/**
 * For adapters: `sessions.load`, or the session itself when the store had it
 * at once (`SessionStore.sync`), which spares the adapter an await. It may
 * throw what `load` would reject with.
 */
export function loadNow<D extends object>(
  sessions: Sessions<D>,
  request: IncomingRequest,
  options?: LoadOptions,
): Session<D> | Promise<Session<D>> {
  const now = immediate(sessions);
  return now === undefined || channels.load.hasSubscribers
    ? promised(() => sessions.load(request, options))
    : now.load(request, options);
}

/**
 * For adapters: `sessions.commit`, or its result when nothing had to be
 * awaited. Never throws: a failure is a rejected promise.
 */
export function commitNow<D extends object>(
  sessions: Sessions<D>,
  session: Session<D>,
  status: number,
): CommitResult | Promise<CommitResult> {
  const now = immediate(sessions);
  return now === undefined || channels.commit.hasSubscribers
    ? promised(() => sessions.commit(session, status))
    : now.commit(session, status);
}

/**
 * What a `load` or `commit` the app wrapped gives, as a native promise: the
 * adapters tell a result from a promise with `instanceof Promise`, and a
 * wrapper may answer with another thenable, or throw.
 */
function promised<T>(call: () => T | PromiseLike<T>): Promise<T> {
  try {
    return Promise.resolve(call());
  } catch (err) {
    return Promise.reject(err);
  }
}
