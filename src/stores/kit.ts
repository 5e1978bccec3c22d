import { createRequire } from 'node:module';
import type { Logger } from '../logger.js';
import { ConfigError, StoreUnavailableError } from '../errors.js';
import { rejectUnknownKeys } from '../validate.js';

/**
 * The small kit every store shares (after unstorage's `src/drivers/utils`):
 * one closed-store guard, one optional-peer loader and the option validators,
 * so no store re-grows its own copy.
 */

// The validators every factory uses, from the one place they live.
export {
  didYouMean,
  positiveInteger,
  positiveNumber,
  rejectUnknownKeys,
  secretList,
} from '../validate.js';

/** Where a store reports what it works around (a failing cache, a refused file); the manager's `logger` fits. */
export type StoreLogger = Pick<Logger, 'warn'>;

export { consoleLogger } from '../logger.js';

/** A store's open/closed state. */
export interface OpenGuard {
  /** True once `close()` has run. */
  readonly closed: boolean;
  /** Throws `[satchel] [<name>] the store is closed` (StoreUnavailableError) once closed. */
  check(): void;
  /** Marks the store closed: true the first time, false after, so `close()` runs its work once. */
  close(): boolean;
}

/** The error every store answers with after `close()`. */
export function closedError(name: string): StoreUnavailableError {
  return new StoreUnavailableError(name, 'the store is closed');
}

/**
 * The closed-store guard: call `guard.check()` first in every operation and
 * `if (!guard.close()) return;` first in `close()`.
 */
export function openGuard(name: string): OpenGuard {
  let closed = false;
  return {
    get closed() {
      return closed;
    },
    check() {
      if (closed) throw closedError(name);
    },
    close() {
      if (closed) return false;
      closed = true;
      return true;
    },
  };
}

/**
 * Checks a store factory's options object once, at the top of the factory:
 * it must be an object (or absent), and every key must be one the store
 * knows — a typo fails with a did-you-mean instead of being ignored.
 * `known` is typed against the options interface, so it cannot drift from it.
 * Returns the options, `{}` when absent.
 */
export function checkOptions<T extends object>(
  storeName: string,
  options: T | undefined,
  known: readonly (keyof T & string)[],
  hints: Readonly<Record<string, string>> = {},
): T {
  if (options === undefined) return {} as T;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ConfigError(
      `${storeName} store: options must be an object; got ${describe(options)}`,
    );
  }
  rejectUnknownKeys(`${storeName} store: `, options, known, hints);
  return options;
}

const require = createRequire(import.meta.url);

/**
 * Loads an optional peer dependency (a service driver) on first use, so
 * importing a store module — or the package index — never needs it. When the
 * package is not installed, throws a ConfigError that names the command to
 * run: `[satchel] postgres store needs the pg package: npm install pg`, with
 * the loader's error as `cause`. Any other loading error is rethrown as is.
 *
 * @param storeName who needs it, as in messages: `'postgres'`, `'redis'`.
 * @param moduleName the package to load: `'pg'`.
 * @param installHint the exact command (and any alternative): `'npm install pg'`.
 */
export function loadPeer<T>(storeName: string, moduleName: string, installHint: string): T {
  try {
    return require(moduleName) as T;
  } catch (err) {
    if (!isMissing(err, moduleName)) throw err;
    throw new ConfigError(
      `${storeName} store needs the ${moduleName} package: ${installHint}`,
      err,
    );
  }
}

// A package that is present but misses one of its own dependencies is a
// broken install, not a missing peer: only the peer's own name counts.
function isMissing(err: unknown, moduleName: string): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code !== 'MODULE_NOT_FOUND' && code !== 'ERR_MODULE_NOT_FOUND') return false;
  return String((err as Error).message).includes(`'${moduleName}'`);
}

function describe(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
}
