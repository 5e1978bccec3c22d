import { ConfigError } from '../errors.js';
import { didYouMean, positiveInteger, rejectUnknownKeys } from '../validate.js';
import { decodeSessionData } from './django-signing.js';
import {
  type DjangoBackend,
  type DjangoPgQueryable,
  type DjangoRecord,
  fileBackend,
  type SqliteDriver,
  postgresBackend,
  sqliteBackend,
} from './django-stores.js';
import { clearCookie, commonOptions, idSeed, legacySecrets, storeCall } from './shared.js';
import type { LegacyImporter, LegacySession } from './types.js';

export type { DjangoPgQueryable, SqliteDriver } from './django-stores.js';
export type { LegacyImporter, LegacySession } from './types.js';

/** Where the Django project keeps its sessions (its SESSION_ENGINE). */
export type DjangoStore =
  | {
      /** `django.contrib.sessions.backends.db` on PostgreSQL. */
      type: 'postgres';
      /** A `pg` Pool (or anything with its `query(text, values)`) on the Django database; you end it. */
      pool: DjangoPgQueryable;
      /** The session model's table. @default 'django_session' */
      table?: string;
    }
  | {
      /** `django.contrib.sessions.backends.db` on SQLite. */
      type: 'sqlite';
      /** The Django database file (settings.DATABASES['default']['NAME']). */
      path: string;
      /** The session model's table. @default 'django_session' */
      table?: string;
      /**
       * The SQLite driver: the better-sqlite3 package, or the `node:sqlite`
       * module built into Node 22.13 and later.
       * @default 'better-sqlite3' when it is installed, else 'node:sqlite'
       */
      driver?: SqliteDriver;
    }
  | {
      /** `django.contrib.sessions.backends.file`. */
      type: 'file';
      /** settings.SESSION_FILE_PATH (Django's default is the system temp directory). */
      dir: string;
      /**
       * settings.SESSION_COOKIE_AGE in seconds: a file session expires this long
       * after the file was last written, unless the session set its own age.
       * @default 1209600 (two weeks, Django's default)
       */
      maxAge?: number;
    };

export interface DjangoImportOptions {
  /**
   * settings.SECRET_KEY. It verifies the signature on every session record,
   * so a record planted or altered without it imports nothing.
   */
  secretKey: string;
  /** settings.SECRET_KEY_FALLBACKS (Django 4.1+): older keys that still verify. @default [] */
  secretKeyFallbacks?: readonly string[];
  /** Where the sessions are: `{ type: 'postgres', pool }`, `{ type: 'sqlite', path }` or `{ type: 'file', dir }`. */
  store: DjangoStore;
  /**
   * settings.SESSION_COOKIE_NAME; the file backend also names its files after
   * it. Only Django-shaped values (32 characters of a-z and 0-9) are read, so
   * satchel's own IDs under the same name are never taken for Django keys.
   * @default 'sessionid'
   */
  cookieName?: string;
  /** settings.SESSION_COOKIE_PATH, to delete the Django cookie. @default '/' */
  cookiePath?: string;
  /** settings.SESSION_COOKIE_DOMAIN, likewise. @default undefined */
  cookieDomain?: string;
  /**
   * The `__qualname__` of your SESSION_ENGINE's SessionStore class, which
   * salts the signature. Change it only for a custom subclass.
   * @default 'SessionStore'
   */
  sessionStoreClass?: string;
  /**
   * Leave the Django record in place after the import. Meant for a rollback
   * window only: while the record exists, anyone still holding the Django
   * cookie can import it again, even after the user logged out of satchel.
   * @default false
   */
  keepLegacy?: boolean;
  /** How long one call to the Django store may take (ms) before the request is answered 503. @default 5000 */
  timeout?: number;
}

/** A Django importer; `close()` closes the SQLite database it opened (pools and directories are yours). */
export interface DjangoImporter extends LegacyImporter {
  close(): Promise<void>;
}

