import type { SessionParts } from '../session.js';
import type { SessionStore } from '../store.js';
import type { IncomingRequest, IncomingValue } from '../transports/types.js';

/**
 * How sessions are kept, chosen once at creation: on the server under an ID
 * (`server.ts`), or sealed inside the cookie itself (`sealed.ts`). The
 * manager only ever talks to this interface.
 */
export interface Persistence {
  /** `sessions.store`: the store itself, or a stand-in that keeps nothing for the cookie store. */
  readonly store: SessionStore;
  /** Sessions are records on the server (they can be listed, counted and revoked). */
  readonly keepsRecords: boolean;
  /** Opens the session the incoming value names, taking its record into `parts` when it is live. */
  open(
    parts: SessionParts,
    request: IncomingRequest,
    incoming: IncomingValue,
    lock: boolean,
  ): Promise<void> | undefined;
  /**
   * Saves what the request changed (`session.save()` and the commit of a
   * non-5xx response). Both return undefined when done already (a store that
   * answered synchronously), sparing the caller an await.
   */
  save(parts: SessionParts): Promise<void> | undefined;
  /**
   * The commit of a 5xx response: nothing is saved, but a logout (`flush()`)
   * or a `cycleKey()` still deletes the old record, as Django deletes at once.
   */
  saveDeletions(parts: SessionParts): Promise<void>;
  /** The value the transport carries for a saved session: the (signed) ID, or the sealed record. */
  outgoing(parts: SessionParts): string | undefined;
  /** Lets go of what the request holds (its lock), saved or not. */
  release(parts: SessionParts): Promise<void>;
  close(): Promise<void>;
}
