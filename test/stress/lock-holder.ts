/**
 * Child process for lock.test.ts: takes the per-session lock of one session
 * through the manager, says so (`locked <when it asked for the lock>`), and
 * then waits to be SIGKILLed (it exits by
 * itself after a minute, so it never outlives the test run).
 *
 *   node --import tsx test/stress/lock-holder.ts '{"spec":…,"cookie":"…","lockTtl":1000}'
 */
import { createSessions } from '../../src/index.js';
import { openSpec, type StoreSpec } from './lib/spec.js';

const { spec, cookie, lockTtl } = JSON.parse(process.argv[2] ?? '{}') as {
  spec: StoreSpec;
  cookie: string;
  lockTtl: number;
};
const sessions = createSessions({
  store: await openSpec(spec),
  lock: true,
  lockTtl,
  lockTimeout: 5_000,
  logger: { warn: () => {}, error: () => {} },
});
// The lock expires lockTtl after the store is asked for it, so no earlier than this.
const asked = Date.now();
const session = await sessions.load({
  header: (name) => (name === 'cookie' ? `sessionid=${cookie}` : undefined),
  encrypted: false,
});
if (session.isNew) throw new Error('lock-holder: the session was not found');
process.stdout.write(`locked ${asked}\n`);
setTimeout(() => process.exit(3), 60_000);
