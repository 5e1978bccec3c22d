/**
 * The session data the crash writer stores for version `n` of session `id`:
 * the manager's JSON, growing with `n` (up to 128 KiB), and made of the ID
 * and version throughout, so a torn or mixed-up write cannot pass for a
 * whole one.
 */
export function payload(id: string, n: number): string {
  const size = Math.min(256 + n * 1024, 128 * 1024);
  const unit = `${id}:${n};`;
  const pad = unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
  return JSON.stringify({ v: n, id, pad });
}

/** The version `data` holds when it is exactly what the writer stored for `id`; undefined when it is not. */
export function versionOf(id: string, data: string): number | undefined {
  let parsed: { v?: unknown };
  try {
    parsed = JSON.parse(data) as { v?: unknown };
  } catch {
    return undefined;
  }
  const n = parsed.v;
  return typeof n === 'number' && data === payload(id, n) ? n : undefined;
}
