// `satchel migrate`: creates the postgres store's tables and reports what it created.
import type { Pool } from 'pg';
import { StoreUnavailableError } from '../errors.js';
import { loadPeer } from '../stores/kit.js';
import { withDefaultUser } from '../stores/postgres/target.js';
import { asStoreEnvError, type MigrationTarget } from './targets.js';

/** How long the CLI waits for a first answer from Redis or PostgreSQL before reporting it unreachable. */
export const CONNECT_TIMEOUT_MS = 2_000;

export interface MigrationReport extends MigrationTarget {
  /** What this run created, e.g. `table satchel_sessions`; empty when all was in place. */
  created: string[];
}

/**
 * Runs the postgres store's `migrate()` on `target` and reports what it
 * created (the sessions table, its two indexes, the locks table). Safe to
 * run again: then nothing is created. Throws StoreUnavailableError when the
 * database cannot be reached, StoreEnvError when the table name is refused.
 */
export async function runMigration(target: MigrationTarget): Promise<MigrationReport> {
  const { migrate, postgresStore } = await import('../stores/postgres.js');
  try {
    // Validates the table name and loads the driver, without connecting.
    await postgresStore({ connectionString: target.url, table: target.table }).close();
  } catch (err) {
    throw asStoreEnvError(err);
  }
  const pg = loadPeer<typeof import('pg')>('postgres', 'pg', 'npm install pg');
  const pool: Pool = new pg.Pool({
    connectionString: withDefaultUser(target.url),
    // An unreachable database is reported in about 2 s, not after a TCP timeout.
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    max: 1,
    allowExitOnIdle: true,
  });
  pool.on('error', () => {});
  const dot = target.table.lastIndexOf('.');
  const schema = dot === -1 ? '' : `"${target.table.slice(0, dot)}".`;
  const bare = target.table.slice(dot + 1);
  const objects = [
    ['table', bare],
    ['index', `${bare}_expires_at`],
    ['index', `${bare}_owner`],
    ['table', `${bare}_locks`],
  ] as const;
  const present = async (): Promise<boolean[]> => {
    const { rows } = await pool.query<{ found: boolean }>(
      'SELECT to_regclass(name) IS NOT NULL AS found FROM unnest($1::text[]) WITH ORDINALITY AS t(name, n) ORDER BY n',
      [objects.map(([, name]) => `${schema}"${name}"`)],
    );
    return rows.map((row) => row.found);
  };
  try {
    let before: boolean[];
    try {
      before = await present();
    } catch (err) {
      throw new StoreUnavailableError(
        'postgres',
        `migrate failed: ${describeError(err)} (${target.shownUrl})`,
        err,
      );
    }
    await migrate({ pool, table: target.table });
    const created = objects.filter((_, i) => !before[i]).map(([kind, name]) => `${kind} ${name}`);
    return { ...target, created };
  } finally {
    await pool.end().catch(() => {});
  }
}

/** What `runMigration` did, for a log line: `created table …, index …` or `already up to date`. */
export function migrationSummary(report: MigrationReport): string {
  return report.created.length === 0
    ? 'already up to date, nothing created'
    : `created ${report.created.join(', ')}`;
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // A refused connection to a name with several addresses is an AggregateError
  // with an empty message; its code says what happened.
  return err.message || (err as NodeJS.ErrnoException).code || err.name;
}
