import diagnostics from 'node:diagnostics_channel';

/**
 * What satchel publishes on Node's `diagnostics_channel`, for tracing and
 * metrics (OpenTelemetry, Prometheus; see the README's "Observability").
 * Nothing is built or measured while nobody subscribes.
 *
 * - `satchel:load`, `satchel:commit`: tracing channels (start, end,
 *   asyncStart, asyncEnd, error) around `sessions.load` and `sessions.commit`.
 * - `satchel:conflict`: one message per compare-and-set retry.
 * - `satchel:store`: one message per store call, with its duration.
 *
 * Messages name the store and carry opaque handles (store keys), never a
 * session ID or session data.
 */
export interface LoadMessage {
  store: string;
  /** Set once the load has finished: whether a stored session was found. */
  found?: boolean;
}

export interface CommitMessage {
  store: string;
  /** The response status the commit saw (a 5xx saves nothing but deletions); absent for `session.save()`. */
  status?: number;
  /** Compare-and-set retries the commit needed (0 without conflict); set when it ends. */
  retries?: number;
}

export interface ConflictMessage {
  store: string;
  /** The session's handle (its store key). */
  handle: string;
  /** 1 for the first retry. */
  attempt: number;
}

export interface StoreCallMessage {
  store: string;
  /** `get`, `create`, `update`, `touch`, `destroy`, `lock`, … */
  operation: string;
  durationMs: number;
  /** False when the call failed (StoreUnavailableError). */
  ok: boolean;
}

export const channels = {
  load: diagnostics.tracingChannel<unknown, LoadMessage>('satchel:load'),
  commit: diagnostics.tracingChannel<unknown, CommitMessage>('satchel:commit'),
  conflict: diagnostics.channel('satchel:conflict'),
  store: diagnostics.channel('satchel:store'),
};

/** Runs `fn` inside a tracing channel when someone listens; as it is otherwise. */
export function traced<T, M extends object>(
  channel: diagnostics.TracingChannel<unknown, M>,
  message: () => M,
  fn: (message: M | undefined) => Promise<T>,
): Promise<T> {
  if (!channel.hasSubscribers) return fn(undefined);
  const context = message();
  return channel.tracePromise(() => fn(context), context);
}
