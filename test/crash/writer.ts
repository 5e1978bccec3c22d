/**
 * Child process for the crash suites: writes sessions in a loop through the
 * store API (create, then compare-and-set updates with growing data) until
 * it is SIGKILLed. Every write is journaled on stdout, synchronously, before
 * and after it happens:
 *
 *   about <id> <n>   about to write version n of session <id> (n = 1: create)
 *   wrote <id> <n>   the store acknowledged it
 *
 *   node --import tsx test/crash/writer.ts '{"spec":…,"state":"…/state.json","maxSessions":8}'
 *
 * It starts early (while the parent still checks the previous kill), says
 * `ready`, and waits for a `go` line on stdin; only then does it read
 * `state`, the versions the parent verified, and carry on from there.
 */
import { readFileSync, writeSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { generateId, storeKey } from '../../src/index.js';
import type { StoredSession } from '../../src/store.js';
import { openSpec, type StoreSpec } from '../stress/lib/spec.js';
import { payload } from './payload.js';

const { spec, state, maxSessions } = JSON.parse(process.argv[2] ?? '{}') as {
  spec: StoreSpec;
  state: string;
  maxSessions: number;
};

/** Synchronous, so a line is in the pipe before the next write starts (SIGKILL loses nothing said). */
function say(line: string): void {
  const buffer = Buffer.from(`${line}\n`);
  let offset = 0;
  while (offset < buffer.length) {
    try {
      offset += writeSync(1, buffer, offset);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    }
  }
}

const HOUR = 3_600_000;
const record = (id: string, version: number): StoredSession => ({
  data: payload(id, version),
  version,
  createdAt: Date.now(),
  expiresAt: Date.now() + HOUR,
});

const store = await openSpec(spec);
say('ready');
await new Promise<void>((resolve) => {
  const input = createInterface({ input: process.stdin });
  input.once('line', () => {
    input.close();
    resolve();
  });
});
const sessions = (
  JSON.parse(readFileSync(state, 'utf8')) as { sessions: { id: string; version: number }[] }
).sessions;
say('going');
// Bounded: the parent kills it long before; it never outlives a test run.
const deadline = Date.now() + 60_000;
while (Date.now() < deadline) {
  if (sessions.length === 0 || (sessions.length < maxSessions && Math.random() < 0.2)) {
    const id = generateId();
    say(`about ${id} 1`);
    if (!(await store.create(storeKey(id), record(id, 1)))) {
      say(`error create ${id}`);
      process.exit(2);
    }
    say(`wrote ${id} 1`);
    sessions.push({ id, version: 1 });
    continue;
  }
  const session = sessions[Math.floor(Math.random() * sessions.length)]!;
  const next = session.version + 1;
  say(`about ${session.id} ${next}`);
  const result = await store.update(
    storeKey(session.id),
    record(session.id, next),
    session.version,
  );
  if (result !== 'ok') {
    say(`error update ${session.id} ${next} ${result}`);
    process.exit(2);
  }
  say(`wrote ${session.id} ${next}`);
  session.version = next;
}
process.exit(3);
