import { ServerResponse } from 'node:http';

type Writer = (this: ServerResponse, ...args: unknown[]) => unknown;

/** What holds one response while its session commits. */
export interface Holder {
  /** Called with the first held call; `status` is writeHead's, if that came first. */
  start(status: number | undefined): void;
  /** The client went away before the response: let writes through, save nothing. */
  giveUp(): void;
  /** 'done' lets every call through. */
  state: 'open' | 'committing' | 'done';
  /** Calls made while held, replayed in order once the commit is done. */
  readonly queue: [Writer, unknown[]][];
  /** Set when the queue has been replayed, with what its last call answered. */
  replayed: { answer: unknown } | undefined;
}

const kHolder = Symbol('satchel.holder');
type Held = ServerResponse & { [kHolder]?: Holder };

const proto = ServerResponse.prototype as unknown as Record<'writeHead' | 'write' | 'end', Writer>;
const original = { writeHead: proto.writeHead, write: proto.write, end: proto.end };
let installed = false;

function held(res: Held, fn: Writer, args: unknown[], isHead: boolean): unknown {
  const holder = res[kHolder];
  if (holder === undefined || holder.state === 'done') return fn.apply(res, args);
  // The client went away (the response is destroyed) before the handler answered.
  if (res.destroyed) {
    holder.giveUp();
    return fn.apply(res, args);
  }
  holder.queue.push([fn, args]);
  if (holder.state === 'open') {
    holder.state = 'committing';
    holder.start(isHead && typeof args[0] === 'number' ? args[0] : undefined);
    // Committed at once: this call was replayed inside start(), and answers what Node answered
    // (a first write's backpressure included).
    if (holder.replayed) return holder.replayed.answer;
  }
  return fn === original.write ? true : res;
}

/**
 * Installs, once, a pass-through on `ServerResponse.prototype`'s writeHead,
 * write and end that holds a response carrying a Holder. Patching each
 * response instead gives every one of them three own methods, which costs
 * Express about 15 µs a request in slower property access; this costs one
 * symbol lookup, and responses without a session are untouched.
 */
function install(): void {
  if (installed) return;
  installed = true;
  proto.writeHead = function writeHead(this: Held, ...args: unknown[]) {
    return held(this, original.writeHead, args, true);
  };
  proto.write = function write(this: Held, ...args: unknown[]) {
    return held(this, original.write, args, false);
  };
  proto.end = function end(this: Held, ...args: unknown[]) {
    return held(this, original.end, args, false);
  };
}

/** Holds `res` with `holder` until `holder.state` is 'done'. */
export function hold(res: ServerResponse, holder: Holder): void {
  if (res instanceof ServerResponse) {
    install();
    (res as Held)[kHolder] = holder;
    return;
  }
  // Another response class (an HTTP/2 compatibility response): its own methods are wrapped.
  const own = res as unknown as Record<'writeHead' | 'write' | 'end', Writer>;
  const mine = { writeHead: own.writeHead, write: own.write, end: own.end };
  for (const name of ['writeHead', 'write', 'end'] as const) {
    own[name] = function (this: ServerResponse, ...args: unknown[]) {
      if (holder.state === 'done') return mine[name].apply(res, args);
      if (isGone(res)) {
        holder.giveUp();
        return mine[name].apply(res, args);
      }
      holder.queue.push([mine[name], args]);
      if (holder.state === 'open') {
        holder.state = 'committing';
        holder.start(name === 'writeHead' && typeof args[0] === 'number' ? args[0] : undefined);
        if (holder.replayed) return holder.replayed.answer;
      }
      return name === 'write' ? true : res;
    };
  }
}

/** The client went away: the response (or, for HTTP/2, its stream) is destroyed. */
export function isGone(res: unknown): boolean {
  const r = res as { destroyed?: boolean; stream?: { destroyed?: boolean } };
  return r.destroyed === true || r.stream?.destroyed === true;
}

/** The writeHead a held call was made with, to find its headers argument. */
export function isWriteHead(fn: Writer): boolean {
  return fn === original.writeHead || fn.name === 'writeHead';
}
