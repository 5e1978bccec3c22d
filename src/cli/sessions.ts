/**
 * `satchel sessions list | revoke | count`: a user's sessions from outside
 * the app, through the same manager the app uses (`createSessions`), so the
 * output is the manager's summaries: opaque handles, never session IDs.
 */
import { SatchelError } from '../errors.js';
import { isHandle } from '../ids.js';
import { createSessions, type SessionSummary, type Sessions } from '../index.js';
import type { DeviceInfo } from '../session.js';
import { isCookieStore } from '../store.js';
import { selectedStore, storeFromEnv } from './config.js';
import {
  type Command,
  checkReachable,
  closeSoon,
  EXIT_OK,
  envWith,
  fromEnv,
  type Io,
  parse,
  STORE_OPTIONS_HELP,
  storeOptionSpecs,
  UsageError,
} from './shared.js';

/** As `session.setOwner` accepts. */
const MAX_OWNER_LENGTH = 256;

const STORES_NOTE = `Needs a server-side store with an owner index (sqlite, file, redis, postgres,
cached); any other store exits 2 saying so. The memory store lives inside the
server process and the cookie store keeps nothing on the server: both exit 2.`;

const COMMON_OPTIONS = `  --json                Print JSON instead of a table
${STORE_OPTIONS_HELP}
  -h, --help            Show this help`;

const OVERVIEW = `Usage: satchel sessions <command> [options]

Lists, counts and revokes the sessions of a user: those the app tied to the
user with session.setOwner(id), typically at login. Sessions are named by
opaque handles (a hash of the session ID, useless as a credential), never by
their IDs.

Commands:
  list    --owner <id>                      List a user's live sessions
  revoke  --owner <id> [--except <handle>]  Sign a user out everywhere (but one session)
  revoke  --handle <handle>                 Sign out one session
  count   --owner <id>                      Count a user's live sessions

Each prints an aligned table, or JSON with --json, and takes the store options
of clearsessions (--store, --sqlite-path, ...; default: the SATCHEL_* variables).
Run "satchel sessions <command> --help" for details.

Exit codes: 0 success; 1 the store is unavailable (Redis and PostgreSQL must
answer within 2 s); 2 a usage error, a store that cannot do it (memory, cookie,
or a store without an owner index), or a SQLite file or file-store folder that
does not exist (these commands never create one).
`;

interface SessionsValues {
  json?: boolean | undefined;
  store?: string | undefined;
  [option: string]: unknown;
}

/** Opens the store the environment selects and a manager on it; closes both after `fn`. */
async function withSessions<T>(
  values: SessionsValues,
  io: Io,
  what: string,
  fn: (sessions: Sessions, storeName: string) => Promise<T>,
): Promise<T> {
  const env = envWith(io, values);
  const name = await fromEnv(values, () => selectedStore(env));
  if (name === 'memory') {
    throw new UsageError(
      `the memory store lives inside each server process; there are no sessions to ${what} from here`,
    );
  }
  if (name === 'cookie') {
    // Nothing to open (and no secret needed), as for clearsessions.
    throw new UsageError(
      `the cookie store keeps sessions in the browsers, not on the server: there is nothing to ${what} (rotating SATCHEL_SECRET invalidates every cookie)`,
    );
  }
  // Listing, counting or revoking never creates a store: a mistyped path is
  // reported, not answered with "no sessions" from a new empty database.
  const choice = await fromEnv(values, () => storeFromEnv(env, { create: false }));
  if (isCookieStore(choice.store)) {
    await closeSoon(choice.store);
    throw new UsageError(`the ${choice.name} store keeps nothing on the server to ${what}`);
  }
  try {
    await checkReachable(choice);
  } catch (err) {
    await closeSoon(choice.store);
    throw err;
  }
  const sessions = createSessions({
    store: choice.store,
    logger: {
      // Corrupt records are skipped by listByOwner and reported here, on stderr.
      warn: (message) => io.err.write(`warning: ${message.replace(/^\[satchel\] /, '')}\n`),
      error: (message) => io.err.write(`error: ${message.replace(/^\[satchel\] /, '')}\n`),
    },
  });
  try {
    return await fn(sessions, choice.name);
  } catch (err) {
    // A store without the capability: asking again will not help, so a usage error.
    if (SatchelError.is(err) && err.code === 'ERR_SATCHEL_UNSUPPORTED') {
      throw new UsageError(err.message.replace(/^\[satchel\] \[[^\]]*\] /, ''));
    }
    throw err;
  } finally {
    await closeSoon(sessions);
  }
}

function requireOwnerIndex(sessions: Sessions, storeName: string, what: string): void {
  if (typeof sessions.store.listByOwner !== 'function') {
    throw new UsageError(
      `the ${storeName} store cannot ${what}: it has no owner index (sqlite, file, redis, postgres and cached have one)`,
    );
  }
}

