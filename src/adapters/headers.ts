import type { CommitResult } from '../manager.js';

/** `field` added to a Vary value unless it (or `*`) is already there. */
export function mergeVary(current: string | null | undefined, field: string): string {
  if (!current) return field;
  const list = (current ?? '')
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
  if (list.includes('*') || list.some((v) => v.toLowerCase() === field.toLowerCase())) {
    return list.join(', ');
  }
  return [...list, field].join(', ');
}

/**
 * The app's Cache-Control with satchel's directives added. A response that
 * carries a session cookie is `private`: an app's `public` is dropped, since a
 * shared cache would hand one visitor's Set-Cookie to the next.
 */
export function mergeCacheControl(current: string | null | undefined, ours: string): string {
  if (!current) return ours;
  const added = ours.split(',').map((v) => v.trim());
  const name = (directive: string) => directive.split('=')[0]!.trim().toLowerCase();
  const taken = new Set(added.map(name));
  if (taken.has('private')) taken.add('public');
  const kept = (current ?? '')
    .split(',')
    .map((v) => v.trim())
    .filter((d) => d && !taken.has(name(d)));
  return [...added, ...kept].join(', ');
}

/** The few header operations every framework's response offers. */
export interface HeaderTarget {
  get(name: string): string | undefined;
  set(name: string, value: string): void;
  append(name: string, value: string): void;
}

/**
 * Applies a commit's headers to a response, for every adapter: each
 * Set-Cookie appended, Vary and Cache-Control merged with what the app set,
 * any other header replaced.
 */
export function applyCommitHeaders(headers: CommitResult['headers'], target: HeaderTarget): void {
  for (const [name, value] of headers) {
    if (name === 'set-cookie') target.append(name, value);
    else if (name === 'vary') target.set(name, mergeVary(target.get(name), value));
    else if (name === 'cache-control') target.set(name, mergeCacheControl(target.get(name), value));
    else target.set(name, value);
  }
}

/**
 * A Web `Headers` object as a commit's header target. The targets are
 * classes: an object literal of closures would be built anew for every response.
 */
export function webHeaderTarget(target: Headers): HeaderTarget {
  return new WebHeaderTarget(target);
}

class WebHeaderTarget implements HeaderTarget {
  constructor(readonly target: Headers) {}

  get(name: string): string | undefined {
    return this.target.get(name) ?? undefined;
  }

  set(name: string, value: string): void {
    this.target.set(name, value);
  }

  append(name: string, value: string): void {
    this.target.append(name, value);
  }
}

/** What a node:http (or HTTP/2 compatibility) response offers for headers, without importing node:http. */
export interface NodeHeaders {
  getHeader(name: string): number | string | string[] | undefined;
  setHeader(name: string, value: number | string | readonly string[]): unknown;
}

/** A node:http response as a commit's header target. */
export function nodeHeaderTarget(res: NodeHeaders): HeaderTarget {
  return new NodeHeaderTarget(res);
}

class NodeHeaderTarget implements HeaderTarget {
  constructor(readonly res: NodeHeaders) {}

  get(name: string): string | undefined {
    const value = this.res.getHeader(name);
    return value === undefined
      ? undefined
      : Array.isArray(value)
        ? value.join(', ')
        : String(value);
  }

  set(name: string, value: string): void {
    this.res.setHeader(name, value);
  }

  append(name: string, value: string): void {
    const current = this.res.getHeader(name);
    if (current === undefined) this.res.setHeader(name, value);
    else
      this.res.setHeader(name, [...(Array.isArray(current) ? current : [String(current)]), value]);
  }
}
