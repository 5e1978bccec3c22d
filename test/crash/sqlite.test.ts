import { describe } from 'vitest';
import { sqliteStore } from '../../src/stores/sqlite.js';
import { describeCrashes } from './harness.js';

// The writer opens the store with its default driver: node:sqlite on Node 24,
// better-sqlite3 on Node 20 (.ci/run runs this file on both).
const probe = sqliteStore({ path: ':memory:' });
const driver = probe.driver;
await probe.close();

describe(`on ${driver} (the default on Node ${process.versions.node})`, () => {
  describeCrashes('sqlite');
});
