import { createServer } from 'node:http';
import { withSessions } from '../../src/adapters/node.js';
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
