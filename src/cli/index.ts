#!/usr/bin/env node
/**
 * The `satchel` command.
 *
 *   satchel clearsessions   remove expired sessions from the configured store
 *   satchel migrate         create the postgres store's tables
 *   satchel keygen          print a fresh secret for the `secrets` option
 *   satchel sessions        list, count and revoke a user's sessions (sessions.ts)
 *
 * Exit codes: 0 success, 1 runtime failure (the store is down), 2 usage error
 * (including a store that cannot do what was asked, e.g. list on the cookie store).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SatchelError } from '../errors.js';
import {
  DEFAULT_CACHE,
  DEFAULT_CACHED_STORE,
  DEFAULT_DATABASE_TABLE,
  DEFAULT_DATABASE_URL,
  DEFAULT_REDIS_URL,
  DEFAULT_STORE,
  migrationFromEnv,
  migrationSummary,
  runMigration,
  type StoreChoice,
  selectedStore,
  storeFromEnv,
  storeNames,
} from './config.js';
import { startProgress } from './progress.js';
import { sessionsCommand } from './sessions.js';
import {
  type Command,
  checkReachable,
  closeSoon,
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  envWith,
  fromEnv,
  type Io,
  parse,
  STORE_OPTIONS,
  STORE_OPTIONS_HELP,
  type StoreOption,
  storeOptionSpecs,
  UsageError,
  unknownWord,
} from './shared.js';

const TOP_HELP = `Usage: satchel <command> [options]

Commands:
  clearsessions   Remove expired sessions from the configured store
  migrate         Create the tables the configured store needs (postgres)
  keygen          Print a fresh random secret for the \`secrets\` option
  sessions        List, count and revoke a user's sessions (list, revoke, count)
  help [command]  Show help for a command, e.g. satchel help sessions list

Options:
  -h, --help      Show this help
  -V, --version   Print the version

The store comes from the environment, as for the example app:
  SATCHEL_STORE           ${storeNames().join(' | ')} (default: ${DEFAULT_STORE})
  SATCHEL_SQLITE_PATH     SQLite database file (default: ./satchel-sessions.db)
  SATCHEL_FILE_PATH       file store folder (default: the OS temp folder)
  SATCHEL_REDIS_URL       Redis (default: ${DEFAULT_REDIS_URL})
  SATCHEL_REDIS_PREFIX    put before every Redis key (default: satchel:)
  SATCHEL_DATABASE_URL    PostgreSQL (default: ${DEFAULT_DATABASE_URL})
  SATCHEL_DATABASE_TABLE  PostgreSQL sessions table (default: ${DEFAULT_DATABASE_TABLE})
  SATCHEL_CACHED_STORE    durable store behind cached: postgres | sqlite | file (default: ${DEFAULT_CACHED_STORE})
  SATCHEL_CACHE           cache in front of it: memory | redis (default: ${DEFAULT_CACHE})
  SATCHEL_CACHE_TTL_MS    how long a cached copy answers reads (default: 5000 for memory)
  SATCHEL_SECRET          cookie store keys, comma-separated, each >= 32 characters

Exit codes: 0 success, 1 runtime failure (store unavailable, or no answer
within 2 s), 2 usage error (also when the store cannot do what was asked, e.g.
list sessions on the cookie store, or when the SQLite file or file-store folder
it should read does not exist: only the app and migrate create stores).
`;

const commands: Record<string, Command> = {
  clearsessions: {
    summary: 'Remove expired sessions from the configured store',
    help: `Usage: satchel clearsessions [options]

Removes every expired session from the store selected by SATCHEL_STORE (Django's
clearsessions). Run it from cron for stores without native expiry (sqlite, file,
postgres, cached). Redis expires sessions by itself; this removes the few it has
not dropped yet. The cookie store keeps nothing on the server: nothing to clear.
Prints "Removed N expired sessions." on success; on a terminal, a progress line
with the running count while it works. It never creates a store: a SQLite file
or file-store folder that does not exist exits 2 naming the path (a typo in a
cron job is reported, not answered with "Removed 0"). Redis and PostgreSQL must
answer within 2 s.

Options:
${STORE_OPTIONS_HELP}
  -q, --quiet           Print nothing on success
  -h, --help            Show this help
`,
    async run(args, io) {
      const { values } = parse(args, {
        ...storeOptionSpecs(Object.keys(STORE_OPTIONS) as StoreOption[]),
        quiet: { type: 'boolean', short: 'q' },
      });
      const env = envWith(io, values);
      const say = (text: string) => {
        if (!values.quiet) io.out.write(`${text}\n`);
      };
      const name = await fromEnv(values, () => selectedStore(env));
      if (name === 'memory') {
        throw new UsageError(
          'the memory store lives inside each server process; there is nothing to clear from here',
        );
      }
      if (name === 'cookie') {
        // Nothing to open (and no secret needed): expired cookies are refused
        // when they come back, and browsers drop them.
        say(
          'Nothing to clear: the cookie store keeps sessions in the browsers, and an expired cookie is refused when it comes back.',
        );
        return EXIT_OK;
      }
      // A cleanup never creates the store it was asked to clean: a typo in a
      // path is an error, not "Removed 0 expired sessions" from a new empty store.
      const choice: StoreChoice = await fromEnv(values, () => storeFromEnv(env, { create: false }));
      const store = choice.store;
      if (!('clearExpired' in store)) {
        await closeSoon(store);
        throw new UsageError(`the ${choice.name} store keeps nothing on the server to clear`);
      }
      const progress = startProgress(
        io.err,
        `Clearing expired sessions from ${choice.description}`,
      );
      let removed: number;
      try {
        await checkReachable(choice);
        removed = await store.clearExpired(Date.now(), {
          onProgress: (report) => progress.update(report),
        });
      } finally {
        progress.stop();
        await closeSoon(store);
      }
      say(`Removed ${removed} expired session${removed === 1 ? '' : 's'}.`);
      if (name === 'redis') say('Redis expires sessions by itself: running this is optional.');
      return EXIT_OK;
    },
  },

  migrate: {
    summary: 'Create the tables the configured store needs',
    help: `Usage: satchel migrate [options]

Creates what the store selected by SATCHEL_STORE needs before it is used. For
postgres (and cached in front of postgres): the sessions table (default
${DEFAULT_DATABASE_TABLE}), its indexes on expires_at and owner, and the
<table>_locks table, in the database at SATCHEL_DATABASE_URL (default
${DEFAULT_DATABASE_URL}).

Existing tables are left alone, so it is safe to run again, and from several
machines at once; it prints what it created. The other stores need no
migration: sqlite creates its table when it opens; redis, file, memory and
cookie keep no schema.

Options:
  --store <name>        Store: ${storeNames().join(', ')} (overrides SATCHEL_STORE)
  --database-url <url>  PostgreSQL URL (overrides SATCHEL_DATABASE_URL)
  --table <name>        Sessions table, optionally schema.table (overrides SATCHEL_DATABASE_TABLE)
  -h, --help            Show this help
`,
    async run(args, io) {
      const { values } = parse(args, storeOptionSpecs(['store', 'database-url', 'table']));
      const env = envWith(io, values);
      const name = await fromEnv(values, () => selectedStore(env));
      const target = await fromEnv(values, () => migrationFromEnv(env));
      if (target === undefined) {
        const given = (['database-url', 'table'] as const).filter((o) => values[o] !== undefined);
        if (given.length > 0) {
          throw new UsageError(
            `--${given[0]} applies to the postgres store, but the store is ${name} (set SATCHEL_STORE=postgres or pass --store postgres)`,
          );
        }
        const why =
          name === 'sqlite' ? 'creates its table itself when it opens' : 'keeps no schema';
        io.out.write(`Nothing to migrate: the ${name} store ${why}.\n`);
        return EXIT_OK;
      }
      const progress = startProgress(io.err, `Migrating ${target.table} in ${target.shownUrl}`);
      let report: Awaited<ReturnType<typeof runMigration>>;
      try {
        report = await fromEnv(values, () => runMigration(target));
      } finally {
        progress.stop();
      }
      io.out.write(
        report.created.length === 0
          ? `Table ${report.table} in ${report.shownUrl} is up to date; nothing to migrate.\n`
          : `Migrated table ${report.table} in ${report.shownUrl}: ${migrationSummary(report)}.\n`,
      );
      return EXIT_OK;
    },
  },

  keygen: {
    summary: 'Print a fresh random secret',
    help: `Usage: satchel keygen [options]

Prints a fresh secret: 32 random bytes from the OS CSPRNG, base64url-encoded
(43 characters). Use it in createSessions({ secrets: [...] }); put the new key
first and keep the old ones after it to rotate without logging anyone out.

Options:
  -h, --help  Show this help
`,
    async run(args, io) {
      parse(args, {});
      io.out.write(`${randomBytes(32).toString('base64url')}\n`);
      return EXIT_OK;
    },
  },

  sessions: sessionsCommand,
};

function version(): string {
  // src/cli/index.ts and dist/cli/index.js both sit two folders below package.json.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  return String(pkg.version);
}

/** The command `name` in `table`; a UsageError with a did-you-mean when there is none. */
function lookup(table: Record<string, Command>, name: string): Command {
  if (Object.hasOwn(table, name)) return table[name]!;
  throw new UsageError(unknownWord('command', name, Object.keys(table)));
}

