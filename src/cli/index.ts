#!/usr/bin/env node
/**
 * The `satchel` command.
 *
 *   satchel clearsessions   remove expired sessions from the configured store
 *   satchel keygen          print a fresh secret for the `secrets` option
 *
 * Exit codes: 0 success, 1 runtime failure (the store is down), 2 usage error.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { SatchelError } from '../errors.js';
import {
  DEFAULT_STORE,
  type StoreEnv,
  storeFromEnv,
  storeNames,
  UnknownStoreError,
} from './config.js';

const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

/** A mistake on the command line: reported with a hint, exit 2. */
class UsageError extends Error {}

interface Io {
  out: NodeJS.WriteStream;
  err: NodeJS.WriteStream;
  env: StoreEnv;
}

interface Command {
  summary: string;
  help: string;
  run(args: string[], io: Io): Promise<number>;
}

const TOP_HELP = `Usage: satchel <command> [options]

Commands:
  clearsessions   Remove expired sessions from the configured store
  keygen          Print a fresh random secret for the \`secrets\` option
  help [command]  Show help for a command

Options:
  -h, --help      Show this help
  -V, --version   Print the version

The store comes from the environment, as for the example app:
  SATCHEL_STORE        ${storeNames().join(' | ')} (default: ${DEFAULT_STORE})
  SATCHEL_SQLITE_PATH  SQLite database file (default: ./satchel-sessions.db)
  SATCHEL_FILE_PATH    file store folder (default: the OS temp folder)

Exit codes: 0 success, 1 runtime failure (store unavailable), 2 usage error.
`;

const commands: Record<string, Command> = {
  clearsessions: {
    summary: 'Remove expired sessions from the configured store',
    help: `Usage: satchel clearsessions [options]

Removes every expired session from the store selected by SATCHEL_STORE (Django's
clearsessions). Run it from cron for stores without native expiry (sqlite, file).
Prints "Removed N expired sessions." on success.

Options:
  --store <name>        Store to clean: ${storeNames().join(', ')} (overrides SATCHEL_STORE)
  --sqlite-path <file>  SQLite database file (overrides SATCHEL_SQLITE_PATH)
  --file-path <dir>     File store folder (overrides SATCHEL_FILE_PATH)
  -q, --quiet           Print nothing on success
  -h, --help            Show this help
`,
    async run(args, io) {
      const { values } = parse(args, {
        store: { type: 'string' },
        'sqlite-path': { type: 'string' },
        'file-path': { type: 'string' },
        quiet: { type: 'boolean', short: 'q' },
      });
      const env: StoreEnv = { ...io.env };
      if (values.store !== undefined) env.SATCHEL_STORE = values.store;
      if (values['sqlite-path'] !== undefined) env.SATCHEL_SQLITE_PATH = values['sqlite-path'];
      if (values['file-path'] !== undefined) env.SATCHEL_FILE_PATH = values['file-path'];

      let choice: Awaited<ReturnType<typeof storeFromEnv>>;
      try {
        choice = await storeFromEnv(env);
      } catch (err) {
        if (err instanceof UnknownStoreError) {
          const source = values.store === undefined ? 'SATCHEL_STORE' : '--store';
          throw new UsageError(new UnknownStoreError(err.storeName, source).message);
        }
        throw err;
      }
      if (choice.name === 'memory') {
        await choice.store.close();
        throw new UsageError(
          'the memory store lives inside each server process; there is nothing to clear from here',
        );
      }
      const progress = startProgress(
        io.err,
        `Clearing expired sessions from ${choice.description}`,
      );
      let removed: number;
      try {
        removed = await choice.store.clearExpired(Date.now());
      } finally {
        progress.stop();
        await choice.store.close().catch(() => {});
      }
      if (!values.quiet) {
        io.out.write(`Removed ${removed} expired session${removed === 1 ? '' : 's'}.\n`);
      }
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
};

type Options = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

/** parseArgs in strict mode; a bad option or a stray argument is a UsageError. */
function parse<O extends Options>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function version(): string {
  // src/cli/index.ts and dist/cli/index.js both sit two folders below package.json.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  return String(pkg.version);
}

/**
 * A spinner with the elapsed time on a terminal, shown only once the work has
 * taken more than half a second. Stores clear in batches without reporting a
 * total, so it shows that the command is alive, not a made-up percentage.
 */
function startProgress(stream: NodeJS.WriteStream, label: string): { stop(): void } {
  if (!stream.isTTY) return { stop() {} };
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
  const started = Date.now();
  let frame = 0;
  let shown = false;
  const draw = () => {
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    stream.write(`\r${frames[frame++ % frames.length]} ${label}… ${seconds}s\x1b[K`);
    shown = true;
  };
  let timer: NodeJS.Timeout | undefined;
  const delay = setTimeout(() => {
    draw();
    timer = setInterval(draw, 100);
  }, 500);
  return {
    stop() {
      clearTimeout(delay);
      clearInterval(timer);
      if (shown) stream.write('\r\x1b[K');
    },
  };
}

/** Runs the CLI with `argv` (without node and the script); resolves to the exit code. */
async function main(argv: string[], io: Io): Promise<number> {
  const [first, ...rest] = argv;
  let name = first;
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
      name = rest[0];
      if (name === undefined) {
        io.out.write(TOP_HELP);
        return EXIT_OK;
      }
      const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
      if (command === undefined) throw new UsageError(`unknown command "${name}"`);
      io.out.write(command.help);
      return EXIT_OK;
    }
    if (first.startsWith('-')) throw new UsageError(`unknown option "${first}"`);
    const command = Object.hasOwn(commands, first) ? commands[first] : undefined;
    if (command === undefined) {
      name = undefined;
      throw new UsageError(`unknown command "${first}"`);
    }
    if (rest.includes('-h') || rest.includes('--help')) {
      io.out.write(command.help);
      return EXIT_OK;
    }
    return await command.run(rest, io);
  } catch (err) {
    const prefix =
      name !== undefined && Object.hasOwn(commands, name) ? `satchel ${name}` : 'satchel';
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
