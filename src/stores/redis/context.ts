import { createHash } from 'node:crypto';
import type { StoredSession } from '../../store.js';
import type { Connection } from './connection.js';
import type { Script } from './scripts.js';

/**
 * How long Redis keeps a record past its `expiresAt` before expiring it
 * natively. Every read and write checks `expiresAt` against this process's
 * clock, so a record is gone for callers exactly at `expiresAt`; the margin
 * only keeps a Redis clock that runs ahead from dropping live sessions early,
 * and lets `clearExpired` see what has just expired.
 */
export const EXPIRY_MARGIN_MS = 60_000;
const FIELDS = ['data', 'version', 'expiresAt', 'createdAt', 'owner'] as const;

/** Key names, script calls and record reads, shared by the store's operations. */
export interface Context {
  prefix: string;
  connection: Connection;
  guard<T>(op: string, fn: () => Promise<T>): Promise<T>;
  recordKey(key: string): string;
  lockKey(key: string): string;
  ownerKeys(owner: string): string[];
  /** Glob-escaped; matches records only, not the `:lock` keys beside them. */
  recordPattern: string;
  call(s: Script, keys: string[], args: string[]): Promise<unknown>;
  run(s: Script, keys: string[], args: string[]): Promise<number>;
  /** A script's array reply: numbers, strings, and null for Lua's false. */
  callList(
    s: Script,
    keys: string[],
    args: string[],
  ): Promise<(number | string | null | undefined)[]>;
  /** The record, expired or not; undefined when absent or incomplete. */
  read(key: string): Promise<StoredSession | undefined>;
}

export function context(prefix: string, connection: Connection, guard: Context['guard']): Context {
  const call = async (s: Script, keys: string[], args: string[]): Promise<unknown> => {
    try {
      return await connection.evalsha(s.sha, keys, args);
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('NOSCRIPT'))) throw err;
      // EVAL runs the script and caches it on that node for the next EVALSHA.
      return await connection.eval(s.lua, keys, args);
    }
  };
  const recordKey = (key: string) => `${prefix}{${key}}`;
  return {
    prefix,
    connection,
    guard,
    recordKey,
    lockKey: (key) => `${prefix}{${key}}:lock`,
    ownerKeys: (owner) => {
      const tag = `${prefix}owner:{${createHash('sha256').update(owner).digest('base64url')}}`;
      return [tag, `${tag}:versions`];
    },
    recordPattern: `${prefix.replace(/[*?[\]\\]/g, '\\$&')}{*}`,
    call,
    run: async (s, keys, args) => Number(await call(s, keys, args)),
    callList: async (s, keys, args) =>
      (await call(s, keys, args)) as (number | string | null | undefined)[],
    async read(key) {
      const [data, version, expiresAt, createdAt, owner] = await connection.hmget(
        recordKey(key),
        FIELDS,
      );
      if (data == null || version == null || expiresAt == null || createdAt == null) {
        return undefined;
      }
      const record: StoredSession = {
        data,
        version: Number(version),
        expiresAt: Number(expiresAt),
        createdAt: Number(createdAt),
      };
      if (owner != null) record.owner = owner;
      return record;
    },
  };
}

export function nativeExpiry(expiresAt: number): string {
  return String(Math.ceil(expiresAt) + EXPIRY_MARGIN_MS);
}
