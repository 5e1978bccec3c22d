/**
 * What every `satchel` command shares: exit codes, usage errors, argument
 * parsing and the command-line options that select a store.
 */
import { parseArgs } from 'node:util';
import { type StoreEnv, StoreEnvError, storeNames, UnknownStoreError } from './config.js';

export const EXIT_OK = 0;
/** A runtime failure: the store is down or cannot be opened. Trying again later may work. */
export const EXIT_FAILURE = 1;
/** A usage error: a bad command line or environment, or a store that cannot do what was asked. */
export const EXIT_USAGE = 2;

/** A mistake on the command line or in the environment: reported with a hint, exit 2. */
export class UsageError extends Error {}

export interface Io {
  out: NodeJS.WriteStream;
  err: NodeJS.WriteStream;
  env: StoreEnv;
}

export interface Command {
  summary: string;
  help: string;
  run(args: string[], io: Io): Promise<number>;
  /** A command made of subcommands (`satchel sessions list`): `run` is then unused. */
  subcommands?: Record<string, Command>;
}

/** Command-line options that override one SATCHEL_* variable each. */
export const STORE_OPTIONS = {
  store: 'SATCHEL_STORE',
  'sqlite-path': 'SATCHEL_SQLITE_PATH',
  'file-path': 'SATCHEL_FILE_PATH',
  'redis-url': 'SATCHEL_REDIS_URL',
  'redis-prefix': 'SATCHEL_REDIS_PREFIX',
  'database-url': 'SATCHEL_DATABASE_URL',
  table: 'SATCHEL_DATABASE_TABLE',
} as const;
export type StoreOption = keyof typeof STORE_OPTIONS;

export const STORE_OPTIONS_HELP = `  --store <name>        Store: ${storeNames().join(', ')} (overrides SATCHEL_STORE)
  --sqlite-path <file>  SQLite database file (overrides SATCHEL_SQLITE_PATH)
  --file-path <dir>     File store folder (overrides SATCHEL_FILE_PATH)
  --redis-url <url>     Redis URL (overrides SATCHEL_REDIS_URL)
  --redis-prefix <p>    Redis key prefix (overrides SATCHEL_REDIS_PREFIX)
  --database-url <url>  PostgreSQL URL (overrides SATCHEL_DATABASE_URL)
  --table <name>        PostgreSQL table (overrides SATCHEL_DATABASE_TABLE)`;

export function storeOptionSpecs(
  names: readonly StoreOption[] = Object.keys(STORE_OPTIONS) as StoreOption[],
) {
  return Object.fromEntries(names.map((name) => [name, { type: 'string' as const }])) as Record<
    StoreOption,
    { type: 'string' }
  >;
}

/** The environment with the command-line overrides applied. */
export function envWith(io: Io, values: Partial<Record<string, unknown>>): StoreEnv {
  const env: StoreEnv = { ...io.env };
  for (const [option, variable] of Object.entries(STORE_OPTIONS)) {
    const value = values[option];
    if (typeof value === 'string') env[variable] = value;
  }
  return env;
}

/**
 * Runs `fn`, turning environment mistakes into usage errors; an unknown
 * store name is blamed on --store when that option gave it.
 */
export async function fromEnv<T>(
  values: { store?: unknown },
  fn: () => T | Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof UnknownStoreError) {
      const source = values.store === undefined ? 'SATCHEL_STORE' : '--store';
      throw new UsageError(new UnknownStoreError(err.storeName, source).message);
    }
    if (err instanceof StoreEnvError) throw new UsageError(err.message);
    throw err;
  }
}

type Options = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

/** parseArgs in strict mode; a bad option or a stray argument is a UsageError. */
export function parse<O extends Options>(
  args: string[],
  options: O,
): ReturnType<
  typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: false }>
> {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
