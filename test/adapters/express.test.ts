import { createServer } from 'node:http';
import express from 'express';
import { session } from '../../src/adapters/express.js';
import { describeAdapter, scenario } from './matrix.js';

describeAdapter('Express', async (sessions) => {
  const app = express();
  app.use(session(sessions));
  app.use(async (req, res) => {
    const reply = await scenario(req.session, new URL(req.url, 'http://x'));
    res.set(reply.headers ?? {});
    if (reply.location) res.redirect(reply.status, reply.location);
    else res.status(reply.status).type('text/plain').send(reply.body);
  });
  return createServer(app);
});
