/**
 * The `satchel` command, run as a real process: `node --import tsx src/cli/index.ts`.
 */
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maskUrl, StoreEnvError, storeFromEnv, UnknownStoreError } from '../src/cli/config.js';
import { progressLine, startProgress } from '../src/cli/progress.js';
import {
  createSessions,
  type Sessions,
  type SessionStore,
  type StoredSession,
} from '../src/index.js';
import { fileStore } from '../src/stores/file.js';
import { migrate, postgresStore } from '../src/stores/postgres.js';
import { redisStore } from '../src/stores/redis.js';
import { sqliteStore } from '../src/stores/sqlite.js';
import { uniqueName } from './e2e/harness.js';
import {
  adminDatabaseUrl,
  DATABASE_URL,
  describeWithService,
  dropTable,
  postgresUnreachable,
  REDIS_URL,
  redisUnreachable,
} from './support/services.js';
import { exchange } from './helpers.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with `args` and only the SATCHEL_* variables in `env`; killed after 20 s. */
function satchel(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const base: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('SATCHEL_')) base[name] = value;
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', ...args], {
      cwd: ROOT,
      env: { ...base, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 20_000,
      killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'satchel-cli-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function record(expiresAt: number): StoredSession {
  return { data: '{"cart":["awesome-item"]}', version: 1, expiresAt, createdAt: Date.now() - 1000 };
}

/** Stores two expired and two live sessions through the store API; returns the live keys. */
async function seed(store: SessionStore): Promise<string[]> {
  const now = Date.now();
  expect(await store.create('expired-1', record(now - 60_000))).toBe(true);
  expect(await store.create('expired-2', record(now - 1))).toBe(true);
  expect(await store.create('live-1', record(now + 3_600_000))).toBe(true);
  expect(await store.create('live-2', record(now + 86_400_000))).toBe(true);
  await store.close();
  return ['live-1', 'live-2'];
}

describe('satchel keygen', () => {
  it('prints a fresh 32-byte base64url secret each time', async () => {
    const [a, b] = await Promise.all([satchel(['keygen']), satchel(['keygen'])]);
    for (const run of [a, b]) {
      expect(run.code).toBe(0);
      expect(run.stderr).toBe('');
      expect(run.stdout).toMatch(/^[A-Za-z0-9_-]{43}\n$/);
      expect(Buffer.from(run.stdout.trim(), 'base64url')).toHaveLength(32);
    }
    expect(a.stdout).not.toBe(b.stdout);
  });
});

describe('satchel clearsessions', () => {
  it('removes only the expired sessions from a SQLite database', async () => {
    const path = join(dir, 'sessions.db');
    const live = await seed(sqliteStore({ path }));

    const run = await satchel(['clearsessions'], {
      SATCHEL_STORE: 'sqlite',
      SATCHEL_SQLITE_PATH: path,
    });
    expect(run).toMatchObject({ code: 0, stdout: 'Removed 2 expired sessions.\n', stderr: '' });

    const db = new Database(path, { readonly: true });
    try {
      const keys = db.prepare('SELECT key FROM satchel_sessions ORDER BY key').pluck().all();
      expect(keys).toEqual(live);
    } finally {
      db.close();
    }

    const again = await satchel(['clearsessions'], { SATCHEL_SQLITE_PATH: path });
    expect(again).toMatchObject({ code: 0, stdout: 'Removed 0 expired sessions.\n' });
  });

  it('removes only the expired sessions from a file-store folder', async () => {
    const files = join(dir, 'files');
    const live = await seed(fileStore({ dir: files }));

    const run = await satchel(['clearsessions'], {
      SATCHEL_STORE: 'file',
      SATCHEL_FILE_PATH: files,
    });
    expect(run).toMatchObject({ code: 0, stdout: 'Removed 2 expired sessions.\n', stderr: '' });
    expect((await readdir(files)).sort()).toEqual(live.map((key) => `satchel-${key}`));

    const store = fileStore({ dir: files });
    try {
      for (const key of live) expect(await store.get(key)).toMatchObject({ version: 1 });
    } finally {
      await store.close();
    }
  });

  it('takes the store from options over the environment', async () => {
    const files = join(dir, 'files-by-option');
    await seed(fileStore({ dir: files }));
    const run = await satchel(['clearsessions', '--store', 'file', '--file-path', files, '-q'], {
      SATCHEL_STORE: 'sqlite',
      SATCHEL_SQLITE_PATH: join(dir, 'unused.db'),
    });
    expect(run).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(await readdir(files)).toHaveLength(2);
  });

  it('says "1 expired session" in the singular', async () => {
    const path = join(dir, 'one.db');
    const store = sqliteStore({ path });
    await store.create('old', record(Date.now() - 1000));
    await store.close();
    const run = await satchel(['clearsessions'], { SATCHEL_SQLITE_PATH: path });
    expect(run.stdout).toBe('Removed 1 expired session.\n');
  });

  it('exits 1 with a one-line message when the store cannot be opened', async () => {
    const path = join(dir, 'not-a-database.db');
    await writeFile(
      path,
      'this is not an SQLite database, only text long enough to be read\n'.repeat(20),
    );
    const run = await satchel(['clearsessions'], { SATCHEL_SQLITE_PATH: path });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^satchel clearsessions: \[sqlite\] .+: file is not a database\n$/);
    expect(run.stderr.split('\n')).toHaveLength(2);
  });

  it('exits 2 on an unknown SATCHEL_STORE, naming the closest store', async () => {
    const run = await satchel(['clearsessions'], { SATCHEL_STORE: 'mongo' });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('unknown SATCHEL_STORE "mongo"; expected one of: sqlite, file');
    const typo = await satchel(['clearsessions', '--store', 'sqlit']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('unknown --store "sqlit"; did you mean "sqlite"?');
  });

  it('exits 2 for the memory store, which lives inside the server process', async () => {
    const run = await satchel(['clearsessions', '--store', 'memory']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('memory store lives inside each server process');
  });
});

describe('satchel usage', () => {
  it.each([[['--help']], [['-h']], [['help']]])(
    'prints the overview for %j and exits 0',
    async (args) => {
      const run = await satchel(args);
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(/^Usage: satchel <command>/);
      expect(run.stdout).toContain('clearsessions');
      expect(run.stdout).toContain('migrate');
      expect(run.stdout).toContain('keygen');
      expect(run.stdout).toContain('SATCHEL_DATABASE_URL');
    },
  );

  it.each([
    [['clearsessions', '--help']],
    [['clearsessions', '-h']],
    [['keygen', '--help']],
    [['keygen', '-h']],
    [['help', 'clearsessions']],
    [['migrate', '--help']],
    [['help', 'migrate']],
  ])('prints the command help for %j and exits 0', async (args) => {
    const run = await satchel(args);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Usage: satchel (clearsessions|keygen|migrate) \[options\]/);
    expect(run.stderr).toBe('');
  });

  it('prints the version', async () => {
    const run = await satchel(['--version']);
    expect(run).toMatchObject({ code: 0, stdout: expect.stringMatching(/^\d+\.\d+\.\d+/) });
  });

  it.each([
    [['frobnicate'], 'satchel: unknown command "frobnicate"\n'],
    [['--frobnicate'], 'satchel: unknown option "--frobnicate"\n'],
    [['keygen', '--length', '5'], 'satchel keygen: unknown option "--length"\n'],
    [['keygen', 'extra'], 'satchel keygen: unexpected argument "extra"'],
    [['help', 'frobnicate'], 'satchel: unknown command "frobnicate"\n'],
    [['clearsesions'], 'satchel: unknown command "clearsesions"; did you mean "clearsessions"?'],
    [['help', 'migrat'], 'satchel: unknown command "migrat"; did you mean "migrate"?'],
    [['sesions', 'list'], 'satchel: unknown command "sesions"; did you mean "sessions"?'],
    [['sessions', 'lst'], 'satchel sessions: unknown command "lst"; did you mean "list"?'],
    [['--verison'], 'satchel: unknown option "--verison"; did you mean "--version"?'],
    [
      ['clearsessions', '--sqlite-pth', 'x.db'],
      'satchel clearsessions: unknown option "--sqlite-pth"; did you mean "--sqlite-path"?',
    ],
    [
      ['clearsessions', '--sqlite_path', 'x.db'],
      'satchel clearsessions: unknown option "--sqlite_path"; did you mean "--sqlite-path"?',
    ],
    [
      ['sessions', 'list', '--ownr', '42'],
      'satchel sessions list: unknown option "--ownr"; did you mean "--owner"?',
    ],
  ])('exits 2 on a usage error: %j', async (args, message) => {
    const run = await satchel(args);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(message);
    expect(run.stderr).toContain('--help" for usage');
  });

  it('exits 2 and prints the overview when no command is given', async () => {
    const run = await satchel([]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^Usage: satchel <command>/);
  });
});

