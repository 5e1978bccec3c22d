import { describe, it } from 'vitest';
import type { Gate } from './env.js';

/**
 * Stands in for a suite that cannot run here: a failing case when the gate
 * says so (a missing service under CI), otherwise a skipped suite whose
 * reason is printed.
 */
export function describeUnavailable(name: string, gate: Gate): void {
  if (gate.run) return;
  if (gate.fail) {
    describe(name, () => {
      it('has its service running (required under CI)', () => {
        throw new Error(`[stress] ${gate.reason}`);
      });
    });
    return;
  }
  // Skipped only outside CI, when the store's service (Redis, PostgreSQL) is not
  // running on this machine: the reason is printed and put in the suite's name.
  // Under CI=true the branch above turns the same situation into a failure.
  console.warn(`[stress] skipping ${name}: ${gate.reason}`);
  describe.skip(`${name} (${gate.reason})`, () => {
    it('needs its store and service', () => {});
  });
}
