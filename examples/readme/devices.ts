// "Log out everywhere": the README's excerpts come from this app (Express).
import express from 'express';
import { createSessions } from 'satchel';
import { session } from 'satchel/express';
import { sqliteStore } from 'satchel/stores/sqlite';

declare module 'satchel' {
  interface SessionData {
    cart: string[];
  }
}

interface User {
  id: string;
}
// Stand-ins for the app's own user lookup, audit log and metrics.
const findUser = (name: unknown): User | undefined =>
  typeof name === 'string' && name !== '' ? { id: name } : undefined;
const audit = { log: (...fields: unknown[]) => console.log(...fields) };
const metrics = { increment: (name: string) => console.log('metric', name) };

const sessions = createSessions({ store: sqliteStore({ path: 'sessions.db' }) });
const app = express();
app.use(express.urlencoded({ extended: false }));
app.use(session(sessions));

app.post('/login', (req, res) => {
  const user = findUser(req.body.user);
  if (!user) return void res.status(401).send('who are you?');
  // At login: a new ID (no fixation), the anonymous cart kept, the session tied to the user.
  req.session.cycleKey();
  req.session.setOwner(user.id, { userAgent: req.get('user-agent') });
  res.redirect(303, '/devices');
});

app.get('/devices', async (req, res) => {
  const user = req.session.owner === undefined ? undefined : { id: req.session.owner };
  if (!user) return void res.redirect(303, '/login');
  // "Your devices": summaries with opaque handles, never session IDs.
  const devices = await sessions.listByOwner(user.id, { current: req.session });
  // [{ handle, createdAt, expiresAt, lastSeenAt, device: { userAgent }, current }]
  res.json(devices);
});

app.post('/devices/:handle/revoke', async (req, res) => {
  const user = req.session.owner === undefined ? undefined : { id: req.session.owner };
  if (!user) return void res.redirect(303, '/login');
  const mine = await sessions.listByOwner(user.id);
  const handle = mine.find((device) => device.handle === req.params.handle)?.handle;
  if (handle === undefined) return void res.status(404).send('not one of your devices');
  await sessions.revoke(handle); // sign out one device
  res.redirect(303, '/devices');
});

app.post('/devices/revoke-others', async (req, res) => {
  const user = req.session.owner === undefined ? undefined : { id: req.session.owner };
  if (!user) return void res.redirect(303, '/login');
  await sessions.revokeAllForOwner(user.id, { except: req.session }); // sign out everywhere else
  res.redirect(303, '/devices');
});

const stop = sessions.on('destroyed', ({ handle, reason }) =>
  audit.log('session ended', handle, reason),
);
sessions.on('store-unavailable', ({ store, operation }) =>
  metrics.increment(`${store}.${operation}.down`),
);
process.once('SIGTERM', stop);

app.listen(Number(process.env.PORT ?? 8000));
