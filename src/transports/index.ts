import type { ResolvedCookieOptions } from '../cookies.js';
import { ConfigError } from '../errors.js';
import { rejectUnknownKeys } from '../validate.js';
import { cookieTransport } from './cookie.js';
import { headerTransport } from './header.js';
import type { ResolvedTransport, Transport } from './types.js';
import { urlTransport } from './url.js';

export { headerCase } from './header.js';
export type * from './types.js';

export type TransportOption =
  | 'cookie'
  | {
      type: 'header';
      /** Request header carrying the ID; `authorization` expects the `Session` scheme. @default 'authorization' */
      header?: string;
      /** Response header carrying a new ID (empty when the session ended). @default 'session-id' */
      responseHeader?: string;
    }
  | {
      type: 'url';
      /** Query parameter carrying the ID when the request has no session cookie. @default 'sessionid' */
      param?: string;
    };

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const PARAM = /^[A-Za-z0-9_.-]{1,64}$/;

/** The transport named by the `transport` option, its settings checked once. */
export function createTransport(
  option: TransportOption | undefined,
  cookie: ResolvedCookieOptions,
): Transport {
  const base: ResolvedTransport = {
    type: 'cookie',
    header: 'authorization',
    responseHeader: 'session-id',
    param: 'sessionid',
  };
  if (option === undefined || option === 'cookie') return cookieTransport(cookie, base);
  if (option?.type === 'header') {
    rejectUnknownKeys('transport: ', option, ['type', 'header', 'responseHeader']);
    const header = (option.header ?? base.header).toLowerCase();
    const responseHeader = (option.responseHeader ?? base.responseHeader).toLowerCase();
    for (const [name, value] of [
      ['header', header],
      ['responseHeader', responseHeader],
    ] as const) {
      if (!HEADER_NAME.test(value))
        throw new ConfigError(`transport.${name} "${value}" is not a valid header name`);
    }
    return headerTransport({ ...base, type: 'header', header, responseHeader });
  }
  if (option?.type === 'url') {
    rejectUnknownKeys('transport: ', option, ['type', 'param']);
    const param = option.param ?? base.param;
    if (!PARAM.test(param))
      throw new ConfigError(`transport.param "${param}" must be 1-64 of A-Z a-z 0-9 _ . -`);
    return urlTransport(cookie, { ...base, type: 'url', param });
  }
  throw new ConfigError(
    `transport must be 'cookie', { type: 'header' } or { type: 'url' }; got ${JSON.stringify(option)}`,
  );
}
