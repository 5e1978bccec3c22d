import diagnostics from 'node:diagnostics_channel';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createSessions, type Sessions } from '../src/index.js';
import { memoryStore } from '../src/stores/memory.js';
import { exchange, fakeRequest } from './helpers.js';

let sessions: Sessions<any> | undefined;
const cleanups: (() => void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  await sessions?.close();
  sessions = undefined;
});

function trace(name: string) {
  const seen: [string, Record<string, unknown>][] = [];
  const handlers = Object.fromEntries(
    ['start', 'end', 'asyncStart', 'asyncEnd', 'error'].map((event) => [
      event,
      (message: Record<string, unknown>) => void seen.push([event, { ...message }]),
    ]),
  );
  const channel = diagnostics.tracingChannel(name);
  channel.subscribe(handlers as never);
  cleanups.push(() => channel.unsubscribe(handlers as never));
  return seen;
}

function listen(name: string) {
  const seen: Record<string, unknown>[] = [];
  const handler = (message: unknown) => void seen.push(message as Record<string, unknown>);
  diagnostics.subscribe(name, handler);
  cleanups.push(() => diagnostics.unsubscribe(name, handler));
  return seen;
}

describe('diagnostics_channel', () => {
  it('traces every load and commit on satchel:load and satchel:commit', async () => {
    const loads = trace('satchel:load');
    const commits = trace('satchel:commit');
    sessions = createSessions({ store: memoryStore() });
    const first = await exchange(sessions, undefined, (s) => s.set('n', 1));
    await exchange(sessions, first.value, (s) => s.get('n'));
    expect(loads.map(([event]) => event)).toEqual([
      'start',
      'end',
      'asyncStart',
      'asyncEnd',
      'start',
      'end',
      'asyncStart',
      'asyncEnd',
    ]);
    expect(loads.at(-1)![1]).toMatchObject({ store: 'memory', found: true });
    expect(commits.find(([event]) => event === 'asyncEnd')![1]).toMatchObject({
      store: 'memory',
      status: 200,
      retries: 0,
    });
  });

  it('traces session.save() on satchel:commit too, without a status', async () => {
    const commits = trace('satchel:commit');
    sessions = createSessions({ store: memoryStore() });
    const s = await sessions.load(fakeRequest());
    s.set('n', 1);
    await s.save();
    expect(commits.map(([event]) => event)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd']);
    expect(commits[0]![1]).toEqual({ store: 'memory' });
    await sessions.commit(s, 200);
    expect(commits.at(-1)![1]).toMatchObject({ store: 'memory', status: 200, retries: 0 });
  });

  it('publishes a failed commit on the error event', async () => {
    const commits = trace('satchel:commit');
    sessions = createSessions({
      store: memoryStore(),
      maxPayloadBytes: 100,
      logger: { warn() {}, error() {} },
    });
    const s = await sessions.load(fakeRequest());
    s.set('big', 'x'.repeat(500));
    await expect(sessions.commit(s, 200)).rejects.toThrow();
    expect(commits.map(([event]) => event)).toContain('error');
  });

  it('publishes one satchel:conflict message per compare-and-set retry', async () => {
    const conflicts = listen('satchel:conflict');
    const commits = trace('satchel:commit');
    const store = memoryStore();
    sessions = createSessions({ store });
    const first = await exchange(sessions, undefined, (s) => s.set('n', 0));
    // The memory store's update calls its synchronous twin, which the core may also call directly.
    const real = store.sync!.update.bind(store.sync);
    const update = vi.spyOn(store.sync!, 'update');
    update.mockReturnValueOnce('conflict').mockReturnValueOnce('conflict');
    update.mockImplementation(real);
    await exchange(sessions, first.value, (s) => s.update('n', (n: number) => n + 1));
    expect(conflicts).toEqual([
      { store: 'memory', handle: expect.any(String), attempt: 1 },
      { store: 'memory', handle: expect.any(String), attempt: 2 },
    ]);
    expect(commits.at(-1)![1]).toMatchObject({ retries: 2 });
  });

  it('publishes each store call with its duration on satchel:store', async () => {
    const calls = listen('satchel:store');
    sessions = createSessions({ store: memoryStore() });
    const first = await exchange(sessions, undefined, (s) => s.set('n', 1));
    await exchange(sessions, first.value, (s) => s.set('n', 2));
    expect(calls.map((c) => c.operation)).toEqual(['create', 'get', 'update']);
    for (const call of calls) {
      expect(call).toMatchObject({ store: 'memory', ok: true });
      expect(call.durationMs).toBeGreaterThanOrEqual(0);
    }
  });

  it('never publishes a session ID', async () => {
    const all = [...['satchel:store', 'satchel:conflict'].map(listen)];
    const loads = trace('satchel:load');
    sessions = createSessions({ store: memoryStore() });
    const first = await exchange(sessions, undefined, (s) => s.set('n', 1));
    await exchange(sessions, first.value, (s) => s.get('n'));
    expect(JSON.stringify([all, loads])).not.toContain(first.value!);
  });
});
