/** Expiry rules, resolved once from the options and applied at load, commit and in listings. */
export interface ExpiryPolicy {
  /** Seconds of inactivity before a session expires. */
  idleTimeout: number;
  /** Seconds from creation after which a session always expires; null for none. */
  absoluteTimeout: number | null;
  expireAtBrowserClose: boolean;
}

/** Per-session expiry as stored: seconds of inactivity, 0 for browser close, or a fixed time. */
export type ExpirySetting = number | { at: number };

/** setExpiry's upper bound: 100 years keeps every expiry a valid, sendable date. */
export const MAX_EXPIRY_SECONDS = 100 * 365 * 24 * 3600;

function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null;
}

/** What `session.setExpiry(value)` stores, after checking the value (Django's set_expiry). */
export function expirySetting(value: number | Date): ExpirySetting {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime()) || value.getTime() > Date.now() + MAX_EXPIRY_SECONDS * 1000) {
      throw new TypeError('setExpiry: the Date must be valid and at most 100 years ahead');
    }
    return { at: value.getTime() };
  }
  if (!Number.isFinite(value) || Math.abs(value) > MAX_EXPIRY_SECONDS) {
    throw new TypeError(
      `setExpiry: seconds must be a number from -${MAX_EXPIRY_SECONDS} to ${MAX_EXPIRY_SECONDS} (100 years); got ${value}`,
    );
  }
  // Negative seconds, as in Django, mean "already expired": a fixed time in the past.
  return value < 0 ? { at: Date.now() + value * 1000 } : value;
}

export function isBrowserSession(policy: ExpiryPolicy, setting: unknown): boolean {
  if (setting === undefined || setting === null) return policy.expireAtBrowserClose;
  return setting === 0;
}

/** Server-side expiry for a save at `now`: per-session setting or idle timeout, capped by the absolute timeout. */
export function computeExpiresAt(
  policy: ExpiryPolicy,
  setting: unknown,
  createdAt: number,
  now: number,
): number {
  let at: number;
  if (typeof setting === 'number' && setting > 0) at = now + setting * 1000;
  else if (isObject(setting) && typeof (setting as { at: unknown }).at === 'number') {
    at = (setting as { at: number }).at;
  } else at = now + policy.idleTimeout * 1000;
  if (policy.absoluteTimeout !== null) at = Math.min(at, createdAt + policy.absoluteTimeout * 1000);
  return at;
}

/**
 * The expiry a save of changed data writes: `next`, except that an idle
 * expiry pushed forward by less than `touchMs` stays `current`, as a read
 * does (see `touchInterval`). A save then writes the indexed expiry column
 * at most once per interval (SQLite maintains an index whenever its column
 * is assigned; PostgreSQL can update a row in place only when no indexed
 * column changes), and the session still ends no later than computed.
 */
export function savedExpiry(current: number, next: number, touchMs: number): number {
  return next >= current && next - current < touchMs ? current : next;
}

/** True when the expiry slides with activity (idle timeout), so a touch can extend it. */
export function isSliding(setting: unknown): boolean {
  return !(isObject(setting) && 'at' in setting);
}

/** A session saved now would already be expired (setExpiry with a past Date or negative seconds). */
export function expiresOnSave(
  policy: ExpiryPolicy,
  setting: unknown,
  createdAt: number,
  now: number,
): boolean {
  return computeExpiresAt(policy, setting, createdAt, now) <= now;
}

/** A loaded record is past its idle expiry or its absolute lifetime. */
export function isExpired(
  policy: ExpiryPolicy,
  record: { createdAt: number; expiresAt: number },
  now: number,
): boolean {
  if (record.expiresAt <= now) return true;
  return policy.absoluteTimeout !== null && record.createdAt + policy.absoluteTimeout * 1000 <= now;
}