describe('satchel sessions', () => {
  interface Login {
    owner: string;
    userAgent: string;
    /** The session ID, as the browser's cookie holds it. */
    cookie: string;
    handle: string;
  }

  let env: Record<string, string>;
  let ann: Login[];
  let bob: Login;

  const open = () => createSessions({ store: sqliteStore({ path: env.SATCHEL_SQLITE_PATH }) });

  /** An anonymous visitor fills a cart, then logs in: cycleKey and setOwner, as an app does. */
  async function login(sessions: Sessions, owner: string, userAgent: string): Promise<Login> {
    const anonymous = await exchange(sessions, undefined, (s) => s.set('cart', [`${owner}-item`]));
    const loggedIn = await exchange(sessions, anonymous.value, (s) => {
      s.cycleKey();
      s.setOwner(owner, { userAgent });
    });
    let handle: string | undefined;
    await exchange(sessions, loggedIn.value, (s) => {
      handle = s.handle;
    });
    return { owner, userAgent, cookie: loggedIn.value!, handle: handle! };
  }

  /** What a request with this cookie finds now: its owner and cart. */
  async function find(login: Login): Promise<{ owner?: string; cart?: string[] }> {
    const sessions = open();
    try {
      let found = {};
      await exchange(sessions, login.cookie, (s) => {
        found = { owner: s.owner, cart: s.get('cart') };
      });
      return found;
    } finally {
      await sessions.close();
    }
  }

  const everyId = () => [...ann, bob].map((l) => l.cookie);

  beforeAll(async () => {
    env = { SATCHEL_STORE: 'sqlite', SATCHEL_SQLITE_PATH: join(dir, 'owners.db') };
    const sessions = open();
    try {
      ann = [
        await login(sessions, 'ann', 'Firefox on Linux'),
        await login(sessions, 'ann', 'Safari on iOS'),
        await login(sessions, 'ann', 'Tablet \u001b[31mred\u001b[0m'),
      ];
      bob = await login(sessions, 'bob', 'Chrome on Android');
    } finally {
      await sessions.close();
    }
  });

  it('lists a user’s sessions as an aligned table, by handle, never by session ID', async () => {
    const run = await satchel(['sessions', 'list', '--owner', 'ann'], env);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const [header, ...rows] = run.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^HANDLE +CREATED +LAST SEEN +EXPIRES +DEVICE$/);
    expect(rows).toHaveLength(3);
    const at = (title: string) => header!.indexOf(title);
    const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
    for (const row of rows) {
      expect(row.slice(0, 43)).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(row.slice(at('CREATED'), at('CREATED') + 20)).toMatch(iso);
      expect(row.slice(at('LAST SEEN'), at('LAST SEEN') + 20)).toMatch(iso);
      expect(row.slice(at('EXPIRES'), at('EXPIRES') + 20)).toMatch(iso);
    }
    expect(rows.map((row) => row.slice(0, 43)).sort()).toEqual(ann.map((l) => l.handle).sort());
    expect(rows.map((row) => row.slice(at('DEVICE'))).sort()).toEqual([
      'Firefox on Linux',
      'Safari on iOS',
      // A user agent is the visitor's to choose: no escape sequence reaches the terminal.
      'Tablet \\u{1b}[31mred\\u{1b}[0m',
    ]);
    expect(run.stdout).not.toContain(bob.handle);
    for (const id of everyId()) expect(run.stdout).not.toContain(id);
  });

  it('lists as JSON with --json, and says when a user has no sessions', async () => {
    const [json, none, noneJson] = await Promise.all([
      satchel(['sessions', 'list', '--owner', 'ann', '--json'], env),
      satchel(['sessions', 'list', '--owner', 'nobody'], env),
      satchel(['sessions', 'list', '--owner', 'nobody', '--json'], env),
    ]);
    expect(json).toMatchObject({ code: 0, stderr: '' });
    const list = JSON.parse(json.stdout) as Record<string, any>[];
    expect(list.map((s) => s.handle).sort()).toEqual(ann.map((l) => l.handle).sort());
    for (const summary of list) {
      expect(Object.keys(summary)).toEqual([
        'handle',
        'createdAt',
        'lastSeenAt',
        'expiresAt',
        'device',
      ]);
      const login = ann.find((l) => l.handle === summary.handle)!;
      expect(summary.device).toEqual({ userAgent: login.userAgent });
      const [created, seen, expires] = [summary.createdAt, summary.lastSeenAt, summary.expiresAt];
      expect(Date.parse(created)).toBeLessThanOrEqual(Date.parse(seen));
      expect(Date.parse(seen)).toBeLessThanOrEqual(Date.now());
      expect(Date.parse(expires)).toBeGreaterThan(Date.now());
    }
    expect(json.stdout).toContain('\\u001b[31m');
    for (const id of everyId()) expect(json.stdout).not.toContain(id);
    expect(none).toMatchObject({ code: 0, stdout: 'No live sessions for owner "nobody".\n' });
    expect(noneJson).toMatchObject({ code: 0, stdout: '[]\n' });
  });

  it('counts the sessions of one or more users', async () => {
    const [table, json] = await Promise.all([
      satchel(['sessions', 'count', '--owner', 'ann', '--owner', 'bob', '--owner', 'nobody'], env),
      satchel(['sessions', 'count', '--owner', 'ann', '--json'], env),
    ]);
    expect(table).toEqual({
      code: 0,
      stdout: 'OWNER   SESSIONS\nann     3\nbob     1\nnobody  0\n',
      stderr: '',
    });
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual([{ owner: 'ann', sessions: 3 }]);
  });

  it('revokes one session by handle: its next request finds no session, the others are kept', async () => {
    const [phone] = ann.splice(1, 1);
    const run = await satchel(['sessions', 'revoke', '--handle', phone!.handle], env);
    expect(run).toEqual({ code: 0, stdout: 'Revoked 1 session.\n', stderr: '' });
    expect(await find(phone!)).toEqual({ owner: undefined, cart: undefined });
    expect(await find(ann[0]!)).toEqual({ owner: 'ann', cart: ['ann-item'] });

    const [again, againJson] = await Promise.all([
      satchel(['sessions', 'revoke', '--handle', phone!.handle], env),
      satchel(['sessions', 'revoke', '--handle', phone!.handle, '--json'], env),
    ]);
    expect(again).toMatchObject({
      code: 0,
      stdout: 'Revoked 0 sessions: no live session has that handle.\n',
    });
    expect(JSON.parse(againJson.stdout)).toEqual({ revoked: 0 });
  });

  it('takes a handle or an owner id that starts with a dash as the value of its option (one handle in 64 does)', async () => {
    const handle = await satchel(['sessions', 'revoke', '--handle', `-${'a'.repeat(42)}`], env);
    expect(handle).toEqual({
      code: 0,
      stdout: 'Revoked 0 sessions: no live session has that handle.\n',
      stderr: '',
    });
    const owner = await satchel(['sessions', 'list', '--owner', '-1', '--json'], env);
    expect(owner).toEqual({ code: 0, stdout: '[]\n', stderr: '' });
    // An option where the value belongs is still a missing value, not the value.
    const missing = await satchel(['sessions', 'list', '--owner', '--json'], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("'--owner");
  });

  it('revokes every session of a user except one, leaving other users alone', async () => {
    const [keep, other] = ann as [Login, Login];
    const run = await satchel(
      ['sessions', 'revoke', '--owner', 'ann', '--except', keep.handle],
      env,
    );
    expect(run).toEqual({
      code: 0,
      stdout: `Revoked 1 session of "ann", except ${keep.handle}.\n`,
      stderr: '',
    });
    expect(await find(other)).toEqual({ owner: undefined, cart: undefined });
    expect(await find(keep)).toEqual({ owner: 'ann', cart: ['ann-item'] });
    expect(await find(bob)).toEqual({ owner: 'bob', cart: ['bob-item'] });

    const list = await satchel(['sessions', 'list', '--owner', 'ann', '--json'], env);
    expect(JSON.parse(list.stdout).map((s: { handle: string }) => s.handle)).toEqual([keep.handle]);

    const all = await satchel(['sessions', 'revoke', '--owner', 'bob', '--json'], env);
    expect(JSON.parse(all.stdout)).toEqual({ revoked: 1 });
    expect(await find(bob)).toEqual({ owner: undefined, cart: undefined });
  });

  it.concurrent.for([
    [['sessions', 'frob'], 'satchel sessions: unknown command "frob"'],
    [['sessions', 'list'], 'satchel sessions list: --owner <id> is required'],
    [['sessions', 'list', '--owner', ''], '--owner must be a user id of 1 to 256 characters'],
    [['sessions', 'list', '--owner', 'ann', '--frob'], 'unknown option "--frob"'],
    [['sessions', 'list', '--owner', 'ann', 'extra'], 'unexpected argument "extra"'],
    [['sessions', 'revoke'], 'satchel sessions revoke: give --owner <id>'],
    [['sessions', 'revoke', '--owner', 'ann', '--handle', 'h'.repeat(43)], 'not both'],
    [['sessions', 'revoke', '--except', 'h'.repeat(43)], '--except applies to --owner'],
    [['sessions', 'revoke', '--handle', '../../etc/passwd'], '--handle must be a session handle'],
    [
      ['sessions', 'revoke', '--owner', 'ann', '--except', 'x'],
      '--except must be a session handle',
    ],
  ] as [string[], string][])(
    'exits 2 on a usage error: %j',
    async ([args, message], { expect }) => {
      const run = await satchel(args, env);
      expect(run.code).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toContain(message);
      expect(run.stderr).toMatch(/Run "satchel sessions( \w+)? --help" for usage\.\n$/);
    },
  );

  it('counts every live session on a store that can count', async ({ expect }) => {
    const sessions = open();
    const live = await sessions.count().finally(() => sessions.close());
    expect(live).toBeGreaterThan(0);
    const table = await satchel(['sessions', 'count'], env);
    expect(table.code).toBe(0);
    expect(table.stdout).toBe(`${live} live ${live === 1 ? 'session' : 'sessions'}\n`);
    const json = await satchel(['sessions', 'count', '--json'], env);
    expect(JSON.parse(json.stdout)).toEqual({ sessions: live });
  });

  it('exits 2 rather than scan a store that cannot count every session', async ({ expect }) => {
    const run = await satchel(['sessions', 'count'], {
      SATCHEL_STORE: 'file',
      SATCHEL_FILE_PATH: dir,
    });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      'the file store cannot count every session without reading each one',
    );
  });

  it('exits 2 and prints its commands when none is given; usage errors changed nothing', async () => {
    const run = await satchel(['sessions'], env);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^Usage: satchel sessions <command>/);
    expect(await find(ann[0]!)).toEqual({ owner: 'ann', cart: ['ann-item'] });
  });

  it.concurrent.for([
    [['sessions', '--help'], 'Usage: satchel sessions <command>'],
    [['help', 'sessions'], 'Usage: satchel sessions <command>'],
    [['sessions', 'list', '--help'], 'Usage: satchel sessions list --owner <id>'],
    [['help', 'sessions', 'list'], 'Usage: satchel sessions list --owner <id>'],
    [['sessions', 'revoke', '-h'], 'Usage: satchel sessions revoke --owner <id>'],
    [['sessions', 'count', '--help'], 'Usage: satchel sessions count [--owner <id> ...]'],
  ] as [string[], string][])(
    'prints help for %j and exits 0',
    async ([args, usage], { expect }) => {
      const run = await satchel(args);
      expect(run).toMatchObject({ code: 0, stderr: '' });
      expect(run.stdout.startsWith(usage)).toBe(true);
    },
  );

  it('exits 2 with one clear line for stores that keep no sessions it can reach', async () => {
    const [memory, cookie] = await Promise.all([
      satchel(['sessions', 'list', '--owner', 'ann', '--store', 'memory']),
      // No SATCHEL_SECRET needed to be told so.
      satchel(['sessions', 'revoke', '--owner', 'ann'], { SATCHEL_STORE: 'cookie' }),
    ]);
    expect(memory.code).toBe(2);
    expect(memory.stderr).toMatch(
      /^satchel sessions list: the memory store lives inside each server process; there are no sessions to list from here\n/,
    );
    expect(cookie.code).toBe(2);
    expect(cookie.stderr).toMatch(
      /^satchel sessions revoke: the cookie store keeps sessions in the browsers, not on the server: there is nothing to revoke/,
    );
  });

  it('exits 1 with one line when the store cannot be opened', async () => {
    const path = join(dir, 'not-a-database-either.db');
    await writeFile(
      path,
      'this is not an SQLite database, only text long enough to be read\n'.repeat(20),
    );
    const run = await satchel(['sessions', 'count', '--owner', 'ann'], {
      SATCHEL_SQLITE_PATH: path,
    });
    expect(run).toMatchObject({ code: 1, stdout: '' });
    expect(run.stderr).toMatch(/^satchel sessions count: \[sqlite\] .+: file is not a database\n$/);
  });
});

