import {
  deleteCookieHeader,
  type ResolvedCookieOptions,
  readCookie,
  setCookieHeader,
} from '../cookies.js';
import type {
  IncomingRequest,
  IncomingValue,
  OutgoingValue,
  ResolvedTransport,
  Transport,
} from './types.js';

/** The session ID (or sealed session) in a cookie: the default. */
export function cookieTransport(
  cookie: ResolvedCookieOptions,
  settings: ResolvedTransport,
): Transport {
  return {
    settings,
    vary: 'Cookie',
    carriesSealed: true,
    read: (request) => readSessionCookie(cookie, request),
    write: (out) => writeSessionCookie(cookie, out),
  };
}

export function readSessionCookie(
  cookie: ResolvedCookieOptions,
  request: IncomingRequest,
): IncomingValue {
  const raw = readCookie(request.header('cookie'), cookie.name);
  return { raw, via: raw === undefined ? undefined : 'cookie' };
}

export function writeSessionCookie(
  cookie: ResolvedCookieOptions,
  { value, secure, expires }: OutgoingValue,
): [string, string][] {
  return [
    [
      'set-cookie',
      value === undefined
        ? deleteCookieHeader(cookie, secure)
        : setCookieHeader(cookie, value, secure, expires),
    ],
  ];
}
