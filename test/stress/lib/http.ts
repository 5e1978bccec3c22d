/**
 * A small HTTP client for the stress suites: one keep-alive `http.Agent`
 * with a bounded number of sockets (so a thousand requests in flight do not
 * open a thousand connections), and a cookie jar per simulated browser.
 */
import { Agent, request } from 'node:http';

export interface Reply {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
  setCookie: string[];
}

export interface RequestOptions {
  method?: string;
  cookie?: string | undefined;
  headers?: Record<string, string>;
  /** Fails the request (rejects) after this many milliseconds. @default 30_000 */
  timeoutMs?: number;
  /** Aborts the request: the client goes away, as a closed browser tab does. */
  signal?: AbortSignal;
}

export class Client {
  readonly agent: Agent;

  constructor(
    readonly base: string,
    maxSockets = 64,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
  }

  request(path: string, options: RequestOptions = {}): Promise<Reply> {
    const url = new URL(path, this.base);
    const headers: Record<string, string> = { ...options.headers };
    if (options.cookie !== undefined) headers.cookie = options.cookie;
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method: options.method ?? 'GET',
          headers,
          agent: this.agent,
          ...(options.signal && { signal: options.signal }),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () => {
            const raw = res.headers['set-cookie'];
            resolve({
              status: res.statusCode ?? 0,
              body: Buffer.concat(chunks).toString('utf8'),
              headers: res.headers,
              setCookie: raw === undefined ? [] : raw,
            });
          });
        },
      );
      req.setTimeout(options.timeoutMs ?? 30_000, () =>
        req.destroy(new Error(`timed out: ${req.method} ${path}`)),
      );
      req.on('error', reject);
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** The value a browser would keep for cookie `name` after `reply`: unchanged, new, or deleted (undefined). */
export function cookieAfter(
  reply: Pick<Reply, 'setCookie'>,
  name: string,
  before: string | undefined,
): string | undefined {
  let value = before;
  for (const header of reply.setCookie) {
    const match = /^([^=]+)=([^;]*)/.exec(header);
    if (!match || match[1] !== name) continue;
    value = /;\s*Max-Age=0(;|$)/i.test(header) ? undefined : match[2];
  }
  return value;
}

/** One simulated browser: a cookie jar over a client. */
export class Browser {
  cookie: string | undefined;

  constructor(
    readonly client: Client,
    readonly cookieName = 'sessionid',
  ) {}

  async fetch(path: string, options: RequestOptions = {}): Promise<Reply> {
    const reply = await this.client.request(path, {
      ...options,
      cookie: this.cookie === undefined ? undefined : `${this.cookieName}=${this.cookie}`,
    });
    this.cookie = cookieAfter(reply, this.cookieName, this.cookie);
    return reply;
  }
}
