/**
 * Fuzzing settings: a fixed seed and a few thousand cases per property by
 * default (fast enough for `npm test`); `SATCHEL_FUZZ=full` multiplies the
 * cases by 5 (about 300,000 in all) and draws a fresh seed, printed so a
 * failure can be replayed with `SATCHEL_FUZZ_SEED=<seed>`.
 */
import fc from 'fast-check';
import { afterAll, vi } from 'vitest';

export const FUZZ_FULL = process.env.SATCHEL_FUZZ === 'full';
const pinned = process.env.SATCHEL_FUZZ_SEED;
export const SEED =
  pinned !== undefined && pinned !== ''
    ? Number(pinned)
    : FUZZ_FULL
      ? Date.now() % 2 ** 31
      : 20_240_607;

let cases = 0;
let properties = 0;

/** `fc.assert` with the suite's seed and `runs` cases (5 times more in the full run). */
export async function check<T>(
  property: fc.IAsyncProperty<T> | fc.IProperty<T>,
  runs: number,
): Promise<void> {
  const numRuns = FUZZ_FULL ? runs * 5 : runs;
  await fc.assert(property, { seed: SEED, numRuns, endOnFailure: true });
  cases += numRuns;
  properties++;
}

/**
 * Sets up a fuzz file: a timeout that fits its size (the full run is five
 * times longer), and a line saying how many cases it ran, for the figures in
 * SECURITY.md.
 */
export function fuzzFile(file: string): void {
  vi.setConfig({ testTimeout: FUZZ_FULL ? 600_000 : 60_000 });
  afterAll(() => {
    console.info(`[fuzz] ${file}: ${properties} properties, ${cases} cases, seed ${SEED}`);
  });
}
