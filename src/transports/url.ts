import type { ResolvedCookieOptions } from '../cookies.js';
import { readSessionCookie, writeSessionCookie } from './cookie.js';
import type { IncomingRequest, Linker, ResolvedTransport, Transport } from './types.js';

/** A link with no scheme, no `//`, and nothing a browser strips or rewrites (spaces, controls, backslashes). */
function isPlainRelative(url: string): boolean {
  if (/^[a-z][a-z0-9+.-]*:/i.test(url) || url.startsWith('//') || /[\s\\]/.test(url)) return false;
  for (let i = 0; i < url.length; i++) {
    const code = url.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return false;
  }
  return true;
}

/** Where a request's links resolve when it names no Host: an origin no link can have. */
const NO_HOST = 'satchel.invalid';

/**
 * Cookies, plus the ID in a URL parameter for clients that send no cookie
 * (opt-in: the ID then shows up in logs, history and shared links). An ID
 * that arrived in a URL is never written into a cookie: a link someone else
 * made cannot plant its session in this browser for good.
 */
export function urlTransport(
  cookie: ResolvedCookieOptions,
  settings: ResolvedTransport,
): Transport {
  const { param } = settings;
  return {
    settings,
    vary: 'Cookie',
    carriesSealed: false,
    read(request) {
      const fromCookie = readSessionCookie(cookie, request);
      if (fromCookie.raw !== undefined || request.url === undefined) return fromCookie;
      // Only a request with no session cookie may carry its ID in the URL.
      const target = request.url.split('#')[0]!;
      const query = target.indexOf('?');
      const value = query < 0 ? null : new URLSearchParams(target.slice(query + 1)).get(param);
      return value === null ? fromCookie : { raw: value, via: 'url' };
    },
    write: (out) => (out.fromUrl && out.value !== undefined ? [] : writeSessionCookie(cookie, out)),
    linker(request, incoming, idFor) {
      return incoming.via === 'cookie' ? undefined : createLinker(request, param, idFor);
    },
    // The ID is in this page's URL or links: keep it out of Referer headers and caches.
    exposureHeaders: [
      ['referrer-policy', 'no-referrer'],
      ['cache-control', 'private, no-store'],
    ],
  };
}

/**
 * Adds the ID to links that stay on this site. "This site" is decided as a
 * browser would: the WHATWG URL parser resolves the link against the
 * request's own URL (stripping the spaces, tabs, newlines and controls a
 * browser strips, reading backslashes as slashes), and only a link with the
 * request's origin gets the ID, in its normalized form.
 */
function createLinker(request: IncomingRequest, param: string, idFor: () => string): Linker {
  const scheme = request.encrypted ? 'https' : 'http';
  const base = new URL(`${scheme}://${NO_HOST}`);
  try {
    const host = request.header('host');
    if (host) base.host = host;
    base.href = new URL(request.url ?? '/', base).href;
  } catch {
    // A Host header that is not a host: links resolve against satchel.invalid, so none matches.
  }
  let used = false;
  return {
    get used() {
      return used;
    },
    encode(url) {
      let target: URL;
      try {
        target = new URL(url, base);
      } catch {
        return url;
      }
      if (target.origin !== base.origin || target.origin === 'null') return url;
      // A jump within this page needs no ID.
      if (url.trimStart().startsWith('#')) return url;
      target.searchParams.set(param, idFor());
      used = true;
      // A plain relative link stays relative; anything a browser would rewrite is emitted as parsed.
      const path = isPlainRelative(url) ? url.split(/[?#]/)[0]! : target.pathname;
      return `${path}${target.search}${target.hash}`;
    },
  };
}
