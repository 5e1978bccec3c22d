export type {
  NodeSqliteDatabase,
  SqliteDriver,
  SqliteStore,
  SqliteStoreOptions,
} from './sqlite/index.js';
export { sqliteStore } from './sqlite/index.js';
