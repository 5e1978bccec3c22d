/**
 * What both runners (run.mjs, interleave.mjs) read from their command line
 * and environment: `--name` flags, `--name=value` options, `--only`, and the
 * Redis and PostgreSQL the store contenders talk to.
 */
import { cpus } from 'node:os';
import { hasTaskset } from './proc.mjs';

export function readArgs(argv = process.argv.slice(2)) {
  const flag = (name) => argv.includes(`--${name}`);
  const option = (name, fallback) => {
    const hit = argv.find((a) => a.startsWith(`--${name}=`));
    return hit === undefined ? fallback : hit.slice(name.length + 3);
  };
  const only = option('only') === undefined ? undefined : new RegExp(option('only'));
  // Servers on CPU 0, the load generator on CPU 1, when taskset and two CPUs allow it.
  const pin = !flag('no-pin') && hasTaskset && cpus().length >= 2;
  return { argv, flag, option, only, pin };
}

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
