/**
 * Runs the shopping-cart example as a real process, the way `npm start` does,
 * and talks to it over HTTP. Every process started here is tracked by PID and
 * stopped by `stopAll()`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { describe, it } from 'vitest';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVER = 'examples/shopping-cart/server.ts';

/** A port nothing listens on right now, picked by the OS. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface AppProcess {
  pid: number;
  /** The base URL the server printed, e.g. http://127.0.0.1:40123/ */
  url: string;
  stdout(): string;
  stderr(): string;
  exited: Promise<Exit>;
  /** Signals the process by PID and waits for it to exit (SIGKILL after `timeoutMs`). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<Exit>;
}

const running = new Set<AppProcess>();

/** The environment for a child: this one without SATCHEL_*, HOST and PORT, plus `env`. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('SATCHEL_') && name !== 'HOST' && name !== 'PORT') base[name] = value;
  }
  return { ...base, ...env };
}

/** Spawns `node --import tsx examples/shopping-cart/server.ts` without waiting for anything. */
export function spawnServer(env: Record<string, string>): {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<Exit>;
} {
  const child = spawn(process.execPath, ['--import', 'tsx', SERVER], {
    cwd: ROOT,
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
  });
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return { child, out: () => out, err: () => err, exited };
}

/** Starts the server and resolves once it prints its URL. */
export async function startServer(
  env: Record<string, string>,
  timeoutMs = 20_000,
): Promise<AppProcess> {
  const { child, out, err, exited } = spawnServer({ HOST: '127.0.0.1', ...env });
  const pid = child.pid!;
  let done = false;
  const app: AppProcess = {
    pid,
    url: '',
    stdout: out,
    stderr: err,
    exited,
    async stop(signal = 'SIGTERM', stopTimeoutMs = 10_000) {
      running.delete(app);
      if (!done) {
        try {
          process.kill(pid, signal);
        } catch {
          // Already gone.
        }
      }
      const timer = setTimeout(() => {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }, stopTimeoutMs);
      const exit = await exited;
      clearTimeout(timer);
      return exit;
    },
  };
  void exited.then(() => {
    done = true;
  });
  running.add(app);

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`server did not start within ${timeoutMs} ms\n${out()}\n${err()}`));
    }, timeoutMs);
    const onData = () => {
      const match = /running at (http:\/\/\S+\/)/.exec(out());
      if (match?.[1] === undefined) return;
      cleanup();
      resolve(match[1]);
    };
    const onExit = () => {
      cleanup();
      reject(new Error(`server exited before it started\n${out()}\n${err()}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.off('exit', onExit);
    };
    child.stdout!.on('data', onData);
    child.once('exit', onExit);
  }).catch(async (error: unknown) => {
    await app.stop('SIGKILL');
    throw error;
  });
  app.url = url;
  return app;
}

/** Stops every server still running; for afterAll. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((app) => app.stop()));
}

/** A cookie-keeping HTTP client: one visitor, without a browser. */
export class Visitor {
  cookie: string | undefined;

  constructor(public base: string) {}

  async request(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.cookie !== undefined) headers.set('cookie', `sessionid=${this.cookie}`);
    const res = await fetch(new URL(path, this.base), {
      ...init,
      headers,
      redirect: 'manual',
      signal: AbortSignal.timeout(10_000),
    });
    for (const header of res.headers.getSetCookie()) {
      const match = /^sessionid=([^;]*)/.exec(header);
      if (match === null) continue;
      this.cookie = /Max-Age=0(;|$)/i.test(header) ? undefined : match[1];
    }
    return res;
  }

  /** GETs `path` and returns the HTML. */
  async page(path: string): Promise<{ status: number; html: string }> {
    const res = await this.request(path);
    return { status: res.status, html: await res.text() };
  }

  /** POSTs a form the way a browser without JavaScript does. */
  post(path: string, form: Record<string, string>): Promise<Response> {
    return this.request(path, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });
  }

  /** The CSRF token from the forms of a page. */
  async csrf(path = '/'): Promise<string> {
    const { html } = await this.page(path);
    const token = /name="csrf" value="([^"]+)"/.exec(html)?.[1];
    if (token === undefined) throw new Error(`no CSRF token on ${path}`);
    return token;
  }
}

/** item → quantity, read from the cart page's HTML. */
export function cartOf(html: string): Record<string, number> {
  const cart: Record<string, number> = {};
  for (const match of html.matchAll(
    /<li data-item="([^"]*)">[\s\S]*?<span class="qty">x(\d+)<\/span>/g,
  )) {
    cart[decodeEntities(match[1]!)] = Number(match[2]);
  }
  return cart;
}

function decodeEntities(text: string): string {
  return text
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&quot;', '"')
    .replaceAll('&#39;', "'")
    .replaceAll('&amp;', '&');
}

// ---------------------------------------------------------------------------
// The local services the server stores need.

export const REDIS_URL = 'redis://127.0.0.1:6379';
export const DATABASE_URL = 'postgres://127.0.0.1:5432/postgres';

/** A name no other run uses: `<base>_<pid>_<time>_<random>`, safe in SQL and Redis keys. */
export function uniqueName(base: string): string {
  return `${base}_${process.pid}_${Date.now()}_${Math.random().toString(36).slice(2, 8)}`;
}

/** Why Redis at REDIS_URL cannot be used, or undefined when it answers PING. */
export async function redisUnreachable(): Promise<string | undefined> {
  const probe = new Redis(REDIS_URL, {
    lazyConnect: true,
    connectTimeout: 1_000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  let cause: Error | undefined;
  probe.on('error', (err: Error) => {
    cause ??= err;
  });
  try {
    await probe.connect();
    await probe.ping();
    return undefined;
  } catch (err) {
    return `Redis at ${REDIS_URL} is unreachable (${(cause ?? (err as Error)).message})`;
  } finally {
    probe.disconnect();
  }
}

/**
 * DATABASE_URL for this process's own pg clients: the store connects as the
 * OS user when the URL names none and USER is unset; a bare pg client does not.
 */
export function adminDatabaseUrl(): string {
  const url = new URL(DATABASE_URL);
  if (url.username === '' && !process.env.PGUSER && !process.env.USER) {
    url.username = userInfo().username;
  }
  return url.toString();
}

/** Why PostgreSQL at DATABASE_URL cannot be used, or undefined when it answers. */
export async function postgresUnreachable(): Promise<string | undefined> {
  const client = new pg.Client({
    connectionString: adminDatabaseUrl(),
    connectionTimeoutMillis: 2_000,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (err) {
    const error = err as NodeJS.ErrnoException;
    return `PostgreSQL at ${DATABASE_URL} is unreachable (${error.message || error.code || String(err)})`;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Drops the sessions table `table` and its locks table; nothing else. */
export async function dropTable(table: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminDatabaseUrl() });
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query(`DROP TABLE IF EXISTS "${table}", "${table}_locks"`);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * `describe(name, body)` when the service is there (`missing` undefined).
 * When it is not: under CI=true one failing case saying why (a missing
 * service is a failure there), elsewhere a skipped suite and a printed reason.
 */
export function describeWithService(
  name: string,
  missing: string | undefined,
  body: () => void,
): void {
  if (missing === undefined) {
    describe(name, body);
  } else if (process.env.CI === 'true') {
    describe(name, () => {
      it('needs the service', () => {
        throw new Error(`${missing}; CI=true makes a missing service a failure, not a skip`);
      });
    });
  } else {
    console.warn(`[e2e] skipping "${name}": ${missing}`);
    describe.skip(`${name} (skipped: ${missing})`, body);
  }
}
