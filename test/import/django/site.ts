/**
 * Runs the legacy Django project in this folder under gunicorn, as Debian
 * ships them (python3-django, gunicorn, python3-psycopg2), so the importer
 * tests read sessions real Django wrote. Debian 12 ships Django 3.2; to run the
 * same tests against another Django, put it first on PYTHONPATH (the sites
 * inherit the environment): `PYTHONPATH=/path/to/django5 npx vitest run
 * test/import/django.test.ts` (all pass with Django 5.2.17).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const DIR = fileURLToPath(new URL('.', import.meta.url));
/** Debian's interpreter: a python3 earlier on PATH (pyenv, venv) would not see python3-django. */
export const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** Why Django cannot run here, or undefined when Django, gunicorn and psycopg2 import. */
export async function djangoMissing(): Promise<string | undefined> {
  try {
    await run(PYTHON, ['-c', 'import django, gunicorn, psycopg2'], { timeout: 20_000 });
    return undefined;
  } catch (err) {
    return `Django is not installed for ${PYTHON} (apt-get install python3-django gunicorn python3-psycopg2): ${(err as Error).message.split('\n').slice(-2).join(' ')}`;
  }
}

export interface DjangoSite {
  base: string;
  /** Django's major and minor version. */
  version: [number, number];
  /** Calls /login/ with `query` and returns the session key Django set in its cookie. */
  login(query?: string): Promise<string>;
  /** The user Django itself sees for the session `key` (null once the session is gone). */
  whoami(key: string): Promise<string | null>;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Migrates (db engine) and starts gunicorn with `env` (see legacy/settings.py); resolves once it answers. */
export async function startDjango(env: Record<string, string>): Promise<DjangoSite> {
  const fullEnv = { ...process.env, ...env, PYTHONDONTWRITEBYTECODE: '1' };
  if ((env.DJANGO_SESSION_ENGINE ?? 'db') === 'db') {
    await run(PYTHON, ['manage.py', 'migrate', '-v0'], { cwd: DIR, env: fullEnv, timeout: 60_000 });
  }
  const port = await freePort();
  const child: ChildProcess = spawn(
    PYTHON,
    ['-m', 'gunicorn', '-b', `127.0.0.1:${port}`, '-w', '1', '--chdir', DIR, 'legacy.wsgi'],
    { env: fullEnv, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4_000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  let version: [number, number] | undefined;
  while (version === undefined) {
    if (child.exitCode !== null) throw new Error(`gunicorn exited: ${stderr}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`gunicorn did not answer within 20 s: ${stderr}`);
    }
    try {
      const res = await fetch(`${base}/version/`);
      version = ((await res.json()) as { version: [number, number] }).version;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  const cookieName = 'sessionid';
  return {
    base,
    version,
    async login(query = '') {
      const res = await fetch(`${base}/login/${query}`);
      await res.text();
      const cookie = res.headers.getSetCookie().find((c) => c.startsWith(`${cookieName}=`));
      if (!cookie) throw new Error(`Django set no session cookie (status ${res.status})`);
      return cookie.slice(cookieName.length + 1, cookie.indexOf(';'));
    },
    async whoami(key) {
      const res = await fetch(`${base}/whoami/`, { headers: { cookie: `${cookieName}=${key}` } });
      return ((await res.json()) as { user: string | null }).user;
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