describe('storeFromEnv', () => {
  it('refuses unknown names and malformed variables with a StoreEnvError naming the variable', async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [
        { SATCHEL_STORE: 'mongo' },
        /^unknown SATCHEL_STORE "mongo"; expected one of: sqlite, file, memory, redis, postgres, cached, cookie$/,
      ],
      [
        { SATCHEL_STORE: 'redis', SATCHEL_REDIS_URL: 'localhost:6379' },
        /^SATCHEL_REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL/,
      ],
      [
        { SATCHEL_STORE: 'redis', SATCHEL_REDIS_PREFIX: 'a{b}' },
        /prefix must be a string without \{ or \}/,
      ],
      [
        { SATCHEL_STORE: 'postgres', SATCHEL_DATABASE_URL: 'mysql://db/x' },
        /^SATCHEL_DATABASE_URL must be a postgres:\/\//,
      ],
      [
        { SATCHEL_STORE: 'postgres', SATCHEL_DATABASE_TABLE: 'drop table' },
        /table must be a plain identifier/,
      ],
      [
        { SATCHEL_STORE: 'cached', SATCHEL_CACHED_STORE: 'memory' },
        /^unknown SATCHEL_CACHED_STORE "memory"; expected one of: postgres, sqlite, file$/,
      ],
      [
        { SATCHEL_STORE: 'cached', SATCHEL_CACHE: 'memcached' },
        /^unknown SATCHEL_CACHE "memcached"; expected one of: memory, redis$/,
      ],
      [
        { SATCHEL_STORE: 'cached', SATCHEL_CACHE_TTL_MS: '5s' },
        /^SATCHEL_CACHE_TTL_MS must be a positive whole number/,
      ],
      [
        { SATCHEL_STORE: 'cookie' },
        /^the cookie store needs SATCHEL_SECRET: .* \(generate one with: satchel keygen\)$/,
      ],
      [
        { SATCHEL_STORE: 'cookie', SATCHEL_SECRET: ' , ' },
        /^the cookie store needs SATCHEL_SECRET/,
      ],
      [
        { SATCHEL_STORE: 'cookie', SATCHEL_SECRET: 'short-secret' },
        /^SATCHEL_SECRET must be at least 32 characters; got 12 \(generate one with/,
      ],
      [
        { SATCHEL_STORE: 'cookie', SATCHEL_SECRET: `${'k'.repeat(32)},tiny` },
        /^key 2 of SATCHEL_SECRET must be at least 32 characters; got 4 /,
      ],
    ];
    for (const [env, message] of cases) {
      const error = await storeFromEnv(env).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error, JSON.stringify(env)).toBeInstanceOf(StoreEnvError);
      expect((error as Error).message, JSON.stringify(env)).toMatch(message);
    }
    await expect(storeFromEnv({ SATCHEL_STORE: 'nope' })).rejects.toBeInstanceOf(UnknownStoreError);
  });

  it('never puts a secret or a password in an error or a description', async () => {
    const secret = 'not-long-enough-but-secret';
    const error = (await storeFromEnv({ SATCHEL_STORE: 'cookie', SATCHEL_SECRET: secret }).catch(
      (err: unknown) => err,
    )) as Error;
    expect(error.message).not.toContain(secret);

    const choice = await storeFromEnv({
      SATCHEL_STORE: 'postgres',
      SATCHEL_DATABASE_URL: 'postgres://app:hunter2@127.0.0.1:5432/app',
    });
    try {
      expect(choice.description).toBe(
        'postgres (postgres://app:***@127.0.0.1:5432/app, table satchel_sessions)',
      );
      expect(choice.migration).toMatchObject({ table: 'satchel_sessions' });
    } finally {
      await choice.store.close();
    }
  });

  it('opens the cookie store with a key list for rotation, and cached in front of sqlite', async () => {
    const cookie = await storeFromEnv({
      SATCHEL_STORE: 'Cookie',
      SATCHEL_SECRET: `${'a'.repeat(32)}, ${'b'.repeat(40)}`,
    });
    expect(cookie).toMatchObject({ name: 'cookie', store: { kind: 'cookie' } });
    expect(cookie.description).toContain('2 keys');
    expect(cookie.migration).toBeUndefined();
    await cookie.store.close();

    const cached = await storeFromEnv({
      SATCHEL_STORE: 'cached',
      SATCHEL_CACHED_STORE: 'sqlite',
      SATCHEL_SQLITE_PATH: join(dir, 'cached.db'),
    });
    try {
      expect(cached.name).toBe('cached');
      expect(cached.store.name).toBe('cached(sqlite)');
      expect(cached.description).toBe(
        `cached (memory cache in this process, re-read after 5000 ms, in front of sqlite: ${join(dir, 'cached.db')})`,
      );
      expect(cached.migration).toBeUndefined();
    } finally {
      await cached.store.close();
    }
  });
});

