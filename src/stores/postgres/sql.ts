import { StoreUnavailableError } from '../../errors.js';
import type { StoredSession } from '../../store.js';

/** Rows, names and text as PostgreSQL holds them, and its errors as the store reports them. */

export interface Row {
  data: string;
  version: number;
  // BIGINT columns come back from pg as strings.
  expires_at: string;
  created_at: string;
  owner: string | null;
}

const NAME = '[A-Za-z_][A-Za-z0-9_]';
// 52 leaves room for the `_expires_at` suffix within PostgreSQL's 63-byte limit
// on identifiers, which it would otherwise truncate silently.
export const TABLE_NAME = new RegExp(`^(?:${NAME}{0,62}\\.)?${NAME}{0,51}$`);
/** pg error code: undefined_table. */
const UNDEFINED_TABLE = '42P01';

export function toRecord(row: Row): StoredSession {
  const record: StoredSession = {
    data: fromText(row.data),
    version: row.version,
    expiresAt: Number(row.expires_at),
    createdAt: Number(row.created_at),
  };
  if (row.owner !== null) record.owner = fromText(row.owner);
  return record;
}

export function quoteTable(table: string): string {
  return table
    .split('.')
    .map((part) => `"${part}"`)
    .join('.');
}

// BIGINT refuses fractions. Rounding up keeps `expiresAt > now` exactly as
// true or false as before for the whole-millisecond `now` the store compares with.
export function toMillis(ms: number): number {
  return Math.ceil(ms);
}

// PostgreSQL text cannot hold NUL. A string with a NUL, or one starting with
// the mark, is stored as the mark followed by the string with each mark
// doubled and each NUL written as mark + '0'. Every other string, JSON above
// all (which never contains a raw NUL), is stored as it is.
const MARK = '\u0001';

export function toText(value: string): string {
  if (!value.includes('\u0000') && !value.startsWith(MARK)) return value;
  return MARK + value.replaceAll(MARK, MARK + MARK).replaceAll('\u0000', `${MARK}0`);
}

export function fromText(stored: string): string {
  if (!stored.startsWith(MARK)) return stored;
  // Split on the doubled marks first: what is left holds only mark + '0' pairs.
  return stored
    .slice(1)
    .split(MARK + MARK)
    .map((part) => part.replaceAll(`${MARK}0`, '\u0000'))
    .join(MARK);
}

export function failure(op: string, table: string, cause: unknown): StoreUnavailableError {
  if ((cause as { code?: unknown } | null)?.code === UNDEFINED_TABLE) {
    return new StoreUnavailableError(
      'postgres',
      `${op} failed: table ${table} does not exist; create it with migrate() from satchel/stores/postgres or by running \`satchel migrate\``,
      cause,
    );
  }
  return new StoreUnavailableError('postgres', `${op} failed: ${detail(cause)}`, cause);
}

function detail(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // A refused connection to a name with several addresses is an AggregateError
  // with an empty message; its code says what happened.
  if (err.message !== '') return err.message;
  const code = (err as NodeJS.ErrnoException).code;
  return code ?? err.name;
}