function ownerArg(value: unknown): string {
  if (value === undefined) throw new UsageError('--owner <id> is required');
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_OWNER_LENGTH) {
    throw new UsageError(`--owner must be a user id of 1 to ${MAX_OWNER_LENGTH} characters`);
  }
  return value;
}

function handleArg(option: string, value: unknown): string {
  if (!isHandle(value)) {
    throw new UsageError(
      `${option} must be a session handle: the 43 characters satchel sessions list shows`,
    );
  }
  return value;
}

/**
 * Control characters (an escape sequence in a User-Agent could rewrite the
 * operator's terminal) and bidirectional overrides, shown as \u{…} escapes.
 */
const UNSAFE = /[\p{Cc}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

function printable(text: string): string {
  return text.replace(UNSAFE, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}

/** JSON, with the characters JSON.stringify leaves raw that a terminal may act on escaped. */
function writeJson(io: Io, value: unknown): void {
  const text = JSON.stringify(value, null, 2).replace(
    /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  io.out.write(`${text}\n`);
}

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
function formatTable(header: readonly string[], rows: readonly string[][]): string {
  const widths = header.map((title, i) =>
    Math.max(title.length, ...rows.map((row) => row[i]?.length ?? 0)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return `${[header, ...rows].map(line).join('\n')}\n`;
}

/** `2025-06-01T12:34:56Z`: UTC, to the second. */
function time(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const MAX_DEVICE_TEXT = 120;

function deviceText(device: DeviceInfo): string {
  const parts: string[] = [];
  if (typeof device.userAgent === 'string' && device.userAgent !== '') parts.push(device.userAgent);
  if (typeof device.ip === 'string' && device.ip !== '') parts.push(`ip ${device.ip}`);
  for (const [key, value] of Object.entries(device)) {
    if (key !== 'userAgent' && key !== 'ip' && typeof value === 'string')
      parts.push(`${key}=${value}`);
  }
  const text = printable(parts.join(', '));
  if (text === '') return '-';
  return text.length > MAX_DEVICE_TEXT ? `${text.slice(0, MAX_DEVICE_TEXT - 1)}…` : text;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function summaryJson(summary: SessionSummary) {
  return {
    handle: summary.handle,
    createdAt: summary.createdAt.toISOString(),
    lastSeenAt: summary.lastSeenAt.toISOString(),
    expiresAt: summary.expiresAt.toISOString(),
    device: summary.device,
  };
}

const list: Command = {
  summary: "List a user's live sessions",
  help: `Usage: satchel sessions list --owner <id> [options]

Lists the live sessions of one user, most recently seen first: the handle of
each (for satchel sessions revoke; never the session ID), when it was created
and last seen (to within the app's touchInterval), when it expires, and the
device the app recorded with session.setOwner (e.g. its user agent). Times are
UTC. With --json: an array of { handle, createdAt, lastSeenAt, expiresAt,
device }, times in ISO 8601.

  satchel sessions list --owner 42
  satchel sessions list --owner 42 --json | jq -r '.[].handle'

${STORES_NOTE}

Options:
  --owner <id>          The user whose sessions to list (required)
${COMMON_OPTIONS}
`,
  async run(args, io) {
    const { values } = parse(args, {
      ...storeOptionSpecs(),
      owner: { type: 'string' },
      json: { type: 'boolean' },
    });
    const owner = ownerArg(values.owner);
    const found = await withSessions(values, io, 'list', async (sessions, storeName) => {
      requireOwnerIndex(sessions, storeName, 'list sessions by owner');
      return sessions.listByOwner(owner);
    });
    if (values.json) {
      writeJson(io, found.map(summaryJson));
    } else if (found.length === 0) {
      io.out.write(`No live sessions for owner ${printable(JSON.stringify(owner))}.\n`);
    } else {
      io.out.write(
        formatTable(
          ['HANDLE', 'CREATED', 'LAST SEEN', 'EXPIRES', 'DEVICE'],
          found.map((s) => [
            s.handle,
            time(s.createdAt),
            time(s.lastSeenAt),
            time(s.expiresAt),
            deviceText(s.device),
          ]),
        ),
      );
    }
    return EXIT_OK;
  },
};

const revoke: Command = {
  summary: 'Sign out one session, or every session of a user',
  help: `Usage: satchel sessions revoke --owner <id> [--except <handle>] [options]
       satchel sessions revoke --handle <handle> [options]

Ends sessions on the server: their next request finds no session (signed out,
and whatever the session held, a cart included, is gone), as an app's "sign
out everywhere" does.

  --owner <id>          every live session of this user...
  --except <handle>     ...but this one (e.g. the session the user is using)
  --handle <handle>     only this session (a handle from satchel sessions list)

Prints how many sessions it revoked ("Revoked 0 sessions" when none was live;
--json: {"revoked": N}). It asks for no confirmation.

  satchel sessions revoke --owner 42
  satchel sessions revoke --handle 3q2-7w...  (43 characters)

--handle works on every server-side store; --owner needs an owner index.
${STORES_NOTE}

Options:
  --owner <id>          Revoke this user's sessions
  --except <handle>     With --owner: keep this session
  --handle <handle>     Revoke this one session
${COMMON_OPTIONS}
`,
  async run(args, io) {
    const { values } = parse(args, {
      ...storeOptionSpecs(),
      owner: { type: 'string' },
      except: { type: 'string' },
      handle: { type: 'string' },
      json: { type: 'boolean' },
    });
    if (values.owner !== undefined && values.handle !== undefined) {
      throw new UsageError('give --owner or --handle, not both');
    }
    if (values.except !== undefined && values.owner === undefined) {
      throw new UsageError('--except applies to --owner');
    }
    let revoked: number;
    let text: string;
    if (values.handle !== undefined) {
      const handle = handleArg('--handle', values.handle);
      revoked = await withSessions(values, io, 'revoke', async (sessions) => {
        const live = await sessions.revoke(handle);
        return live ? 1 : 0;
      });
      text =
        revoked === 1
          ? 'Revoked 1 session.'
          : 'Revoked 0 sessions: no live session has that handle.';
    } else if (values.owner !== undefined) {
      const owner = ownerArg(values.owner);
      const except = values.except === undefined ? undefined : handleArg('--except', values.except);
      revoked = await withSessions(values, io, 'revoke', async (sessions, storeName) => {
        if (!sessions.store.listByOwner && !sessions.store.destroyByOwner) {
          requireOwnerIndex(sessions, storeName, 'revoke sessions by owner');
        }
        return sessions.revokeAllForOwner(owner, except === undefined ? {} : { except });
      });
      text = `Revoked ${plural(revoked, 'session')} of ${printable(JSON.stringify(owner))}${except === undefined ? '' : `, except ${except}`}.`;
    } else {
      throw new UsageError('give --owner <id> (with --except <handle> to keep one) or --handle');
    }
    if (values.json) writeJson(io, { revoked });
    else io.out.write(`${text}\n`);
    return EXIT_OK;
  },
};

const count: Command = {
  summary: 'Count live sessions, in all or per user',
  help: `Usage: satchel sessions count [--owner <id> ...] [options]

Without --owner, counts every live session ("N live sessions", or with --json
{ sessions: N }) on stores that can count without reading each record
(sqlite, postgres); on the others this exits 2 rather than scan the store.
With --owner, counts the live sessions of each user: a table of OWNER and
SESSIONS, or with --json an array of { owner, sessions }.

  satchel sessions count
  satchel sessions count --owner 42 --owner 43

${STORES_NOTE}

Options:
  --owner <id>          A user whose sessions to count (repeatable)
${COMMON_OPTIONS}
`,
  async run(args, io) {
    const { values } = parse(args, {
      ...storeOptionSpecs(),
      owner: { type: 'string', multiple: true },
      json: { type: 'boolean' },
    });
    if (values.owner === undefined) {
      const total = await withSessions(values, io, 'count', async (sessions, storeName) => {
        if (!sessions.store.count) {
          throw new UsageError(
            `the ${storeName} store cannot count every session without reading each one (sqlite, postgres can); give --owner <id>`,
          );
        }
        return sessions.count();
      });
      if (values.json) writeJson(io, { sessions: total });
      else io.out.write(`${total} live ${total === 1 ? 'session' : 'sessions'}\n`);
      return EXIT_OK;
    }
    const owners = [...new Set(values.owner.map(ownerArg))];
    const counts = await withSessions(values, io, 'count', async (sessions, storeName) => {
      requireOwnerIndex(sessions, storeName, 'count sessions by owner');
      const out: { owner: string; sessions: number }[] = [];
      for (const owner of owners) {
        out.push({ owner, sessions: (await sessions.listByOwner(owner)).length });
      }
      return out;
    });
    if (values.json) writeJson(io, counts);
    else
      io.out.write(
        formatTable(
          ['OWNER', 'SESSIONS'],
          counts.map((c) => [printable(c.owner), String(c.sessions)]),
        ),
      );
    return EXIT_OK;
  },
};

export const sessionsCommand: Command = {
  summary: "List, count and revoke a user's sessions",
  help: OVERVIEW,
  subcommands: { list, revoke, count },
  async run() {
    // main() dispatches to the subcommands; never called.
    throw new UsageError('expected a command: list, revoke or count');
  },
};