/** Runs the CLI with `argv` (without node and the script); resolves to the exit code. */
async function main(argv: string[], io: Io): Promise<number> {
  const [first, ...rest] = argv;
  // Grows with each command word recognized: `satchel sessions list`.
  let prefix = 'satchel';
  try {
    if (first === undefined) {
      io.err.write(TOP_HELP);
      return EXIT_USAGE;
    }
    if (first === '-h' || first === '--help') {
      io.out.write(TOP_HELP);
      return EXIT_OK;
    }
    if (first === '-V' || first === '--version') {
      io.out.write(`${version()}\n`);
      return EXIT_OK;
    }
    if (first === 'help') {
      // `satchel help sessions list`: each word names a (sub)command.
      let help = TOP_HELP;
      let table: Record<string, Command> | undefined = commands;
      for (const word of rest) {
        if (table === undefined) throw new UsageError(`unknown command "${word}"`);
        const command = lookup(table, word);
        prefix = `${prefix} ${word}`;
        help = command.help;
        table = command.subcommands;
      }
      io.out.write(help);
      return EXIT_OK;
    }
    if (first.startsWith('-')) {
      throw new UsageError(unknownWord('option', first, ['--help', '--version']));
    }
    let command = lookup(commands, first);
    prefix = `satchel ${first}`;
    let args = rest;
    while (command.subcommands !== undefined) {
      const [word, ...more] = args;
      if (word === undefined) {
        io.err.write(command.help);
        return EXIT_USAGE;
      }
      if (word === '-h' || word === '--help') {
        io.out.write(command.help);
        return EXIT_OK;
      }
      command = lookup(command.subcommands, word);
      prefix = `${prefix} ${word}`;
      args = more;
    }
    if (args.includes('-h') || args.includes('--help')) {
      io.out.write(command.help);
      return EXIT_OK;
    }
    return await command.run(args, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err.write(`${prefix}: ${err.message}\nRun "${prefix} --help" for usage.\n`);
      return EXIT_USAGE;
    }
    if (SatchelError.is(err)) {
      // Store down or misconfigured: one line, no stack trace.
      io.err.write(`${prefix}: ${err.message.replace(/^\[satchel\] /, '')}\n`);
      return EXIT_FAILURE;
    }
    io.err.write(`${prefix}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return EXIT_FAILURE;
  }
}

const code = await main(process.argv.slice(2), {
  out: process.stdout,
  err: process.stderr,
  env: process.env,
});
process.exitCode = code;
// A driver that never answered may keep a socket open after close(): do not
// let it hold a cron job. The timer is unref'd, so a clean exit is not delayed.
setTimeout(() => process.exit(code), 1_000).unref();
