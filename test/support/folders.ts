import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

/**
 * A temporary root for one test file, removed after its tests, and
 * `folder()`: a fresh, empty folder under it for each case.
 */
export function tempFolders(prefix: string): { root: string; folder(): string } {
  const root = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  let folders = 0;
  return {
    root,
    folder() {
      const dir = join(root, `case-${++folders}`);
      mkdirSync(dir);
      return dir;
    },
  };
}
