import type { SessionStore } from '../store.js';

/** The environment variables the `satchel` CLI and the example app read. */
export interface StoreEnv {
  /** Which store: `sqlite` (default), `file` or `memory`. */
  SATCHEL_STORE?: string | undefined;
  /** The SQLite database file. Default `./satchel-sessions.db`. */
  SATCHEL_SQLITE_PATH?: string | undefined;
  /** The file store's folder (Django's SESSION_FILE_PATH). Default: the OS temp folder. */
  SATCHEL_FILE_PATH?: string | undefined;
  [name: string]: string | undefined;
}

export interface StoreChoice {
  /** The store's registry name, e.g. `sqlite`. */
  name: string;
  /** One line for logs: the name and where the data lives. */
  description: string;
  store: SessionStore;
}

/** SATCHEL_STORE names something this build does not know: a usage error (exit 2), not a crash. */
export class UnknownStoreError extends Error {
  constructor(
    readonly storeName: string,
    source = 'SATCHEL_STORE',
  ) {
    super(
      `unknown ${source} ${JSON.stringify(storeName)}; expected one of: ${storeNames().join(', ')}`,
    );
    this.name = 'UnknownStoreError';
  }
}

type StoreFactory = (env: StoreEnv) => Promise<Omit<StoreChoice, 'name'>>;

// Each entry imports its store only when chosen, so a store whose driver is an
// optional peer dependency (redis, postgres) costs nothing to the others.
// A new store plugs in as one more entry here.
const factories: Record<string, StoreFactory> = {
  async sqlite(env) {
    const { sqliteStore } = await import('../stores/sqlite.js');
    const path = env.SATCHEL_SQLITE_PATH || './satchel-sessions.db';
    return { description: `sqlite (${path})`, store: sqliteStore({ path }) };
  },
  async file(env) {
    const { fileStore } = await import('../stores/file.js');
    const { tmpdir } = await import('node:os');
    const dir = env.SATCHEL_FILE_PATH || tmpdir();
    return { description: `file (${dir})`, store: fileStore({ dir }) };
  },
  async memory() {
    const { memoryStore } = await import('../stores/memory.js');
    return {
      description: 'memory (this process only; lost on restart)',
      store: memoryStore(),
    };
  },
};

export const DEFAULT_STORE = 'sqlite';

/** The store names `storeFromEnv` accepts. */
export function storeNames(): string[] {
  return Object.keys(factories);
}

/**
 * Opens the store the environment selects: `SATCHEL_STORE` (default
 * `sqlite`) and that store's own variables. Throws UnknownStoreError for an
 * unknown name; a store that cannot be opened throws its own satchel error.
 */
export async function storeFromEnv(env: StoreEnv): Promise<StoreChoice> {
  const name = (env.SATCHEL_STORE || DEFAULT_STORE).trim().toLowerCase();
  const factory = Object.hasOwn(factories, name) ? factories[name] : undefined;
  if (factory === undefined) throw new UnknownStoreError(env.SATCHEL_STORE ?? '');
  return { name, ...(await factory(env)) };
}
