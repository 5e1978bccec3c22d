import { SatchelError } from '../errors.js';
import type { Sessions } from '../manager.js';

/** The headers of an error reply, besides its length. */
export const ERROR_HEADERS = {
  'content-type': 'text/plain; charset=utf-8',
  'cache-control': 'no-store',
} as const;

/** A plain-text answer to a failed request, the same on every adapter. */
export interface ErrorReply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * The one answer to a request that failed: a satchel error answers with its
 * status and a public message (503 for an outage, 400 for a session ended
 * meanwhile), anything else with a plain 500. The details are logged here,
 * once, and never shown to the client.
 */
export function errorReply(sessions: Sessions<any>, err: unknown): ErrorReply {
  let status = 500;
  let body = 'Internal Server Error\n';
  if (SatchelError.is(err)) {
    status = err.status;
    body = `${err.publicMessage}\n`;
    sessions.logger.error(err.message, {
      code: err.code,
      status: err.status,
      cause: String(err.cause ?? ''),
    });
  } else {
    sessions.logger.error('[satchel] request handler failed', { error: err });
  }
  return { status, headers: { ...ERROR_HEADERS }, body };
}
