import type { IncomingRequest, Session, Sessions } from '../src/index.js';

/** A request as an adapter would describe it: just a Cookie header. */
export function fakeRequest(
  cookie?: string,
  headers: Record<string, string> = {},
): IncomingRequest {
  const all: Record<string, string | undefined> = { ...headers, cookie };
  return { header: (name) => all[name], encrypted: false };
}

export interface Exchange {
  setCookie: string[];
  vary: string | undefined;
  /** The cookie value a browser would now send, or undefined if deleted/none. */
  value: string | undefined;
}

/** One request/response cycle against the manager, without HTTP. */
export async function exchange<D extends object>(
  sessions: Sessions<D>,
  cookieValue: string | undefined,
  handler: (session: Session<D>) => unknown,
  status = 200,
): Promise<Exchange> {
  const name = sessions.cookie.name;
  const session = await sessions.load(
    fakeRequest(cookieValue === undefined ? undefined : `${name}=${cookieValue}`),
  );
  await handler(session);
  const { headers } = await sessions.commit(session, status);
  const setCookie = headers.filter(([h]) => h === 'set-cookie').map(([, v]) => v);
  const vary = headers.find(([h]) => h === 'vary')?.[1];
  let value = cookieValue;
  for (const header of setCookie) {
    const match = /^[^=]+=([^;]*)/.exec(header)!;
    value = /Max-Age=0(;|$)/.test(header) ? undefined : match[1];
  }
  return { setCookie, vary, value };
}

/** A cookie jar client for a real HTTP server, one "browser". */
export class Browser {
  cookie: string | undefined;
  constructor(
    readonly base: string,
    readonly cookieName = 'sessionid',
  ) {}

  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.cookie !== undefined) headers.set('cookie', `${this.cookieName}=${this.cookie}`);
    const res = await fetch(new URL(path, this.base), { ...init, headers, redirect: 'manual' });
    for (const header of res.headers.getSetCookie()) {
      const [pair] = header.split(';');
      const [name, value] = pair!.split('=');
      if (name !== this.cookieName) continue;
      this.cookie = /Max-Age=0(;|$)/i.test(header) ? undefined : value;
    }
    return res;
  }
}
