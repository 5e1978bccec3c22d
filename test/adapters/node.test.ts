import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { withSessions } from '../../src/adapters/node.js';
import { createSessions, type Sessions } from '../../src/index.js';
import { memoryStore } from '../../src/stores/memory.js';
import { Browser } from '../helpers.js';
import { asyncOnly } from '../support/sync-access.js';
import { describeAdapter, scenario } from './matrix.js';

describeAdapter('node:http', async (sessions) =>
  createServer(
    withSessions(sessions, async (req, res) => {
      const reply = await scenario(req.session, new URL(req.url!, 'http://x'));
      res.writeHead(reply.status, {
        'content-type': 'text/plain',
        ...(reply.location && { location: reply.location }),
        ...reply.headers,
      });
      res.end(reply.body);
    }),
  ),
);

const VISITORS = ['new', 'returning'] as const;
type Visitor = (typeof VISITORS)[number];

describe('node:http: the commit joins whatever form writeHead was given', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
    server = undefined;
  });

  /**
   * A server whose handler sets a session value and answers with `answer(res)`;
   * the response to a returning visitor (whose commit a memory store finishes
   * at once, inside the held call) or to a new one (whose commit is awaited).
   */
  async function answering(
    visitor: Visitor,
    answer: (res: ServerResponse) => void,
    sessions: Sessions<any> = createSessions({ store: memoryStore() }),
  ): Promise<Response> {
    server?.close();
    server = createServer(
      withSessions(sessions, (req, res) => {
        req.session.set('seen', true);
        answer(res);
      }),
    );
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const first = await fetch(url);
    if (visitor === 'new') return first;
    await first.arrayBuffer();
    const cookie = first.headers.getSetCookie()[0]!.split(';')[0]!;
    return fetch(url, { headers: { cookie } });
  }

  for (const visitor of VISITORS) {
    it(`sends the headers object of writeHead(status, headers) with the session cookie and Vary (${visitor} visitor)`, async () => {
      const res = await answering(visitor, (r) =>
        r.writeHead(201, { 'content-type': 'text/plain' }).end('ok'),
      );
      expect(res.status).toBe(201);
      expect(res.headers.get('content-type')).toBe('text/plain');
      expect(res.headers.getSetCookie()).toEqual([expect.stringMatching(/^sessionid=/)]);
      expect(res.headers.get('vary')).toBe('Cookie');
      expect(await res.text()).toBe('ok');
    });

    it(`keeps the app's own Set-Cookie next to the session's when both come through writeHead (${visitor} visitor)`, async () => {
      const res = await answering(visitor, (r) =>
        r.writeHead(200, { 'Set-Cookie': 'theme=dark', Vary: 'Accept-Language' }).end('ok'),
      );
      expect(res.headers.getSetCookie()).toEqual([
        'theme=dark',
        expect.stringMatching(/^sessionid=/),
      ]);
      expect(res.headers.get('vary')).toBe('Accept-Language, Cookie');
    });

    it(`keeps a status message, a raw header list, and headers set before writeHead (${visitor} visitor)`, async () => {
      const message = await answering(visitor, (r) =>
        r.writeHead(202, 'Taken', { 'x-a': '1' }).end(),
      );
      expect(message.statusText).toBe('Taken');
      expect(message.headers.get('x-a')).toBe('1');
      expect(message.headers.getSetCookie()).toHaveLength(1);
      const raw = await answering(visitor, (r) => r.writeHead(200, ['x-b', '2', 'x-b', '3']).end());
      expect(raw.headers.get('x-b')).toBe('2, 3');
      expect(raw.headers.getSetCookie()).toHaveLength(1);
      const earlier = await answering(visitor, (r) => {
        r.setHeader('x-c', '4');
        r.writeHead(200, { 'x-d': '5' }).end();
      });
      expect(earlier.headers.get('x-c')).toBe('4');
      expect(earlier.headers.get('x-d')).toBe('5');
      expect(earlier.headers.getSetCookie()).toHaveLength(1);
    });
  }

  it('answers a first write with the backpressure Node reported when the commit was done at once', async () => {
    const answers: boolean[] = [];
    const res = await answering('returning', (r) => {
      answers.push(r.write(Buffer.alloc(1 << 20)));
      r.end();
    });
    expect((await res.arrayBuffer()).byteLength).toBe(1 << 20);
    // The new visitor's write was only held (true); the returning one's was written: 1 MiB is over the high-water mark.
    expect(answers).toEqual([true, false]);
  });

  it('never bypasses a Sessions object the app wrapped (to log or time load and commit)', async () => {
    const inner = createSessions({ store: memoryStore() });
    const calls: string[] = [];
    const wrapped: Sessions<any> = {
      ...inner,
      load(request, options) {
        calls.push('load');
        return inner.load(request, options);
      },
      commit(session, status) {
        calls.push('commit');
        return inner.commit(session, status);
      },
    };
    const res = await answering('returning', (r) => r.end('ok'), wrapped);
    expect(await res.text()).toBe('ok');
    expect(calls).toEqual(['load', 'commit', 'load', 'commit']);
  });

  it('takes a wrapped load or commit that answers with a thenable other than a native promise', async () => {
    const inner = createSessions({ store: memoryStore() });
    const thenable = <T>(promise: Promise<T>) => ({
      // biome-ignore lint/suspicious/noThenProperty: a thenable that is not a native promise is the point
      then: (ok: (value: T) => unknown, fail: (err: unknown) => unknown) => promise.then(ok, fail),
    });
    const wrapped = {
      ...inner,
      load: (request, options) => thenable(inner.load(request, options)),
      commit: (session, status) => thenable(inner.commit(session, status)),
    } as Sessions<any>;
    const res = await answering('returning', (r) => r.end('ok'), wrapped);
    expect(await res.text()).toBe('ok');
    expect(res.headers.getSetCookie()).toHaveLength(1);
  });
});

