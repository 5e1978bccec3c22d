/**
 * Query parameters whose values stay visible in `maskUrl`: connection
 * settings that help to read a log and hold no secret. Every other query
 * value is masked, since a driver may take a password or a token from any
 * parameter (`?password=`, `?sslpassword=`, `?token=`, `?auth=`, …).
 */
const PLAIN_QUERY_PARAMS = new Set([
  'application_name',
  'connect_timeout',
  'db',
  'family',
  'host',
  'port',
  'sslmode',
  'tls',
  'options',
  'target_session_attrs',
]);

/**
 * `url` for logs and pages: the password in the userinfo and every query
 * value but a few harmless connection settings replaced by `***`. A string
 * that is not a URL is masked the same way by pattern.
 */
export function maskUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url
      .replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@')
      .replace(/([?&][^=&#]+)=[^&#]*/g, (match, name: string) =>
        PLAIN_QUERY_PARAMS.has(name.slice(1).toLowerCase()) ? match : `${name}=***`,
      );
  }
  if (parsed.password !== '') parsed.password = '***';
  // Rebuilt by hand: URLSearchParams would percent-encode the `***`.
  if (parsed.search !== '') {
    const query = parsed.search
      .slice(1)
      .split('&')
      .map((pair) => {
        const eq = pair.indexOf('=');
        if (eq === -1) return pair;
        const name = pair.slice(0, eq);
        return PLAIN_QUERY_PARAMS.has(safeDecode(name).toLowerCase()) ? pair : `${name}=***`;
      })
      .join('&');
    parsed.search = `?${query}`;
  }
  if (parsed.hash !== '') parsed.hash = '***';
  return parsed.toString();
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text;
  }
}