const NAME = 'django';
const SCOPE = 'fromDjango: ';
const KNOWN = [
  'secretKey',
  'secretKeyFallbacks',
  'store',
  'cookieName',
  'cookiePath',
  'cookieDomain',
  'sessionStoreClass',
  'keepLegacy',
  'timeout',
] as const satisfies readonly (keyof DjangoImportOptions)[];
const HINTS = {
  secret: 'use secretKey (settings.SECRET_KEY)',
  secrets: 'use secretKey and secretKeyFallbacks',
  SECRET_KEY: 'use secretKey',
  SECRET_KEY_FALLBACKS: 'use secretKeyFallbacks',
  salt: 'use sessionStoreClass (the salt is derived from it)',
};
const STORE_KEYS = {
  postgres: ['type', 'pool', 'table'],
  sqlite: ['type', 'path', 'table', 'driver'],
  file: ['type', 'dir', 'maxAge'],
} as const;
/** Django's session keys: get_random_string(32, VALID_KEY_CHARS). */
const DJANGO_KEY = /^[a-z0-9]{32}$/;
const TABLE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const QUALNAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/**
 * Imports the sessions of a Django project (3.1 to 5.x, JSONSerializer): a
 * request carrying a Django `sessionid` cookie whose record is still in the
 * Django store, correctly signed and not expired, becomes a satchel session
 * with the same data (less Django's `_session_expiry`); the Django cookie is
 * deleted and the record removed.
 *
 * ```ts
 * createSessions({ store, importers: [fromDjango({ secretKey: process.env.DJANGO_SECRET_KEY!, store: { type: 'postgres', pool } })] })
 * ```
 */
export function fromDjango(options: DjangoImportOptions): DjangoImporter {
  const { cookie, keepLegacy, timeout } = commonOptions(SCOPE, options, KNOWN, HINTS, 'sessionid');
  if (typeof options.secretKey !== 'string') {
    throw new ConfigError(`${SCOPE}secretKey must be a string (settings.SECRET_KEY)`);
  }
  const [secretKey] = legacySecrets(SCOPE, 'secretKey', options.secretKey) as [string];
  const fallbacks = options.secretKeyFallbacks ?? [];
  if (!Array.isArray(fallbacks)) {
    throw new ConfigError(`${SCOPE}secretKeyFallbacks must be an array of strings`);
  }
  const secrets = [
    secretKey,
    ...(fallbacks.length > 0 ? legacySecrets(SCOPE, 'secretKeyFallbacks', fallbacks) : []),
  ];
  const storeClass = options.sessionStoreClass ?? 'SessionStore';
  if (typeof storeClass !== 'string' || !QUALNAME.test(storeClass)) {
    throw new ConfigError(
      `${SCOPE}sessionStoreClass must be a Python class name such as 'SessionStore'; got ${String(storeClass)}`,
    );
  }
  const { backend, maxAgeMs } = resolveStore(options.store, cookie.name, timeout);
  const keys = { secrets, storeClass };

  return {
    name: NAME,
    recognize(cookies) {
      const key = cookies[cookie.name];
      if (key === undefined || !DJANGO_KEY.test(key)) return undefined;
      return { idSeed: idSeed(secretKey, NAME, key), clearCookies: [clearCookie(cookie)] };
    },
    async read(cookies, now) {
      const key = cookies[cookie.name];
      if (key === undefined || !DJANGO_KEY.test(key)) return undefined;
      const record = await storeCall(NAME, 'reading a Django session', timeout, () =>
        backend.read(key),
      );
      if (record === undefined) return undefined;
      if (record.expireDate !== undefined && record.expireDate <= now) return undefined;
      const decoded = decodeSessionData(record.sessionData, keys);
      if (decoded === undefined) return undefined;
      const { _session_expiry: ownExpiry, ...data } = decoded;
      const expiresAt = record.expireDate ?? fileExpiry(record, ownExpiry, maxAgeMs);
      if (expiresAt <= now) return undefined;

      const session: LegacySession = {
        importer: NAME,
        data,
        expiresAt,
        idSeed: idSeed(secretKey, NAME, key),
        clearCookies: [clearCookie(cookie)],
        finish: async () => {
          if (keepLegacy) return;
          await storeCall(NAME, 'removing a Django session', timeout, () => backend.remove(key));
        },
      };
      return session;
    },
    close: () => backend.close(),
  };
}

