/**
 * Every error satchel throws is a `SatchelError` with a stable `code`.
 * Recognize them with `SatchelError.is(err)` or by `code`: `instanceof` fails
 * when two copies of the package are loaded, the brand does not.
 */
const brand = Symbol.for('satchel.error');

export type SatchelErrorCode =
  | 'ERR_SATCHEL_CONFIG'
  | 'ERR_SATCHEL_STORE_UNAVAILABLE'
  | 'ERR_SATCHEL_CONFLICT'
  | 'ERR_SATCHEL_SESSION_INTERRUPTED'
  | 'ERR_SATCHEL_PAYLOAD_TOO_LARGE'
  | 'ERR_SATCHEL_COOKIE_TOO_LARGE'
  | 'ERR_SATCHEL_LOCK_TIMEOUT'
  | 'ERR_SATCHEL_SERIALIZE'
  | 'ERR_SATCHEL_CORRUPT_DATA'
  | 'ERR_SATCHEL_UNSUPPORTED';

/** What a client is told when an error ends its request; the details go to the log only. */
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

export class SatchelError extends Error {
  readonly code: SatchelErrorCode;
  /** The HTTP status an adapter answers with when this error ends a request. */
  readonly status: number;
  readonly [brand] = true;

  constructor(
    code: SatchelErrorCode,
    message: string,
    options?: { cause?: unknown; status?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = options?.status ?? 500;
  }

  /**
   * The one line a client may be told when this error ends its request (no
   * store name, host or cause: those are for the log). Adapters answer with it.
   */
  get publicMessage(): string {
    return PUBLIC_MESSAGES[this.code] ?? 'Internal Server Error';
  }

  static is(err: unknown): err is SatchelError {
    return (
      typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[brand] === true
    );
  }
}

/** Options given to `createSessions` or a store factory are invalid. Thrown at creation, never per request. */
export class ConfigError extends SatchelError {
  /** `cause`: the underlying error, e.g. the loader's when a driver package is missing. */
  constructor(message: string, cause?: unknown) {
    super('ERR_SATCHEL_CONFIG', `[satchel] ${message}`, { cause });
  }
}

/** The store could not be reached or failed. Adapters answer 503. */
export class StoreUnavailableError extends SatchelError {
  readonly store: string;
  constructor(store: string, message: string, cause?: unknown) {
    super('ERR_SATCHEL_STORE_UNAVAILABLE', `[satchel] [${store}] ${message}`, {
      cause,
      status: 503,
    });
    this.store = store;
  }
}

/** Compare-and-set kept failing after every retry; the request's changes were not saved. */
export class ConflictError extends SatchelError {
  constructor(attempts: number) {
    super(
      'ERR_SATCHEL_CONFLICT',
      `[satchel] session changed concurrently ${attempts} times in a row; this request's changes were not saved`,
      { status: 503 },
    );
  }
}

/**
 * The session was destroyed (logout, flush, revoke) by another request while
 * this one ran; its changes are not written, so a logout is never undone.
 * Django calls this SessionInterrupted and answers 400.
 */
export class SessionInterruptedError extends SatchelError {
  constructor() {
    super(
      'ERR_SATCHEL_SESSION_INTERRUPTED',
      '[satchel] the session was deleted before the request completed (the user may have logged out in a concurrent request)',
      { status: 400 },
    );
  }
}

/** The serialized session is larger than `maxPayloadBytes`. Nothing was written. */
export class PayloadTooLargeError extends SatchelError {
  constructor(size: number, limit: number) {
    super(
      'ERR_SATCHEL_PAYLOAD_TOO_LARGE',
      `[satchel] session data is ${size} bytes, over the ${limit}-byte limit (maxPayloadBytes); nothing was saved`,
    );
  }
}

/** A Set-Cookie header would pass the 4096 bytes browsers keep; it is refused, never silently dropped. */
export class CookieTooLargeError extends SatchelError {
  constructor(name: string, size: number) {
    super(
      'ERR_SATCHEL_COOKIE_TOO_LARGE',
      `[satchel] cookie "${name}" would be ${size} bytes, over the 4096 bytes browsers keep`,
    );
  }
}

/** The per-session lock could not be had within `lockTimeout`. */
export class LockTimeoutError extends SatchelError {
  constructor(timeoutMs: number) {
    super(
      'ERR_SATCHEL_LOCK_TIMEOUT',
      `[satchel] could not lock the session within ${timeoutMs} ms`,
      {
        status: 503,
      },
    );
  }
}

/** A value cannot be serialized (a function, a cycle, an unregistered class). */
export class SerializeError extends SatchelError {
  constructor(message: string, cause?: unknown) {
    super('ERR_SATCHEL_SERIALIZE', `[satchel] ${message}`, { cause });
  }
}

/** Stored data could not be read back. The manager logs it and starts an empty session. */
export class CorruptDataError extends SatchelError {
  constructor(message: string, cause?: unknown) {
    super('ERR_SATCHEL_CORRUPT_DATA', `[satchel] ${message}`, { cause });
  }
}

/** The store lacks a capability the call needs (e.g. listing sessions on the cookie store). */
export class UnsupportedError extends SatchelError {
  constructor(store: string, message: string) {
    super('ERR_SATCHEL_UNSUPPORTED', `[satchel] [${store}] ${message}`);
  }
}
