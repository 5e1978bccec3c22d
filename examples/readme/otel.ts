import diagnostics from 'node:diagnostics_channel';
import { context, type Span, SpanStatusCode, trace } from '@opentelemetry/api';
import type { CommitMessage, ConflictMessage, LoadMessage } from 'satchel';

// Node adds `error` to the message when the call fails.
type Traced = (LoadMessage | CommitMessage) & { error?: Error & { code?: string } };
const tracer = trace.getTracer('satchel');
const spans = new WeakMap<object, Span>();

for (const name of ['load', 'commit']) {
  diagnostics.tracingChannel<unknown, Traced>(`satchel:${name}`).subscribe({
    // `start` runs in the request's async context: the span becomes a child of the request's span.
    start(message) {
      const span = tracer.startSpan(`satchel.${name}`, undefined, context.active());
      span.setAttribute('satchel.store', message.store);
      spans.set(message, span);
    },
    end() {},
    asyncStart() {},
    error(message) {
      if (message.error) spans.get(message)?.recordException(message.error);
    },
    // Last event, after a success or an error: close the span.
    asyncEnd(message) {
      const span = spans.get(message);
      if (!span) return;
      if ('found' in message && message.found !== undefined)
        span.setAttribute('satchel.found', message.found);
      if ('retries' in message && message.retries !== undefined)
        span.setAttribute('satchel.retries', message.retries);
      if (message.error)
        span.setStatus({ code: SpanStatusCode.ERROR, message: message.error.message });
      span.end();
    },
  });
}

// A compare-and-set retry: an event on the span active at that moment (the request's).
diagnostics.subscribe('satchel:conflict', (message) => {
  const { attempt } = message as ConflictMessage;
  trace.getActiveSpan()?.addEvent('satchel.conflict', { 'satchel.attempt': attempt });
});
