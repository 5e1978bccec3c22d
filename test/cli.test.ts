/**
 * The `satchel` command, run as a real process: `node --import tsx src/cli/index.ts`.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionStore, StoredSession } from '../src/index.js';
import { fileStore } from '../src/stores/file.js';
import { sqliteStore } from '../src/stores/sqlite.js';

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
    const run = await satchel(['clearsessions'], {
      SATCHEL_SQLITE_PATH: join(dir, 'no-such-folder', 'sessions.db'),
    });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^satchel clearsessions: \[sqlite\] cannot open .+\n$/);
    expect(run.stderr.split('\n')).toHaveLength(2);
  });

  it('exits 2 on an unknown SATCHEL_STORE', async () => {
    const run = await satchel(['clearsessions'], { SATCHEL_STORE: 'mongo' });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('unknown SATCHEL_STORE "mongo"; expected one of: sqlite, file');
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
      expect(run.stdout).toContain('keygen');
    },
  );

  it.each([
    [['clearsessions', '--help']],
    [['clearsessions', '-h']],
    [['keygen', '--help']],
    [['keygen', '-h']],
    [['help', 'clearsessions']],
  ])('prints the command help for %j and exits 0', async (args) => {
    const run = await satchel(args);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Usage: satchel (clearsessions|keygen) \[options\]/);
    expect(run.stderr).toBe('');
  });

  it('prints the version', async () => {
    const run = await satchel(['--version']);
    expect(run).toMatchObject({ code: 0, stdout: expect.stringMatching(/^\d+\.\d+\.\d+/) });
  });

  it.each([
    [['frobnicate'], 'satchel: unknown command "frobnicate"'],
    [['--frobnicate'], 'satchel: unknown option "--frobnicate"'],
    [['keygen', '--length', '5'], "satchel keygen: Unknown option '--length'"],
    [['keygen', 'extra'], 'satchel keygen: Unexpected argument'],
    [['help', 'frobnicate'], 'satchel: unknown command "frobnicate"'],
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
