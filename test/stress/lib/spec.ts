/**
 * A store described as plain data, so a child process (a crash writer, a
 * lock holder, the outage app) can open the same store as the test. Imports
 * no vitest: child scripts load it with tsx.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { SessionStore } from '../../../src/store.js';
import { fileStore } from '../../../src/stores/file.js';
import { sqliteStore } from '../../../src/stores/sqlite.js';

export type StoreSpec =
  | { kind: 'sqlite'; path: string }
  | { kind: 'file'; dir: string; lockTtlMs?: number }
  | { kind: 'redis'; url: string; prefix: string }
  | { kind: 'postgres'; url: string; table: string; connectTimeoutMs?: number };

const STORES_DIR = fileURLToPath(new URL('../../../src/stores/', import.meta.url));

export function storeFileExists(name: string): boolean {
  return existsSync(join(STORES_DIR, `${name}.ts`));
}

/** Imports `src/stores/<name>.ts` without a static import: other parts of the project add these files. */
export async function importStore(name: string): Promise<Record<string, any>> {
  return import(pathToFileURL(join(STORES_DIR, `${name}.ts`)).href);
}

export async function openSpec(spec: StoreSpec): Promise<SessionStore> {
  switch (spec.kind) {
    case 'sqlite':
      return sqliteStore({ path: spec.path });
    case 'file':
      return fileStore({
        dir: spec.dir,
        ...(spec.lockTtlMs !== undefined && { lockTtlMs: spec.lockTtlMs }),
      });
    case 'redis': {
      const { redisStore } = await importStore('redis');
      return redisStore({ url: spec.url, prefix: spec.prefix }) as SessionStore;
    }
    case 'postgres': {
      const { postgresStore } = await importStore('postgres');
      return postgresStore({
        connectionString: spec.url,
        table: spec.table,
        ...(spec.connectTimeoutMs !== undefined && { connectTimeoutMs: spec.connectTimeoutMs }),
      }) as SessionStore;
    }
  }
}
