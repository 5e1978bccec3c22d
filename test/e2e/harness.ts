/**
 * Runs the shopping-cart example as a real process, the way `npm start` does,
 * and talks to it over HTTP. Every process started here is tracked by PID and
 * stopped by `stopAll()`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

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
  /** Every cookie the server set and has not deleted, by name, as a browser keeps them. */
  readonly jar = new Map<string, string>();

  constructor(public base: string) {}

  /** The session cookie's value (the session ID). */
  get cookie(): string | undefined {
    return this.jar.get('sessionid');
  }

  set cookie(value: string | undefined) {
    if (value === undefined) this.jar.delete('sessionid');
    else this.jar.set('sessionid', value);
  }

  async request(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.jar.size > 0 && !headers.has('cookie')) {
      headers.set('cookie', [...this.jar].map(([name, value]) => `${name}=${value}`).join('; '));
    }
    const res = await fetch(new URL(path, this.base), {
      ...init,
      headers,
      redirect: 'manual',
      signal: AbortSignal.timeout(10_000),
    });
    for (const header of res.headers.getSetCookie()) {
      const match = /^([^=;\s]+)=([^;]*)/.exec(header);
      if (match === null) continue;
      const gone = /Max-Age=0(;|$)/i.test(header) || /Expires=Thu, 01 Jan 1970/i.test(header);
      if (gone) this.jar.delete(match[1]!);
      else this.jar.set(match[1]!, match[2]!);
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

/** A name no other run uses: `<base>_<pid>_<time>_<random>`, safe in SQL and Redis keys. */
export function uniqueName(base: string): string {
  return `${base}_${process.pid}_${Date.now()}_${Math.random().toString(36).slice(2, 8)}`;
}
