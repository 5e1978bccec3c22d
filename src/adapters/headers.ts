/** `field` added to a Vary value unless it (or `*`) is already there. */
export function mergeVary(current: string | null | undefined, field: string): string {
  const list = (current ?? '')
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
  if (list.includes('*') || list.some((v) => v.toLowerCase() === field.toLowerCase())) {
    return list.join(', ');
  }
  return [...list, field].join(', ');
}
