import type { SatchelError, SatchelErrorCode } from '../errors.js';
import type { Sessions } from '../manager.js';

/** What the client is told; the details (store name, cause) go to the logger only. */
const PUBLIC_MESSAGES: Partial<Record<SatchelErrorCode, string>> = {
  ERR_SATCHEL_STORE_UNAVAILABLE:
    'Service Unavailable: the session store cannot be reached; please try again shortly.',
  ERR_SATCHEL_CONFLICT:
    'Service Unavailable: too many concurrent changes to this session; please try again.',
  ERR_SATCHEL_LOCK_TIMEOUT:
    'Service Unavailable: this session is busy with another request; please try again.',
  ERR_SATCHEL_SESSION_INTERRUPTED:
    'Bad Request: the session was deleted before the request completed (logged out in another tab?).',
};

/** The plain-text body every adapter answers a satchel error with. */
export function publicMessage(err: SatchelError): string {
  return `${PUBLIC_MESSAGES[err.code] ?? 'Internal Server Error'}\n`;
}

/** The headers of that answer, besides its length. */
export const ERROR_HEADERS = {
  'content-type': 'text/plain; charset=utf-8',
  'cache-control': 'no-store',
} as const;

/** Logs a satchel error that ends a request, with the details the client is not told. */
export function logSessionError(sessions: Sessions<any>, err: SatchelError): void {
  sessions.logger.error(err.message, {
    code: err.code,
    status: err.status,
    cause: String(err.cause ?? ''),
  });
}
