/**
 * A real node:http server with satchel, fed whole requests an attacker
 * controls over raw TCP (so nothing a well-behaved client library would
 * refuse to send is off limits): methods, targets, Cookie, Authorization and
 * X-Forwarded-Proto headers. No answer is ever a 5xx (the store here never
 * fails, so not even the outage 503), the server stays up, and every
 * Set-Cookie carries a fresh ID or a deletion — never one the client sent.
 */
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withSessions } from '../../src/adapters/node.js';
import { createSessions, isWellFormedId, type Sessions } from '../../src/index.js';
import { memoryStore } from '../../src/stores/memory.js';
import { anyString, cookieHeader, mutationOf } from './arbitraries.js';
import { check, fuzzFile } from './config.js';

fuzzFile('server');

const ROUTES = ['/get', '/set', '/add', '/flush', '/cycle', '/flash', '/noop', '/', ''];

/** Sends `raw` on a new connection; resolves with the status (0: closed with no answer). */
function send(port: number, raw: string): Promise<{ status: number; head: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let text = '';
    socket.setEncoding('latin1');
    socket.setTimeout(5_000, () => {
      socket.destroy();
      reject(new Error(`no answer in 5 s to ${JSON.stringify(raw.slice(0, 200))}`));
    });
    socket.on('data', (chunk: string) => {
      text += chunk;
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      const head = text.split('\r\n\r\n')[0] ?? '';
      const status = /^HTTP\/1\.1 (\d{3})/.exec(head);
      resolve({ status: status ? Number(status[1]) : 0, head });
    });
    socket.end(Buffer.from(raw, 'latin1'));
  });
}

/** A header value with line breaks turned into spaces: the request stays one request. */
const oneLine = (value: string) => value.replace(/[\r\n]/g, ' ');

/**
 * What a parser-valid version of `value` would be: control characters and
 * anything past latin1 replaced, so most requests get past Node's HTTP
 * parser and reach satchel (the rest test the parser's 400s).
 */
const printable = (value: string) =>
  value.replace(/[^\t\x20-\x7e\x80-\xff]/g, (c) =>
    String.fromCharCode(0x21 + (c.charCodeAt(0) % 94)),
  );

/** A request target: everything outside a safe set percent-encoded, except '%' itself (bad escapes stay). */
const encodeTarget = (value: string) =>
  value.replace(/[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]/gu, (c) =>
    [...Buffer.from(c, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join(''),
  );

const CONFIGS = [
  { name: 'cookie transport', options: {}, out: /^set-cookie: sessionid=([^;\r\n]*)/gim },
  {
    name: 'header transport with signed IDs',
    options: { transport: { type: 'header' as const }, secrets: 's'.repeat(32) },
    out: /^session-id: ?([^\r\n]*)/gim,
  },
];

for (const config of CONFIGS)
  describe(`a real server fed hostile requests (${config.name})`, () => {
    let server: Server;
    let port: number;
    let sessions: Sessions<any>;
    const errors: unknown[][] = [];
    let real: string | undefined;

    beforeAll(async () => {
      sessions = createSessions({
        store: memoryStore({ maxEntries: 1_000_000 }),
        trustProxy: true,
        ...config.options,
        logger: { warn: () => {}, error: (...args) => void errors.push(args) },
      });
      const handler = withSessions(sessions, (req, res) => {
        const target = req.url ?? '';
        const query = new URLSearchParams(
          target.includes('?') ? target.slice(target.indexOf('?') + 1) : '',
        );
        const route = ROUTES.find((r) => r !== '' && target.startsWith(r)) ?? '';
        const s = req.session;
        if (route === '/get') s.get(query.get('key') ?? 'k');
        if (route === '/set') s.set(query.get('key') ?? 'k', query.get('value') ?? '');
        if (route === '/add')
          s.update('cart', (c: string[] = []) => [...c, query.get('item') ?? '']);
        // The real session stays, so later cases can still find it.
        const mine = s.id !== undefined && real?.startsWith(s.id);
        if (route === '/flush' && !mine) s.flush();
        if (route === '/cycle' && !mine) s.cycleKey();
        if (route === '/flash') s.flash('m', s.getFlash('m') ?? 'x');
        res.end('ok');
      });
      server = createServer((req, res) => void handler(req, res));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      port = (server.address() as AddressInfo).port;
      const first = await send(
        port,
        'GET /set?key=user&value=ann HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      );
      real = [...first.head.matchAll(config.out)][0]![1]!;
    });

    afterAll(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await sessions.close();
    });

    it('answers no request with a 5xx and never hands back an ID the client sent', async () => {
      const statuses = new Map<number, number>();
      let kept = 0;
      const request = fc.record({
        method: fc.oneof(
          {
            weight: 9,
            arbitrary: fc.constantFrom('GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'),
          },
          { weight: 1, arbitrary: anyString(8) },
        ),
        valid: fc.boolean(),
        route: fc.constantFrom(...ROUTES),
        rest: anyString(60),
        cookie: fc.option(
          fc.oneof(
            cookieHeader(),
            mutationOf(`sessionid=${real}`),
            fc.constant(`sessionid=${real}`),
          ),
          { nil: undefined },
        ),
        authorization: fc.option(
          fc.oneof(anyString(80), mutationOf(`Session ${real}`), fc.constant(`Session ${real}`)),
          { nil: undefined },
        ),
        proto: fc.option(fc.oneof(fc.constantFrom('https', 'http', 'https, http'), anyString(10)), {
          nil: undefined,
        }),
      });
      await check(
        fc.asyncProperty(request, async (r) => {
          const value = (v: string) => (r.valid ? printable(oneLine(v)) : oneLine(v));
          const target =
            (r.valid ? encodeTarget(`${r.route}${r.rest}`) : `${r.route}${r.rest}`).replace(
              /[\r\n ]/g,
              '%20',
            ) || '/';
          let raw = `${r.method.replace(/[\r\n ]/g, '')} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n`;
          if (r.cookie !== undefined) raw += `Cookie: ${value(r.cookie)}\r\n`;
          if (r.authorization !== undefined) raw += `Authorization: ${value(r.authorization)}\r\n`;
          if (r.proto !== undefined) raw += `X-Forwarded-Proto: ${value(r.proto)}\r\n`;
          raw += 'Connection: close\r\n\r\n';
          const { status, head } = await send(port, raw);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          expect(status, head).toBeGreaterThanOrEqual(200);
          expect(status, head).toBeLessThan(500);
          for (const [, value] of head.matchAll(config.out)) {
            if (value === '') continue;
            expect(isWellFormedId(value!.split('.')[0]!)).toBe(true);
            // A session the server already had keeps its ID; anything else gets a new one.
            if (value === real) kept++;
            else expect(raw.includes(value!)).toBe(false);
          }
        }),
        1_500,
      );
      expect(errors).toEqual([]);
      // The real session was found (and saved) through the noise, too.
      expect(kept).toBeGreaterThan(0);
      console.info(
        `[fuzz] server (${config.name}) statuses: ${[...statuses]
          .sort(([a], [b]) => a - b)
          .map(([s, n]) => `${s}×${n}`)
          .join(', ')}`,
      );
      // Still serving.
      expect(
        (await send(port, 'GET /noop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).status,
      ).toBe(200);
    });
  });