describe('satchel clearsessions on the other stores', () => {
  it('says there is nothing to clear for the cookie store, without needing its secret', async () => {
    const run = await satchel(['clearsessions'], { SATCHEL_STORE: 'cookie' });
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(
      /^Nothing to clear: the cookie store keeps sessions in the browsers/,
    );
    expect((await satchel(['clearsessions', '-q', '--store', 'cookie'])).stdout).toBe('');
  });

  it('clears the durable store behind the cached store', async () => {
    const path = join(dir, 'behind-cache.db');
    const live = await seed(sqliteStore({ path }));
    const run = await satchel(['clearsessions'], {
      SATCHEL_STORE: 'cached',
      SATCHEL_CACHED_STORE: 'sqlite',
      SATCHEL_SQLITE_PATH: path,
    });
    expect(run).toMatchObject({ code: 0, stdout: 'Removed 2 expired sessions.\n', stderr: '' });
    const store = sqliteStore({ path });
    try {
      for (const key of live) expect(await store.get(key)).toMatchObject({ version: 1 });
    } finally {
      await store.close();
    }
  });

  it('exits 2 naming the variable when the environment is wrong', async () => {
    const run = await satchel(['clearsessions'], {
      SATCHEL_STORE: 'redis',
      SATCHEL_REDIS_URL: 'localhost:6379',
    });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(
      /^satchel clearsessions: SATCHEL_REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL; got "localhost:6379"\n/,
    );
  });

  it('exits 1 with one line when Redis cannot be reached', async () => {
    const run = await satchel([
      'clearsessions',
      '--store',
      'redis',
      '--redis-url',
      'redis://127.0.0.1:9',
    ]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(
      /^satchel clearsessions: \[redis\] .+ failed: .+ \(redis:\/\/127\.0\.0\.1:9\)\n$/,
    );
  });
});

describe('satchel migrate without PostgreSQL', () => {
  it.each([
    ['sqlite', 'creates its table itself when it opens'],
    ['redis', 'keeps no schema'],
    ['cookie', 'keeps no schema'],
    ['file', 'keeps no schema'],
  ])('says the %s store needs nothing and exits 0, opening nothing', async (store, why) => {
    // An unreachable Redis and a missing secret do not matter: nothing is opened.
    const run = await satchel(['migrate'], {
      SATCHEL_STORE: store,
      SATCHEL_REDIS_URL: 'redis://127.0.0.1:9',
    });
    expect(run).toMatchObject({
      code: 0,
      stdout: `Nothing to migrate: the ${store} store ${why}.\n`,
      stderr: '',
    });
  });

  it('exits 2 when --table or --database-url is given for a store that is not postgres', async () => {
    const run = await satchel(['migrate', '--table', 'sessions'], { SATCHEL_STORE: 'redis' });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      'satchel migrate: --table applies to the postgres store, but the store is redis',
    );
  });

  it('exits 2 on a table name that is not a plain identifier, before connecting', async () => {
    const run = await satchel(['migrate', '--store', 'postgres', '--table', 'x; DROP TABLE y'], {
      SATCHEL_DATABASE_URL: 'postgres://127.0.0.1:9/nowhere',
    });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(
      /^satchel migrate: postgres store: table must be a plain identifier/,
    );
  });

  it('exits 2 on an unknown --store and on options it does not take', async () => {
    const unknown = await satchel(['migrate', '--store', 'mongo']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown --store "mongo"');
    const extra = await satchel(['migrate', '--sqlite-path', 'x.db']);
    expect(extra.code).toBe(2);
    expect(extra.stderr).toContain('unknown option "--sqlite-path"');
  });

  it('exits 1 with one line when the database cannot be reached', async () => {
    const run = await satchel(['migrate'], {
      SATCHEL_STORE: 'postgres',
      SATCHEL_DATABASE_URL: 'postgres://127.0.0.1:9/nowhere',
    });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(
      /^satchel migrate: \[postgres\] migrate failed: .*ECONNREFUSED.*\n$/,
    );
    expect(run.stderr.split('\n')).toHaveLength(2);
  });
});

/** The names of the tables `satchel migrate` creates for `table`, as found in the database. */
async function tablesAndIndexes(admin: pg.Pool, table: string): Promise<string[]> {
  const { rows } = await admin.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c
     WHERE c.relname = ANY($1::text[]) AND pg_table_is_visible(c.oid) ORDER BY 1`,
    [[table, `${table}_locks`, `${table}_expires_at`, `${table}_owner`, `${table}_pkey`]],
  );
  return rows.map((row) => row.name);
}

describeWithService(
  'satchel migrate and clearsessions on PostgreSQL',
  await postgresUnreachable(),
  () => {
    let admin: pg.Pool;
    const tables: string[] = [];

    beforeAll(() => {
      admin = new pg.Pool({ connectionString: adminDatabaseUrl(), max: 2 });
    });

    afterAll(async () => {
      try {
        for (const table of tables) await dropTable(table);
      } finally {
        await admin?.end();
      }
    });

    it('creates the table, its indexes and the locks table; a second run changes nothing', async () => {
      const table = uniqueName('satchel_cli_migrate');
      tables.push(table);
      const env = { SATCHEL_STORE: 'postgres', SATCHEL_DATABASE_URL: DATABASE_URL };

      const first = await satchel(['migrate', '--table', table], env);
      expect(first).toMatchObject({
        code: 0,
        stderr: '',
        stdout: `Migrated table ${table} in ${DATABASE_URL}: created table ${table}, index ${table}_expires_at, index ${table}_owner, table ${table}_locks.\n`,
      });
      expect(await tablesAndIndexes(admin, table)).toEqual(
        [table, `${table}_expires_at`, `${table}_locks`, `${table}_owner`, `${table}_pkey`].sort(),
      );

      const second = await satchel(['migrate'], { ...env, SATCHEL_DATABASE_TABLE: table });
      expect(second).toMatchObject({
        code: 0,
        stderr: '',
        stdout: `Table ${table} in ${DATABASE_URL} is up to date; nothing to migrate.\n`,
      });
      expect(await tablesAndIndexes(admin, table)).toHaveLength(5);
    });

    it('migrates the durable table behind the cached store too', async () => {
      const table = uniqueName('satchel_cli_cached');
      tables.push(table);
      const run = await satchel(['migrate'], {
        SATCHEL_STORE: 'cached',
        SATCHEL_DATABASE_TABLE: table,
      });
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(
        new RegExp(`^Migrated table ${table} in .*: created table ${table},`),
      );
    });

    it('clearsessions removes only the expired sessions', async () => {
      const table = uniqueName('satchel_cli_clear');
      tables.push(table);
      await migrate({ connectionString: DATABASE_URL, table });
      const live = await seed(postgresStore({ connectionString: DATABASE_URL, table }));

      const run = await satchel(['clearsessions', '--store', 'postgres', '--table', table]);
      expect(run).toMatchObject({ code: 0, stdout: 'Removed 2 expired sessions.\n', stderr: '' });

      const { rows } = await admin.query<{ key: string }>(
        `SELECT key FROM "${table}" ORDER BY key`,
      );
      expect(rows.map((row) => row.key)).toEqual(live);
      const again = await satchel(['clearsessions'], {
        SATCHEL_STORE: 'postgres',
        SATCHEL_DATABASE_TABLE: table,
      });
      expect(again).toMatchObject({ code: 0, stdout: 'Removed 0 expired sessions.\n' });
    });

    it('clearsessions exits 1 naming satchel migrate when the table does not exist', async () => {
      const run = await satchel(['clearsessions'], {
        SATCHEL_STORE: 'postgres',
        SATCHEL_DATABASE_TABLE: uniqueName('satchel_cli_missing'),
      });
      expect(run.code).toBe(1);
      expect(run.stderr).toContain('does not exist');
      expect(run.stderr).toContain('satchel migrate');
    });
  },
);

describeWithService('satchel clearsessions on Redis', await redisUnreachable(), () => {
  const prefix = `${uniqueName('satchel-cli')}:`;
  let redis: Redis;

  beforeAll(() => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  });

  afterAll(async () => {
    try {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.unlink(...keys);
    } finally {
      redis?.disconnect();
    }
  });

  it('removes the expired sessions Redis has not expired yet, and keeps the live ones', async () => {
    const store = redisStore({ url: REDIS_URL, prefix });
    const now = Date.now();
    // Redis itself expires records a minute after expiresAt; these are younger.
    expect(await store.create('expired-1', record(now - 5_000))).toBe(true);
    expect(await store.create('expired-2', record(now - 1))).toBe(true);
    expect(await store.create('live-1', record(now + 3_600_000))).toBe(true);
    expect(await store.create('live-2', record(now + 86_400_000))).toBe(true);
    await store.close();
    // Another application's keys in the same Redis are never touched.
    await redis.hset(`other-${prefix}{expired-3}`, 'expiresAt', String(now - 5_000));
    await redis.pexpire(`other-${prefix}{expired-3}`, 60_000);

    const run = await satchel(['clearsessions'], {
      SATCHEL_STORE: 'redis',
      SATCHEL_REDIS_URL: REDIS_URL,
      SATCHEL_REDIS_PREFIX: prefix,
    });
    expect(run).toMatchObject({
      code: 0,
      stdout:
        'Removed 2 expired sessions.\nRedis expires sessions by itself: running this is optional.\n',
      stderr: '',
    });
    expect((await redis.keys(`${prefix}*`)).sort()).toEqual([
      `${prefix}{live-1}`,
      `${prefix}{live-2}`,
    ]);
    expect(await redis.unlink(`other-${prefix}{expired-3}`)).toBe(1);
  });
});

describe('a command that reads or cleans a store never creates it', () => {
  const commands = [
    ['clearsessions'],
    ['sessions', 'count'],
    ['sessions', 'list', '--owner', 'ann'],
    ['sessions', 'revoke', '--owner', 'ann'],
  ];

  it('refuses a missing SQLite file with exit 2, names the path and creates nothing', async () => {
    const path = join(dir, 'typo', 'sesions.db');
    await mkdir(join(dir, 'typo'));
    const runs = await Promise.all(
      commands.map((args) => satchel(args, { SATCHEL_STORE: 'sqlite', SATCHEL_SQLITE_PATH: path })),
    );
    for (const [i, run] of runs.entries()) {
      expect(run.code, commands[i]!.join(' ')).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toContain(`no SQLite database at ${path}: check SATCHEL_SQLITE_PATH`);
    }
    expect(await readdir(join(dir, 'typo'))).toEqual([]);
  });

  it('refuses a missing file-store folder, and cached in front of it, without creating it', async () => {
    const folder = join(dir, 'no-sessions-here');
    const runs = await Promise.all([
      ...commands.map((args) =>
        satchel(args, { SATCHEL_STORE: 'file', SATCHEL_FILE_PATH: folder }),
      ),
      satchel(['clearsessions', '--store', 'cached', '--file-path', folder], {
        SATCHEL_CACHED_STORE: 'file',
      }),
    ]);
    for (const run of runs) {
      expect(run.code).toBe(2);
      expect(run.stderr).toContain(
        `no file-store folder at ${folder}: check SATCHEL_FILE_PATH or --file-path`,
      );
    }
    await expect(stat(folder)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('shows where a relative path points, and refuses a folder given as the SQLite file', async () => {
    const relative = await satchel(['clearsessions', '--sqlite-path', 'no-such-sessions.db']);
    expect(relative.code).toBe(2);
    expect(relative.stderr).toContain(
      `no SQLite database at no-such-sessions.db (${join(ROOT, 'no-such-sessions.db')})`,
    );
    const folder = await satchel(['sessions', 'count'], { SATCHEL_SQLITE_PATH: dir });
    expect(folder.code).toBe(2);
    expect(folder.stderr).toContain(`the SQLite database ${dir} is a folder, not a file`);
  });
});

/** A TCP server that accepts connections and never says a word, as a hung or firewalled service. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function timed(run: Promise<Run>): Promise<Run & { ms: number }> {
  const started = Date.now();
  const result = await run;
  return { ...result, ms: Date.now() - started };
}

describe('an unreachable Redis or PostgreSQL', () => {
  let silent: Awaited<ReturnType<typeof silentServer>>;
  beforeAll(async () => {
    silent = await silentServer();
  });
  afterAll(async () => {
    await silent.close();
  });

  // The bound is 2 s of waiting; the rest is starting node and tsx (about 1 s here).
  const WITHIN_MS = 5_000;

  it('reports a Redis that never answers within about 2 s, the password masked', async () => {
    const run = await timed(
      satchel(['clearsessions'], {
        SATCHEL_STORE: 'redis',
        SATCHEL_REDIS_URL: `redis://:hunter2@127.0.0.1:${silent.port}`,
      }),
    );
    expect(run.code).toBe(1);
    expect(run.ms).toBeLessThan(WITHIN_MS);
    expect(run.stderr).toBe(
      `satchel clearsessions: [redis] no answer from redis://:***@127.0.0.1:${silent.port} within 2 s (is the server up and reachable?)\n`,
    );
  });

  it('reports a PostgreSQL that never answers within about 2 s, the password masked', async () => {
    const url = `postgres://app:hunter2@127.0.0.1:${silent.port}/app`;
    const [count, migrate] = await Promise.all([
      timed(
        satchel(['sessions', 'count'], { SATCHEL_STORE: 'postgres', SATCHEL_DATABASE_URL: url }),
      ),
      timed(satchel(['migrate'], { SATCHEL_STORE: 'postgres', SATCHEL_DATABASE_URL: url })),
    ]);
    for (const run of [count, migrate]) {
      expect(run.code).toBe(1);
      expect(run.ms).toBeLessThan(WITHIN_MS);
      expect(run.stderr).toContain(`postgres://app:***@127.0.0.1:${silent.port}/app`);
      expect(run.stderr).not.toContain('hunter2');
      expect(run.stderr.split('\n')).toHaveLength(2);
    }
    expect(count.stderr).toMatch(/^satchel sessions count: \[postgres\] /);
    expect(migrate.stderr).toMatch(/^satchel migrate: \[postgres\] migrate failed: /);
  });

  it('reports a refused connection at once, with where it tried', async () => {
    const run = await timed(
      satchel(['sessions', 'list', '--owner', '42'], {
        SATCHEL_STORE: 'cached',
        SATCHEL_CACHED_STORE: 'postgres',
        SATCHEL_DATABASE_URL: 'postgres://app:hunter2@127.0.0.1:9/app',
      }),
    );
    expect(run.code).toBe(1);
    expect(run.ms).toBeLessThan(WITHIN_MS);
    expect(run.stderr).toMatch(
      /^satchel sessions list: \[postgres\] .+ \(postgres:\/\/app:\*\*\*@127\.0\.0\.1:9\/app\)\n$/,
    );
  });
});

