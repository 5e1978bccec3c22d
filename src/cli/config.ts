// The store the environment selects: the CLI's and the example app's one
// entry point. The parts live beside it: targets.ts reads the variables,
// factories.ts opens each store, migration.ts runs `satchel migrate`, mask.ts
// hides secrets in URLs.
import { didYouMean } from '../validate.js';
import { factories, type OpenOptions, type StoreChoice } from './factories.js';
import {
  asStoreEnvError,
  cachedDurableName,
  DEFAULT_STORE,
  type MigrationTarget,
  postgresTarget,
  StoreEnvError,
  type StoreEnv,
} from './targets.js';

export type { OpenOptions, StoreChoice } from './factories.js';
export { maskUrl } from './mask.js';
export {
  CONNECT_TIMEOUT_MS,
  type MigrationReport,
  migrationSummary,
  runMigration,
} from './migration.js';
export {
  DEFAULT_CACHE,
  DEFAULT_CACHED_STORE,
  DEFAULT_DATABASE_TABLE,
  DEFAULT_DATABASE_URL,
  DEFAULT_MEMORY_CACHE_TTL_MS,
  DEFAULT_REDIS_URL,
  DEFAULT_STORE,
  type MigrationTarget,
  type StoreEnv,
  StoreEnvError,
} from './targets.js';

/** SATCHEL_STORE names something this build does not know: a usage error (exit 2), not a crash. */
export class UnknownStoreError extends StoreEnvError {
  constructor(
    readonly storeName: string,
    source = 'SATCHEL_STORE',
  ) {
    const near = didYouMean(storeName.trim(), storeNames());
    super(
      `unknown ${source} ${JSON.stringify(storeName)}; ${near ? `did you mean "${near}"? ` : ''}expected one of: ${storeNames().join(', ')}`,
    );
    this.name = 'UnknownStoreError';
  }
}

/** The store names `storeFromEnv` accepts. */
export function storeNames(): string[] {
  return Object.keys(factories);
}

/** The store SATCHEL_STORE selects (default `sqlite`), normalized; UnknownStoreError otherwise. */
export function selectedStore(env: StoreEnv): string {
  const name = (env.SATCHEL_STORE || DEFAULT_STORE).trim().toLowerCase();
  if (!Object.hasOwn(factories, name)) throw new UnknownStoreError(env.SATCHEL_STORE ?? '');
  return name;
}

/**
 * Opens the store the environment selects: `SATCHEL_STORE` (default
 * `sqlite`) and that store's own variables. A missing or malformed variable,
 * or options the store refuses, throw StoreEnvError (UnknownStoreError for an
 * unknown name); a store that cannot be opened throws its own satchel error.
 * Stores with a server connect lazily or in the background: a service that
 * is down shows up as StoreUnavailableError on first use, not here. With
 * `create: false`, a missing SQLite file or file-store folder is a
 * StoreEnvError naming the path, and nothing is created.
 */
export async function storeFromEnv(env: StoreEnv, options: OpenOptions = {}): Promise<StoreChoice> {
  const name = selectedStore(env);
  try {
    return { name, ...(await factories[name]!(env, { create: options.create ?? true })) };
  } catch (err) {
    throw asStoreEnvError(err);
  }
}

/**
 * The PostgreSQL table the selected store needs (`postgres`, or `cached` in
 * front of postgres), or undefined when it needs none. Opens nothing.
 */
export function migrationFromEnv(env: StoreEnv): MigrationTarget | undefined {
  const name = selectedStore(env);
  if (name === 'postgres') return postgresTarget(env);
  if (name === 'cached' && cachedDurableName(env) === 'postgres') return postgresTarget(env);
  return undefined;
}
