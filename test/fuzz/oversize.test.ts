/**
 * Oversized input, each with its clear answer:
 * - a Cookie (or any) header past Node's 16 KiB header limit: Node itself
 *   answers 431 Request Header Fields Too Large; satchel never sees it;
 * - thousands of cookies under the limit: parsed in linear time, the first
 *   `sessionid` wins, and a forged one is not adopted;
 * - a session over `maxPayloadBytes`: PayloadTooLargeError, nothing saved;
 * - a cookie that would pass 4096 bytes: CookieTooLargeError, no cookie sent.
 */
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { withSessions } from '../../src/adapters/node.js';
import {
  CookieTooLargeError,
  createSessions,
  generateId,
  type Sessions,
  storeKey,
} from '../../src/index.js';
import { cookieStore } from '../../src/stores/cookie.js';
import { memoryStore } from '../../src/stores/memory.js';
import { headerValue, request } from './support.js';

function send(port: number, raw: string): Promise<{ status: number; head: string; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let text = '';
    socket.setEncoding('latin1');
    socket.setTimeout(5_000, () => {
      socket.destroy();
      reject(new Error('no answer in 5 s'));
    });
    socket.on('data', (chunk: string) => {
      text += chunk;
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      const [head = '', body = ''] = text.split('\r\n\r\n');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body });
    });
    socket.end(raw);
  });
}

const get = (path: string, headers: Record<string, string> = {}) =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}Connection: close\r\n\r\n`;

describe('oversized requests through a real node:http server', () => {
  let server: Server;
  let port: number;
  let sessions: Sessions<any>;
  let handled = 0;
  const errors: unknown[][] = [];

  beforeAll(async () => {
    sessions = createSessions({
      store: memoryStore(),
      maxPayloadBytes: 10_000,
      logger: { warn: () => {}, error: (...args) => void errors.push(args) },
    });
    const handler = withSessions(sessions, (req, res) => {
      handled++;
      const size = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('size') ?? 0);
      if (size > 0) req.session.set('blob', 'x'.repeat(size));
      else req.session.set('seen', true);
      res.end(JSON.stringify({ isNew: req.session.isNew }));
    });
    server = createServer((req, res) => void handler(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await sessions.close();
  });

  afterEach(() => {
    handled = 0;
    errors.length = 0;
  });

  it('lets Node answer 431 to a Cookie header over 16 KiB, before satchel runs', async () => {
    const oversized: Record<string, string>[] = [
      { Cookie: `sessionid=${'A'.repeat(20_000)}` },
      { Cookie: Array.from({ length: 3_000 }, (_, i) => `c${i}=1`).join('; ') },
      { Authorization: `Session ${'A'.repeat(20_000)}` },
    ];
    for (const headers of oversized) {
      const { status } = await send(port, get('/', headers));
      expect(status).toBe(431);
    }
    expect(handled).toBe(0);
  });

  it('handles a thousand cookies under the limit: the first sessionid wins and a forged one is not adopted', async () => {
    const cookies = Array.from({ length: 1_000 }, (_, i) => `c${i}=${i}`);
    const forged = generateId();
    const header = [`sessionid=${forged}`, ...cookies, `sessionid=${generateId()}`].join('; ');
    expect(header.length).toBeLessThan(16_384);
    const started = performance.now();
    const { status, body, head } = await send(port, get('/', { Cookie: header }));
    expect(status).toBe(200);
    expect(JSON.parse(body)).toEqual({ isNew: true });
    expect(head).not.toContain(forged);
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('answers a session over maxPayloadBytes with a logged PayloadTooLargeError and saves nothing', async () => {
    const ok = await send(port, get('/?size=100'));
    const id = /set-cookie: sessionid=([^;]+)/i.exec(ok.head)![1]!;
    const { status, body, head } = await send(
      port,
      get('/?size=20000', { Cookie: `sessionid=${id}` }),
    );
    expect(status).toBe(500);
    expect(body).toBe('Internal Server Error\n');
    expect(head).not.toMatch(/set-cookie/i);
    expect(errors).toContainEqual([
      expect.stringMatching(
        /^\[satchel\] session data is \d+ bytes, over the 10000-byte limit \(maxPayloadBytes\); nothing was saved$/,
      ),
      expect.objectContaining({ code: 'ERR_SATCHEL_PAYLOAD_TOO_LARGE' }),
    ]);
    const record = await sessions.store.get(storeKey(id));
    expect(JSON.parse(record!.data).blob).toHaveLength(100);
  });

  it('reads a 100,000-cookie header (1.3 MB, past any server limit) in linear time through the manager', async () => {
    const forged = generateId();
    const header = [
      ...Array.from({ length: 100_000 }, (_, i) => `c${i}=v${i}`),
      `sessionid=${forged}`,
    ].join('; ');
    const started = performance.now();
    const session = await sessions.load(request({ cookie: header }));
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(session.isNew).toBe(true);
  });
});

describe('a cookie that would pass 4096 bytes', () => {
  it('is refused with CookieTooLargeError at the exact limit, and nothing is sent', async () => {
    const sessions = createSessions({ store: cookieStore({ secrets: 'k'.repeat(32) }) });
    const attempt = async (size: number) => {
      const session = await sessions.load(request({}));
      session.set('blob', 'x'.repeat(size));
      return sessions.commit(session, 200);
    };
    // The largest payload that still fits, found by bisection.
    let fits = 0;
    let fails = 4096;
    while (fails - fits > 1) {
      const mid = (fits + fails) >> 1;
      try {
        await attempt(mid);
        fits = mid;
      } catch (err) {
        expect(err).toBeInstanceOf(CookieTooLargeError);
        fails = mid;
      }
    }
    const { headers } = await attempt(fits);
    const cookie = headers.find(([name]) => name === 'set-cookie')![1];
    expect(Buffer.byteLength(cookie)).toBeLessThanOrEqual(4096);
    expect(Buffer.byteLength(cookie)).toBeGreaterThan(4000);
    await expect(attempt(fails)).rejects.toThrow(
      /^\[satchel\] cookie "sessionid" would be (409[7-9]|4[1-9]\d\d) bytes, over the 4096 bytes browsers keep$/,
    );
    expect(headerValue(headers, sessions)).toBeDefined();
    await sessions.close();
  });

  it('is refused for a server-side session too when the cookie attributes make it too long', async () => {
    const sessions = createSessions({
      store: memoryStore(),
      cookie: { path: `/${'p'.repeat(4_000)}` },
    });
    const session = await sessions.load(request({}));
    session.set('a', 1);
    await expect(sessions.commit(session, 200)).rejects.toBeInstanceOf(CookieTooLargeError);
    await sessions.close();
  });
});
