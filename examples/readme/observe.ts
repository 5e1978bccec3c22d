import diagnostics from 'node:diagnostics_channel';
import type { CommitMessage, ConflictMessage, StoreCallMessage } from 'satchel';

// Node adds `error` to the message when the call fails (SatchelErrors have a `code`).
type Traced<M> = M & { error?: Error & { code?: string } };
const started = new WeakMap<object, number>();
diagnostics.tracingChannel<unknown, Traced<CommitMessage>>('satchel:commit').subscribe({
  start: (message) => void started.set(message, performance.now()),
  end() {},
  asyncStart() {},
  error: ({ store, error }) => console.error(`[${store}] commit failed: ${error?.code}`),
  asyncEnd(message) {
    const ms = performance.now() - (started.get(message) ?? performance.now());
    console.log(
      `[${message.store}] commit (${message.status}) ${ms.toFixed(1)} ms, ${message.retries} retries`,
    );
  },
});
diagnostics.subscribe('satchel:conflict', (message) => {
  const { store, attempt } = message as ConflictMessage;
  console.warn(`[${store}] compare-and-set retry #${attempt}`);
});
diagnostics.subscribe('satchel:store', (message) => {
  const { store, operation, durationMs, ok } = message as StoreCallMessage;
  if (!ok || durationMs > 50)
    console.warn(`[${store}] ${operation}: ${ok ? `${durationMs} ms` : 'failed'}`);
});
