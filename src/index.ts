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
  createSessions,
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
export { type ClassCodec, jsonSerializer, richSerializer, type Serializer } from './serializers.js';
export {
  type DeviceInfo,
  Session,
  type SessionData,
  type SessionKey,
  type Shape,
} from './session.js';
export type {
  CookieStore,
  ClearExpiredOptions,
  OwnedRecord,
  SessionStore,
  StoredSession,
  UpdateResult,
} from './store.js';
