import type { ResolvedTransport, Transport } from './types.js';

/** `x-session-id` → `X-Session-Id`, for display and Vary. */
export function headerCase(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_, dash: string, c: string) => dash + c.toUpperCase());
}

const SESSION_SCHEME = /^Session\s+(\S+)$/i;

/**
 * For API and mobile clients: the ID arrives in a request header
 * (`Authorization: Session <id>` by default) and a new one leaves in a
 * response header (empty when the session ended). No cookies.
 */
export function headerTransport(settings: ResolvedTransport): Transport {
  const { header, responseHeader } = settings;
  return {
    settings,
    vary: headerCase(header),
    carriesSealed: true,
    read(request) {
      let value = request.header(header)?.trim();
      if (value !== undefined && header === 'authorization')
        value = SESSION_SCHEME.exec(value)?.[1];
      return value ? { raw: value, via: 'header' } : { raw: undefined, via: undefined };
    },
    write: ({ value }) => [[responseHeader, value ?? '']],
  };
}