/**
 * When a file-backend session expires. Django counts from the file's last
 * write: SESSION_COOKIE_AGE, or the session's own `set_expiry(seconds)` age.
 * (Django's file backend itself never expires a session with an integer
 * `_session_expiry`; satchel reads the age as Django's docs describe it.)
 */
function fileExpiry(record: DjangoRecord, ownExpiry: unknown, maxAgeMs: number): number {
  const modifiedAt = record.modifiedAt ?? 0;
  if (typeof ownExpiry === 'number' && Number.isFinite(ownExpiry) && ownExpiry > 0) {
    return modifiedAt + ownExpiry * 1000;
  }
  if (typeof ownExpiry === 'string') {
    const at = Date.parse(ownExpiry);
    if (!Number.isNaN(at)) return at;
  }
  return modifiedAt + maxAgeMs;
}

function resolveStore(
  store: unknown,
  cookieName: string,
  timeout: number,
): { backend: DjangoBackend; maxAgeMs: number } {
  if (typeof store !== 'object' || store === null) {
    throw new ConfigError(
      `${SCOPE}store must be { type: 'postgres', pool }, { type: 'sqlite', path } or { type: 'file', dir }`,
    );
  }
  const type = (store as { type?: unknown }).type;
  if (type !== 'postgres' && type !== 'sqlite' && type !== 'file') {
    const near = typeof type === 'string' ? didYouMean(type, Object.keys(STORE_KEYS)) : undefined;
    throw new ConfigError(
      `${SCOPE}store.type must be 'postgres', 'sqlite' or 'file'; got ${String(type)}${near ? ` (did you mean "${near}"?)` : ''}`,
    );
  }
  rejectUnknownKeys(`${SCOPE}store (${type}): `, store, STORE_KEYS[type]);
  const s = store as Record<string, unknown>;
  const table = s.table ?? 'django_session';
  if (type !== 'file' && (typeof table !== 'string' || !TABLE.test(table))) {
    throw new ConfigError(`${SCOPE}store.table must be a plain identifier; got ${String(table)}`);
  }
  if (type === 'postgres') {
    const pool = s.pool as DjangoPgQueryable | undefined;
    if (typeof pool?.query !== 'function') {
      throw new ConfigError(`${SCOPE}store.pool must be a pg Pool (something with query())`);
    }
    return { backend: postgresBackend(pool, table as string), maxAgeMs: 0 };
  }
  if (type === 'sqlite') {
    if (typeof s.path !== 'string' || s.path === '') {
      throw new ConfigError(`${SCOPE}store.path must be the Django SQLite database file`);
    }
    const driver = s.driver;
    if (driver !== undefined && driver !== 'better-sqlite3' && driver !== 'node:sqlite') {
      throw new ConfigError(
        `${SCOPE}store.driver must be 'better-sqlite3' or 'node:sqlite'; got ${String(driver)}`,
      );
    }
    return { backend: sqliteBackend(s.path, table as string, timeout, driver), maxAgeMs: 0 };
  }
  if (typeof s.dir !== 'string' || s.dir === '') {
    throw new ConfigError(`${SCOPE}store.dir must be Django's SESSION_FILE_PATH directory`);
  }
  const maxAge = positiveInteger(`${SCOPE}store.`, 'maxAge', s.maxAge ?? 1_209_600);
  return { backend: fileBackend(s.dir, cookieName), maxAgeMs: maxAge * 1000 };
}
