/**
 * The local services the store suites need (Redis, PostgreSQL): probes that
 * say why a service cannot be used, and the rule for a missing one: under
 * CI=true it is a failure, elsewhere a skip with a printed reason.
 */
import { userInfo } from 'node:os';
import { Redis } from 'ioredis';
import pg from 'pg';
import { describe, it } from 'vitest';

export const REDIS_URL = 'redis://127.0.0.1:6379';
export const DATABASE_URL = 'postgres://127.0.0.1:5432/postgres';

/** Whether this run is on CI, where a missing service is a failure. */
export const CI = process.env.CI === 'true';

/** Why Redis at `url` cannot be used, or undefined when it answers PING. */
export async function redisUnreachable(url = REDIS_URL): Promise<string | undefined> {
  const probe = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 1_000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  let cause: Error | undefined;
  probe.on('error', (err: Error) => {
    cause ??= err;
  });
  try {
    await probe.connect();
    await probe.ping();
    return undefined;
  } catch (err) {
    return `Redis at ${url} is unreachable (${(cause ?? (err as Error)).message})`;
  } finally {
    probe.disconnect();
  }
}

/**
 * `url` for this process's own pg clients: the store connects as the OS user
 * when the URL names none and USER is unset; a bare pg client does not.
 */
export function adminDatabaseUrl(url = DATABASE_URL): string {
  const parsed = new URL(url);
  if (parsed.username === '' && !process.env.PGUSER && !process.env.USER) {
    parsed.username = userInfo().username;
  }
  return parsed.toString();
}

/** Why PostgreSQL at `url` cannot be used, or undefined when it answers. */
export async function postgresUnreachable(url = DATABASE_URL): Promise<string | undefined> {
  const client = new pg.Client({
    connectionString: adminDatabaseUrl(url),
    connectionTimeoutMillis: 2_000,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (err) {
    const error = err as NodeJS.ErrnoException;
    return `PostgreSQL at ${url} is unreachable (${error.message || error.code || String(err)})`;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Drops the sessions table `table` and its locks table at DATABASE_URL; nothing else. */
export async function dropTable(table: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminDatabaseUrl() });
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query(`DROP TABLE IF EXISTS "${table}", "${table}_locks"`);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * True when the service is there (`missing` undefined). When it is not:
 * under CI=true one failing case in a suite `name` saying why, elsewhere a
 * printed reason and a skipped suite `name (skipped: …)` around `skipped`
 * (by default one placeholder case); false either way.
 */
export function serviceReady(
  name: string,
  missing: string | undefined,
  skipped: () => void = () => {
    it('needs the service', () => {});
  },
): boolean {
  if (missing === undefined) return true;
  if (CI) {
    describe(name, () => {
      it('needs the service', () => {
        throw new Error(`${missing}; CI=true makes a missing service a failure, not a skip`);
      });
    });
  } else {
    // Skipped only outside CI, when Redis, PostgreSQL or Chromium is missing on a
    // developer's machine: the reason is printed and kept in the suite's name.
    // Under CI=true the branch above makes the same situation a failure.
    console.warn(`[satchel] skipping "${name}": ${missing}`);
    describe.skip(`${name} (skipped: ${missing})`, skipped);
  }
  return false;
}

/** `describe(name, body)` when the service is there; otherwise as `serviceReady`, skipping `body`. */
export function describeWithService(
  name: string,
  missing: string | undefined,
  body: () => void,
): void {
  if (serviceReady(name, missing, body)) describe(name, body);
}
