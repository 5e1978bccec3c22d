/**
 * The demo's accounts: passwords are kept only as scrypt hashes
 * (`node:crypto`), checked in constant time. A real app keeps them in its
 * database; the session side (cycleKey, setOwner, flush) is what this demo shows.
 */
import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto';

/**
 * `demo` / `demo-password`, hashed as `hashPassword` does:
 * `scrypt$N$r$p$<salt>$<hash>`, salt and hash base64url.
 */
export const DEMO_USERS: ReadonlyMap<string, string> = new Map([
  ['demo', 'scrypt$32768$8$1$buYczxVTwqeYMAvsTRHpLw$feYAr9zuPMUtdqxWBkgoAfom9r3WU9PdIxzgrcabIAw'],
]);

/** Checked when the username is unknown, so that costs as long as a wrong password. */
const UNKNOWN_USER =
  'scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

/** scrypt work factors: 32 MiB and about 0.1 s per check on a laptop. */
const COST = { N: 32_768, r: 8, p: 1 };
/** Longer passwords are refused before hashing. */
const MAX_PASSWORD_LENGTH = 1024;

function derive(password: string, salt: Buffer, length: number, cost: ScryptOptions) {
  // Async: the hashing runs on libuv's thread pool, not on the event loop.
  return new Promise<Buffer>((resolve, reject) => {
    const maxmem = 2 * 128 * (cost.N ?? 0) * (cost.r ?? 0) * (cost.p ?? 1);
    scrypt(password, salt, length, { ...cost, maxmem }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

/** A new `scrypt$N$r$p$salt$hash` string for `password`, with a random salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await derive(password, salt, 32, COST);
  return `scrypt$${COST.N}$${COST.r}$${COST.p}$${salt.toString('base64url')}$${hash.toString('base64url')}`;
}

/** True when `password` matches `encoded` (from `hashPassword`); compared in constant time. */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash, ...rest] = encoded.split('$');
  if (scheme !== 'scrypt' || salt === undefined || hash === undefined || rest.length > 0) {
    return false;
  }
  const expected = Buffer.from(hash, 'base64url');
  if (expected.length < 16) return false;
  const actual = await derive(password, Buffer.from(salt, 'base64url'), expected.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
  });
  return timingSafeEqual(actual, expected);
}

/** The user name when `username` and `password` match an account, else undefined. */
export async function authenticate(
  users: ReadonlyMap<string, string>,
  username: unknown,
  password: unknown,
): Promise<string | undefined> {
  if (typeof username !== 'string' || typeof password !== 'string') return undefined;
  if (password.length > MAX_PASSWORD_LENGTH) return undefined;
  const encoded = users.get(username);
  const ok = await verifyPassword(password, encoded ?? UNKNOWN_USER);
  return ok && encoded !== undefined ? username : undefined;
}
