import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { withSessions } from '../../src/adapters/node.js';
import { createSessions } from '../../src/index.js';
import { memoryStore } from '../../src/stores/memory.js';
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

describe('node:http: the commit joins whatever form writeHead was given', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
    server = undefined;
  });

  /** A server whose handler sets a session value and answers with `answer(res)`. */
  async function answering(answer: (res: ServerResponse) => void): Promise<Response> {
    const sessions = createSessions({ store: memoryStore() });
    server = createServer(
      withSessions(sessions, (req, res) => {
        req.session.set('seen', true);
        answer(res);
      }),
    );
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return fetch(`http://127.0.0.1:${port}/`);
  }

  it('sends the headers object of writeHead(status, headers) with the session cookie and Vary', async () => {
    const res = await answering((r) =>
      r.writeHead(201, { 'content-type': 'text/plain' }).end('ok'),
    );
    expect(res.status).toBe(201);
    expect(res.headers.get('content-type')).toBe('text/plain');
    expect(res.headers.getSetCookie()).toEqual([expect.stringMatching(/^sessionid=/)]);
    expect(res.headers.get('vary')).toBe('Cookie');
    expect(await res.text()).toBe('ok');
  });

  it("keeps the app's own Set-Cookie next to the session's when both come through writeHead", async () => {
    const res = await answering((r) =>
      r.writeHead(200, { 'Set-Cookie': 'theme=dark', Vary: 'Accept-Language' }).end('ok'),
    );
    expect(res.headers.getSetCookie()).toEqual([
      'theme=dark',
      expect.stringMatching(/^sessionid=/),
    ]);
    expect(res.headers.get('vary')).toBe('Accept-Language, Cookie');
  });

  it('keeps a status message, a raw header list, and headers set before writeHead', async () => {
    const message = await answering((r) => r.writeHead(202, 'Taken', { 'x-a': '1' }).end());
    expect(message.statusText).toBe('Taken');
    expect(message.headers.get('x-a')).toBe('1');
    expect(message.headers.getSetCookie()).toHaveLength(1);
    server!.close();
    const raw = await answering((r) => r.writeHead(200, ['x-b', '2', 'x-b', '3']).end());
    expect(raw.headers.get('x-b')).toBe('2, 3');
    expect(raw.headers.getSetCookie()).toHaveLength(1);
    server!.close();
    const earlier = await answering((r) => {
      r.setHeader('x-c', '4');
      r.writeHead(200, { 'x-d': '5' }).end();
    });
    expect(earlier.headers.get('x-c')).toBe('4');
    expect(earlier.headers.get('x-d')).toBe('5');
    expect(earlier.headers.getSetCookie()).toHaveLength(1);
  });
});
