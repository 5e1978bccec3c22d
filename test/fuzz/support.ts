/** A manager over a memory store that records every key the store is asked for, and every log line. */
import {
  createSessions,
  type IncomingRequest,
  type Sessions,
  type SessionsOptions,
  type SessionStore,
} from '../../src/index.js';
import { memoryStore } from '../../src/stores/memory.js';
import { override } from '../stress/lib/stores.js';

export interface Harness {
  sessions: Sessions<any>;
  store: SessionStore;
  /** Keys passed to store.get since the last reset. */
  gets: string[];
  warnings: unknown[][];
  errors: unknown[][];
  reset(): void;
  /** A session stored by the server, and the cookie value that carries it. */
  real: { id: string; value: string };
}

export async function harness(options: SessionsOptions = {}): Promise<Harness> {
  const backing = memoryStore({ maxEntries: 1_000_000 });
  const gets: string[] = [];
  const store = override(backing, {
    get: (key) => {
      gets.push(key);
      return backing.get(key);
    },
  });
  const warnings: unknown[][] = [];
  const errors: unknown[][] = [];
  const sessions = createSessions({
    store,
    logger: {
      warn: (...args) => void warnings.push(args),
      error: (...args) => void errors.push(args),
    },
    ...options,
  });
  const first = await sessions.load(request({}));
  first.set('owner', 'the real user');
  const { headers } = await sessions.commit(first, 200);
  const value = headerValue(headers, sessions);
  if (value === undefined || first.id === undefined) throw new Error('no session was created');
  const h: Harness = {
    sessions,
    store,
    gets,
    warnings,
    errors,
    real: { id: first.id, value },
    reset() {
      gets.length = 0;
      warnings.length = 0;
      errors.length = 0;
    },
  };
  return h;
}

/** A request with the given headers (lower-case names) and URL. */
export function request(headers: Record<string, string>, url?: string): IncomingRequest {
  return {
    header: (name) => headers[name],
    encrypted: false,
    ...(url !== undefined && { url }),
  };
}

/** The ID value the response hands the client, wherever the transport puts it. */
export function headerValue(
  headers: [string, string][],
  sessions: Sessions<any>,
): string | undefined {
  for (const [name, value] of headers) {
    if (name === 'session-id') return value || undefined;
    if (name === 'set-cookie' && value.startsWith(`${sessions.cookie.name}=`)) {
      const v = /^[^=]+=([^;]*)/.exec(value)![1]!;
      return /Max-Age=0(;|$)/.test(value) ? undefined : v;
    }
  }
  return undefined;
}