describe('node:http: a handler that fails, and what the listener returns', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
    server = undefined;
  });

  /** Serves `listener` and returns its URL. */
  async function serving(listener: Parameters<typeof createServer>[1]): Promise<string> {
    server = createServer(listener);
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  }

  const quiet = { warn() {}, error() {} };
  /** A result whose `then` cannot even be read. */
  const unreadable = () =>
    Object.defineProperty({}, 'then', {
      get() {
        throw new Error('then getter failed');
      },
    });
  const failures = {
    throws: () => {
      throw new Error('handler failed');
    },
    rejects: () => Promise.reject(new Error('handler failed')),
    'returns a value whose then throws': unreadable,
  };
  const stores = {
    'a store that answers at once': () => memoryStore(),
    'an awaited store': () => asyncOnly(memoryStore()),
  };

  for (const [storeKind, store] of Object.entries(stores)) {
    for (const [how, fail] of Object.entries(failures)) {
      it(`answers 500 and saves nothing when the handler ${how} (${storeKind})`, async () => {
        const sessions = createSessions({ store: store(), logger: quiet });
        const url = await serving(
          withSessions(sessions, (req, res) => {
            if (req.url === '/fail') {
              req.session.set('lost', true);
              return fail();
            }
            req.session.set('kept', true);
            res.end(JSON.stringify({ lost: req.session.get('lost', false) }));
          }),
        );
        const browser = new Browser(url);
        await (await browser.fetch('/')).text();
        // A response that never comes fails here, not at the test's timeout.
        const failed = await browser.fetch('/fail', { signal: AbortSignal.timeout(5_000) });
        expect(failed.status).toBe(500);
        expect(failed.headers.getSetCookie()).toEqual([]);
        await failed.text();
        const after = await browser.fetch('/');
        expect(await after.json()).toEqual({ lost: false });
      });
    }

    it(`rejects the returned promise, never throws, when answering a failure fails too (${storeKind})`, async () => {
      const logger = {
        warn() {},
        error() {
          throw new Error('logger failed');
        },
      };
      const sessions = createSessions({ store: store(), logger });
      const listener = withSessions(sessions, (req, res) => {
        req.session.set('seen', true);
        if (req.url === '/fail') throw new Error('handler failed');
        res.end('ok');
      });
      const outcomes: string[] = [];
      const url = await serving((req, res) => {
        // Only the failing request (a returning visitor's: its load awaits an awaited store) is watched.
        const watch = req.url === '/fail';
        try {
          listener(req, res).then(
            () => watch && outcomes.push('resolved'),
            (err: Error) => {
              outcomes.push(`rejected: ${err.message}`);
              res.destroy();
            },
          );
        } catch (err) {
          outcomes.push(`threw: ${(err as Error).message}`);
          res.destroy();
        }
      });
      const browser = new Browser(url);
      await (await browser.fetch('/')).text();
      await browser.fetch('/fail').catch(() => undefined);
      await expect.poll(() => outcomes).toEqual(['rejected: logger failed']);
    });
  }

  it('returns a promise that settles once an async handler has, and a settled one for a sync handler', async () => {
    const sessions = createSessions({ store: memoryStore() });
    const log: string[] = [];
    const listener = withSessions(sessions, (req, res) => {
      const answer = () => {
        log.push(`handled ${req.url}`);
        res.end('ok');
      };
      if (req.url !== '/slow') return answer();
      return new Promise((resolve) => setTimeout(resolve, 20)).then(answer);
    });
    const returned: Promise<void>[] = [];
    const url = await serving((req, res) => {
      const promise = listener(req, res);
      returned.push(promise.then(() => void log.push(`settled ${req.url}`)));
      returned.push(promise);
    });
    await (await fetch(`${url}slow`)).text();
    await (await fetch(url)).text();
    for (const promise of returned) expect(promise).toBeInstanceOf(Promise);
    await Promise.all(returned);
    expect(log).toEqual(['handled /slow', 'settled /slow', 'handled /', 'settled /']);
  });
});