describe('maskUrl', () => {
  it('hides a password in a query string, not only in the userinfo, from logs and errors', () => {
    expect(maskUrl('postgres://app:hunter2@db:5432/app')).toBe('postgres://app:***@db:5432/app');
    expect(maskUrl('postgres://db/app?user=app&password=hunter2&sslmode=require')).toBe(
      'postgres://db/app?user=***&password=***&sslmode=require',
    );
    expect(maskUrl('rediss://cache:6380/0?token=t0k3n&family=6')).toBe(
      'rediss://cache:6380/0?token=***&family=6',
    );
    // A driver may read a secret from any parameter: only known-harmless ones stay.
    expect(maskUrl('postgres://db/app?sslpassword=x&sslkey=%2Fk&apikey=y&Auth_Token=z')).toBe(
      'postgres://db/app?sslpassword=***&sslkey=***&apikey=***&Auth_Token=***',
    );
    expect(maskUrl('redis://:pw@h/?secret=s#frag')).toBe('redis://:***@h/?secret=***#***');
    // Not a URL the parser accepts: masked by pattern.
    expect(maskUrl('postgres://app:hunter2@[bad/app?password=hunter3')).toBe(
      'postgres://app:***@[bad/app?password=***',
    );
    expect(maskUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
  });

  it('keeps a password given as a query parameter out of the CLI’s messages', async () => {
    const run = await satchel(['migrate'], {
      SATCHEL_STORE: 'postgres',
      SATCHEL_DATABASE_URL: 'postgres://127.0.0.1:9/app?password=hunter2&sslmode=disable',
    });
    expect(run.code).toBe(1);
    expect(run.stderr).not.toContain('hunter2');
    expect(run.stderr).toContain('postgres://127.0.0.1:9/app?password=***&sslmode=disable');
  });
});

describe('the clearsessions progress line', () => {
  /** A stream that records what is written, as a terminal of `columns` would receive it. */
  function terminal(isTTY: boolean, columns = 80) {
    const writes: string[] = [];
    return { writes, stream: { isTTY, columns, write: (text: string) => writes.push(text) } };
  }

  it('draws a bar with counts when the store knows the total, a spinner with a count when not', () => {
    expect(progressLine('Clearing', { removed: 1_500, total: 6_000 }, 2_345, 0, 79)).toBe(
      'Clearing [██████░░░░░░░░░░░░░░░░░░]  25% 1,500 of 6,000 · 2.3s',
    );
    expect(progressLine('Clearing', { removed: 12_000 }, 500, 1, 79)).toBe(
      '⠙ Clearing… 12,000 removed · 0.5s',
    );
    expect(progressLine('Migrating', undefined, 1_000, 0, 79)).toBe('⠋ Migrating… 1.0s');
  });

  it('shortens a long label to fit the terminal, never the counts', () => {
    const line = progressLine(`Clearing ${'x'.repeat(200)}`, { removed: 7, total: 9 }, 0, 0, 60);
    expect(line).toHaveLength(60);
    expect(line).toMatch(/^Clearing x+… \[█+░+\] {2}77% 7 of 9 · 0\.0s$/);
  });

  it('redraws the latest counts on a terminal and erases the line when done', async () => {
    const { writes, stream } = terminal(true);
    const progress = startProgress(stream, 'Clearing', { delayMs: 0, intervalMs: 5 });
    progress.update({ removed: 1_000, total: 4_000 });
    await new Promise((resolve) => setTimeout(resolve, 30));
    progress.update({ removed: 4_000, total: 4_000 });
    await new Promise((resolve) => setTimeout(resolve, 30));
    progress.stop();
    progress.stop();
    expect(writes.some((w) => w.includes('1,000 of 4,000'))).toBe(true);
    expect(writes.some((w) => w.includes(' 100% 4,000 of 4,000'))).toBe(true);
    expect(writes.every((w) => w.startsWith('\r'))).toBe(true);
    expect(writes.at(-1)).toBe('\r\x1b[K');
  });

  it('draws nothing when stderr is not a terminal (a pipe, a cron log)', async () => {
    const { writes, stream } = terminal(false);
    const progress = startProgress(stream, 'Clearing', { delayMs: 0, intervalMs: 5 });
    progress.update({ removed: 10, total: 20 });
    await new Promise((resolve) => setTimeout(resolve, 20));
    progress.stop();
    expect(writes).toEqual([]);
  });

  it('clearsessions on a terminal shows the running count, then only its final line', async () => {
    // 6,000 expired records: long enough (seconds) for the line to be drawn.
    const folder = join(dir, 'many-expired');
    await mkdir(folder, { mode: 0o700 });
    const store = fileStore({ dir: folder });
    await store.create('seed', record(Date.now() - 60_000));
    await store.close();
    const [written] = await readdir(folder);
    await Promise.all(
      Array.from({ length: 5_999 }, (_, i) =>
        copyFile(join(folder, written!), join(folder, `satchel-copy${String(i).padStart(6, '0')}`)),
      ),
    );
    // `script` gives the command a pseudo-terminal, as an operator's shell would.
    const command = `${process.execPath} --import tsx src/cli/index.ts clearsessions --store file --file-path ${folder}`;
    const run = await new Promise<Run>((resolve, reject) => {
      const child = spawn('script', ['-qec', command, '/dev/null'], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 60_000,
      });
      let stdout = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
      });
      child.once('error', reject);
      child.once('close', (code) => resolve({ code, stdout, stderr: '' }));
    });
    expect(run.code).toBe(0);
    // "Erase to the end of the line", spelled out so the patterns below stay readable.
    const output = run.stdout.replaceAll('\x1b[K', '<erase>');
    const frames = output.split('\r').filter((frame) => frame.includes('Clearing expired'));
    expect(frames.length, output).toBeGreaterThan(0);
    const counted =
      /Clearing expired sessions from file .*(\d[\d,]* removed|\d[\d,]* of \d[\d,]*) · \d+\.\ds<erase>$/;
    // On a busy machine the first frame (at 0.5 s) can come before the store's first report.
    const waiting = /^. Clearing expired sessions from file .*… \d+\.\ds<erase>$/;
    for (const frame of frames)
      expect(frame).toMatch(new RegExp(`${counted.source}|${waiting.source}`));
    expect(
      frames.some((frame) => counted.test(frame)),
      output,
    ).toBe(true);
    expect(output).toMatch(/\r<erase>Removed 6,?000 expired sessions\.\r?\n$/);
    expect(await readdir(folder)).toEqual([]);
  });

  it('stays quiet for a run shorter than the delay', async () => {
    const { writes, stream } = terminal(true);
    const progress = startProgress(stream, 'Clearing');
    progress.update({ removed: 3 });
    progress.stop();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(writes).toEqual([]);
  });
});
