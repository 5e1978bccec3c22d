/**
 * How long what a stale-lock breaker or a slow holder leaves behind can keep
 * a key from the next caller: never much past lockTtlMs.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { fileLocks } from '../../src/stores/file/locks.js';
import { lockTrust, writeAged, writeStaleLock } from '../support/file-locks.js';
import { tempFolders } from '../support/folders.js';

const { folder } = tempFolders('store-test-file-lock-break-');

describe('file store locks, after a crashed breaker or a slow holder', () => {
  it('lets a break file its crashed breaker left block a key for about 1.5 × lockTtlMs after its last change, about lockTtlMs / 2 once it is older', async () => {
    // Large enough that scheduling delays under load (a few hundred ms) stay
    // well inside the bounds below, whose margins are lockTtlMs / 2 each.
    const ttl = 1_500;
    const dir = folder();
    const locks = fileLocks((k: string) => join(dir, `satchel-${k}`), ttl, lockTrust);
    const lockPath = (key: string) => join(dir, `satchel-${key}.lock`);
    // Crashed long ago: dead at once, kept after the takeover's wait of
    // lockTtlMs / 2 (the Fischer wait, see breakFiles).
    writeStaleLock(lockPath('old'));
    writeAged(`${lockPath('old')}.break`, '', 10 * ttl);
    let started = Date.now();
    expect(await locks.withKey('old', async () => 'got it')).toBe('got it');
    let waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(ttl / 2 - 50);
    expect(waited).toBeLessThan(ttl);
    // Crashed just now: it may be a live breaker's, so it is left until it
    // is lockTtlMs old, then taken over with the same wait: 1.5 × lockTtlMs,
    // plus the caller's polling backoff, and well before the acquire gives
    // up at 2 × lockTtlMs.
    writeStaleLock(lockPath('new'));
    writeAged(`${lockPath('new')}.break`, '', 0);
    started = Date.now();
    expect(await locks.withKey('new', async () => 'got it')).toBe('got it');
    waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(1.5 * ttl - 50);
    expect(waited).toBeLessThan(2 * ttl);
    await locks.close();
    expect(readdirSync(dir)).toEqual([]);
  });

  it.each([
    ['before its expiry, in the last half of its life', 0.7],
    ['after its expiry', 1.2],
  ])(
    'leaves nothing that blocks the next caller past the expiry of a holder released %s',
    async (_, share) => {
      const ttl = 400;
      const dir = folder();
      const locks = () => fileLocks((k: string) => join(dir, `satchel-${k}`), ttl, lockTrust);
      const [slow, next] = [locks(), locks()];
      const lockPath = join(dir, 'satchel-K.lock');
      let expiresAt = 0;
      await slow.withKey('K', async () => {
        expiresAt = (JSON.parse(readFileSync(lockPath, 'utf8')) as { expiresAt: number }).expiresAt;
        await sleep(expiresAt - ttl + share * ttl - Date.now());
      });
      const released = Date.now();
      const got = await next.withKey('K', async () => Date.now());
      expect(got).toBeLessThan(Math.max(expiresAt, released) + 100);
      for (const l of [slow, next]) await l.close();
      expect(readdirSync(dir)).toEqual([]);
    },
  );
});
