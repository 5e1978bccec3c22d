/**
 * Sizes and switches for the stress, crash and fuzz suites. The default run
 * is sized for CI (the whole of test/stress, test/crash and test/fuzz in
 * about a minute); `SATCHEL_STRESS=full` (and `SATCHEL_FUZZ=full`) run the
 * long variants behind `npm run test:stress`. Any size can be pinned with
 * its own variable, e.g. `SATCHEL_STRESS_UPDATES=5000`.
 */
import { connect } from 'node:net';

export const CI = /^(1|true|yes)$/i.test(process.env.CI ?? '');
export const STRESS_FULL = process.env.SATCHEL_STRESS === 'full';

/** `SATCHEL_STRESS_<NAME>` if set, else the full or the default size. */
export function size(name: string, normal: number, full: number): number {
  const pinned = process.env[`SATCHEL_STRESS_${name}`];
  if (pinned !== undefined && pinned !== '') {
    const value = Number(pinned);
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new Error(`SATCHEL_STRESS_${name} must be a positive integer; got ${pinned}`);
    }
    return value;
  }
  return STRESS_FULL ? full : normal;
}

/** Resolves true when something accepts TCP connections at 127.0.0.1:`port`. */
export function reachable(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Whether a suite that needs a service can run, and why not. */
export type Gate = { run: true } | { run: false; reason: string; fail: boolean };

/**
 * A suite that needs a store file (written by another part of the project)
 * and a local service: skipped while the store does not exist yet; when the
 * service is down, a failure under CI and a skip with a printed reason
 * elsewhere.
 */
export async function gate(
  store: string,
  storeExists: boolean,
  service: { name: string; port: number } | undefined,
): Promise<Gate> {
  if (!storeExists) {
    return { run: false, reason: `src/stores/${store}.ts does not exist yet`, fail: false };
  }
  if (service && !(await reachable(service.port))) {
    return {
      run: false,
      reason: `${service.name} is not reachable at 127.0.0.1:${service.port}`,
      fail: CI,
    };
  }
  return { run: true };
}
