import { ConfigError } from './errors.js';

/**
 * Option validators shared by `createSessions` and every store factory, so a
 * bad value gets the same kind of message wherever it is given:
 * `[satchel] memory store: maxEntries must be a positive integer; got 0`.
 * `scope` prefixes the message (`'memory store: '`, or `''` for createSessions).
 */

/** A finite number above zero (or at least zero with `allowZero`). */
export function positiveNumber(
  scope: string,
  name: string,
  value: unknown,
  allowZero = false,
): number {
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    value < 0 ||
    (!allowZero && value === 0)
  ) {
    throw new ConfigError(
      `${scope}${name} must be a ${allowZero ? 'non-negative' : 'positive'} number; got ${show(value)}`,
    );
  }
  return value;
}

/** A safe integer above zero (or at least zero with `allowZero`). */
export function positiveInteger(
  scope: string,
  name: string,
  value: unknown,
  allowZero = false,
): number {
  if (!Number.isSafeInteger(value) || (value as number) < (allowZero ? 0 : 1)) {
    throw new ConfigError(
      `${scope}${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer; got ${show(value)}`,
    );
  }
  return value as number;
}

/**
 * Secrets long enough to key an HMAC or a cipher: at least 32 characters
 * each. `keyName(i, count)` names one key in messages (default `name[i]`).
 */
export function secretList(
  scope: string,
  name: string,
  value: unknown,
  keyName: (index: number, count: number) => string = (i) => `${name}[${i}]`,
): string[] {
  const list = typeof value === 'string' ? [value] : Array.isArray(value) ? [...value] : undefined;
  if (!list) throw new ConfigError(`${scope}${name} must be a string or an array of strings`);
  if (list.length === 0) throw new ConfigError(`${scope}${name} must hold at least one key`);
  list.forEach((secret, i) => {
    if (typeof secret !== 'string' || secret.length < 32) {
      throw new ConfigError(
        `${scope}${keyName(i, list.length)} must be at least 32 characters; got ${typeof secret === 'string' ? secret.length : typeof secret} (generate one with: npx satchel keygen)`,
      );
    }
  });
  return list as string[];
}

/**
 * Refuses keys an options object does not know, so a typo (`idleTimout`) or
 * another library's name (`secret`, `resave`) fails at start-up instead of
 * being silently ignored. `hints` maps a known foreign name to its advice.
 */
export function rejectUnknownKeys(
  scope: string,
  options: object | undefined,
  known: readonly string[],
  hints: Readonly<Record<string, string>> = {},
): void {
  if (options === undefined || options === null || typeof options !== 'object') return;
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const hint = Object.hasOwn(hints, key) ? hints[key] : undefined;
    const near = hint === undefined ? didYouMean(key, known) : undefined;
    const advice =
      hint ?? (near ? `did you mean "${near}"?` : `known options: ${known.join(', ')}`);
    throw new ConfigError(`${scope}unknown option "${key}": ${advice}`);
  }
}

/** The closest candidate to `word` (case-insensitive edit distance), if one is close enough to be a typo. */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of candidates) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const allowed = Math.max(1, Math.floor(word.length / 3));
  return bestDistance <= allowed ? best : undefined;
}

/** Levenshtein distance with adjacent transpositions (optimal string alignment). */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    rows.push([i]);
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        rows[0]!.push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      }
      rows[i]!.push(d);
    }
  }
  return rows[a.length]![b.length]!;
}

function show(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}
