import type { CommitMessage } from './diagnostics.js';
import type { ExpiryPolicy } from './expiry.js';
import type { CommitResult } from './manager.js';
import type { Persistence } from './persistence/types.js';
import { responseHeaders } from './response.js';
import { type Session, type SessionParts, sessionParts } from './session.js';
import type { Transport } from './transports/types.js';

export type FinishCommit<D extends object> = (
  session: Session<D>,
  status: number,
  message: CommitMessage | undefined,
) => CommitResult | Promise<CommitResult>;

/**
 * The end of a request's session: saves (after a 5xx only deletes), releases
 * the lock, and answers with the response headers. The answer is a promise
 * only when something had to be waited for; an error is always a rejection.
 */
export function commitFinisher<D extends object>(
  persistence: Persistence,
  transport: Transport,
  policy: ExpiryPolicy,
): FinishCommit<D> {
  const committed = (parts: SessionParts): CommitResult => ({
    headers: responseHeaders(transport, parts, persistence, policy),
  });

  const waitCommit = async (
    parts: SessionParts | undefined,
    saving: Promise<void> | undefined,
    message: CommitMessage | undefined,
  ): Promise<CommitResult> => {
    try {
      await saving;
    } finally {
      if (parts && message) message.retries = parts.identity.retries;
      if (parts?.identity.lock) await persistence.release(parts);
    }
    return committed(parts!);
  };

  return (session, status, message) => {
    let parts: SessionParts | undefined;
    let saving: Promise<void> | undefined;
    try {
      parts = sessionParts(session);
      saving = status < 500 ? persistence.save(parts) : persistence.saveDeletions(parts);
      if (!saving && !parts.identity.lock) {
        if (message) message.retries = parts.identity.retries;
        return committed(parts);
      }
    } catch (err) {
      saving = Promise.reject(err);
    }
    return waitCommit(parts, saving, message);
  };
}
