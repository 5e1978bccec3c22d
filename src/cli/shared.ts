/**
 * What every `satchel` command shares: exit codes, usage errors, argument
 * parsing and the command-line options that select a store.
 */
import { parseArgs } from 'node:util';
import { SatchelError, StoreUnavailableError } from '../errors.js';
import { isCookieStore } from '../store.js';
import { didYouMean } from '../validate.js';
import {
  CONNECT_TIMEOUT_MS,
  type StoreChoice,
  type StoreEnv,
  StoreEnvError,
  storeNames,
  UnknownStoreError,
} from './config.js';

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

/**
 * `--name value` as `--name=value` for a string option whose value starts
 * with a dash but is no option: parseArgs refuses it as ambiguous, and one
 * session handle in 64 starts with `-` (they are base64url), as may an owner
 * id (`-1`). A value that is an option (`--owner --json`) is left alone, so
 * a forgotten value is still reported.
 */
function attachDashValues(args: string[], options: Options): string[] {
  const specs = options ?? {};
  const isOption = (arg: string) =>
    arg.startsWith('--')
      ? Object.hasOwn(specs, arg.slice(2).split('=')[0]!) || arg === '--help'
      : Object.values(specs).some((spec) => spec.short !== undefined && arg === `-${spec.short}`);
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    const name = arg.startsWith('--') ? arg.slice(2) : undefined;
    const dashValue = next?.startsWith('-') === true && !isOption(next);
    if (name !== undefined && specs[name]?.type === 'string' && dashValue) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

/**
 * parseArgs in strict mode; a bad option or a stray argument is a UsageError.
 * An unknown option names the closest known one (`--sqlite-pth` → `--sqlite-path`).
 */
export function parse<O extends Options>(
  args: string[],
  options: O,
): ReturnType<
  typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: false }>
> {
  try {
    return parseArgs({
      args: attachDashValues(args, options),
      options,
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    const { code, message } = err as NodeJS.ErrnoException;
    const given = /'([^']+)'/.exec(message)?.[1];
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && given !== undefined) {
      const known = [...Object.keys(options ?? {}).map((name) => `--${name}`), '--help'];
      throw new UsageError(unknownWord('option', given, known));
    }
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' && given !== undefined) {
      throw new UsageError(`unexpected argument "${given}": this command takes only options`);
    }
    throw new UsageError(message);
  }
}

/** `unknown command "clearsesions"; did you mean "clearsessions"?` */
export function unknownWord(kind: string, word: string, known: readonly string[]): string {
  // Options are compared without their dashes, so `-sqlite-path` finds `--sqlite-path`.
  const bare = (text: string) => text.replace(/^-+/, '');
  const near = didYouMean(
    bare(word),
    known.map((candidate) => bare(candidate)),
  );
  const suggestion = near === undefined ? undefined : known.find((k) => bare(k) === near);
  return suggestion === undefined
    ? `unknown ${kind} "${word}"`
    : `unknown ${kind} "${word}"; did you mean "${suggestion}"?`;
}

// A key no session can have (session keys are 43-character hashes), for a read that finds nothing.
const PROBE_KEY = 'satchel-cli-probe';

/**
 * Bounds the first contact with a store behind a network connection (Redis,
 * PostgreSQL): one read of a key that does not exist must answer within
 * `ms`, or the store is reported unreachable with its masked URL. Without it
 * a server that accepts connections but never answers would hold a cron job
 * until the driver's command timeout. Local stores are not probed.
 */
export async function checkReachable(
  choice: StoreChoice,
  ms: number = CONNECT_TIMEOUT_MS,
): Promise<void> {
  if (choice.remote === undefined || isCookieStore(choice.store)) return;
  const where = choice.remote;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new StoreUnavailableError(
            choice.name,
            `no answer from ${where} within ${ms / 1000} s (is the server up and reachable?)`,
          ),
        ),
      ms,
    );
  });
  try {
    await Promise.race([choice.store.get(PROBE_KEY), deadline]);
  } catch (err) {
    // The store's own message, with where it tried (masked): drivers name only host and port.
    if (
      SatchelError.is(err) &&
      err.code === 'ERR_SATCHEL_STORE_UNAVAILABLE' &&
      !err.message.includes(where)
    ) {
      const text = err.message.replace(/^\[satchel\] /, '');
      const inner = /^\[([^\]]+)\] (.*)$/s.exec(text);
      throw new StoreUnavailableError(
        inner?.[1] ?? choice.name,
        `${inner?.[2] ?? text} (${where})`,
        err,
      );
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Closes a store, waiting at most `ms`: a store that never answered may never finish closing. */
export async function closeSoon(store: { close(): Promise<void> }, ms = 1_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    store.close().catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
}
