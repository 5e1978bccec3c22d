export {
  ConfigError,
  ConflictError,
  CookieTooLargeError,
  CorruptDataError,
  LockTimeoutError,
  PayloadTooLargeError,
  SatchelError,
  type SatchelErrorCode,
  SerializeError,
  SessionInterruptedError,
  StoreUnavailableError,
  UnsupportedError,
} from './errors.js';
export { generateId, isWellFormedId, storeKey } from './ids.js';
export {
  type CommitResult,
  headerCase,
  type IncomingRequest,
  type LoadOptions,
  type ResolvedTransport,
  type Logger,
  type SessionEvents,
  type Sessions,
  type SessionSummary,
  type SessionsOptions,
  type TransportOption,
} from './manager.js';
export type { CookieOptions } from './cookies.js';
export {
  type ClassCodec,
  jsonSerializer,
  MAX_BIGINT_DIGITS,
  MAX_DEPTH,
  richSerializer,
  type Serializer,
} from './serializers.js';
export type {
  CommitMessage,
  ConflictMessage,
  LoadMessage,
  StoreCallMessage,
} from './diagnostics.js';
export type { LegacyImporter, LegacySession } from './import/types.js';
export {
  type DeviceInfo,
  Session,
  type SessionData,
  type SessionKey,
  type Shape,
} from './session.js';
export {
  type CookieStore,
  type ClearExpiredOptions,
  forwardingTo,
  type OwnedRecord,
  type SessionStore,
  type StoredSession,
  type SyncAccess,
  type UpdateResult,
} from './store.js';

import { buildSessions, type Sessions, type SessionsOptions } from './manager.js';
import type { SessionData } from './session.js';
import { sqliteStore } from './stores/sqlite.js';

/**
 * Creates the session manager: options are resolved and validated once,
 * here, and every request then goes through `load` and `commit` (the
 * adapters do this for you). Without a `store`, sessions are kept in SQLite
 * (`satchel-sessions.db` in the working directory).
 */
export function createSessions<D extends object = SessionData>(
  options: SessionsOptions = {},
): Sessions<D> {
  return buildSessions<D>(options, () => sqliteStore());
}
