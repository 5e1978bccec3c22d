/**
 * The crash suite, run once per embedded store (file.test.ts, sqlite.test.ts):
 * a child process writes sessions in a loop (test/crash/writer.ts) and is
 * SIGKILLed at random moments, half of them right after it announced a
 * write, so many kills land mid-write. After each kill every session must
 * load exactly as the journal allows: the acknowledged version, or for the
 * one write in flight, the previous or the new version — never a torn,
 * unreadable or lost one.
 */
import { readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { createSessions, storeKey } from '../../src/index.js';
import { type Child, startChild } from '../stress/lib/child.js';
import { size, STRESS_FULL } from '../stress/lib/env.js';
import { openSpec, type StoreSpec } from '../stress/lib/spec.js';
import { tempDir } from '../stress/lib/stores.js';
import { versionOf } from './payload.js';

const KILLS = size('KILLS', 10, 50);
const MAX_SESSIONS = 8;
/** The file store's short write lock; a lock left by a killed writer is broken after this. */
const FILE_LOCK_TTL = 300;

interface Tally {
  kills: number;
  acknowledged: number;
  inFlight: number;
  inFlightLandedNew: number;
  inFlightLandedOld: number;
  tempFilesLeft: Set<string>;
  staleLocksLeft: Set<string>;
}

/** The journal of one child: acknowledged versions, and the write in flight when it died. */
function readJournal(lines: string[], known: Map<string, number>) {
  let inFlight: { id: string; version: number } | undefined;
  let acknowledged = 0;
  for (const line of lines) {
    const [word, id, n] = line.split(' ');
    if (word === 'error') throw new Error(`writer failed: ${line}`);
    if (word === 'about') inFlight = { id: id!, version: Number(n) };
    if (word === 'wrote') {
      expect(inFlight).toEqual({ id, version: Number(n) });
      known.set(id!, Number(n));
      inFlight = undefined;
      acknowledged++;
    }
  }
  return { inFlight, acknowledged };
}

function sessionFiles(dir: string): string[] {
  return readdirSync(dir).filter((name) => /^satchel-[A-Za-z0-9_-]{43}$/.test(name));
}

function countRecords(spec: StoreSpec): number {
  if (spec.kind === 'file') return sessionFiles(spec.dir).length;
  if (spec.kind !== 'sqlite') throw new Error(`no crash suite for ${spec.kind}`);
  const db = new Database(spec.path, { readonly: true });
  try {
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    return (db.prepare('SELECT count(*) AS n FROM satchel_sessions').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** Checks every session against `known` (and the write in flight); returns what the in-flight one holds. */
async function verify(
  spec: StoreSpec,
  known: Map<string, number>,
  inFlight: { id: string; version: number } | undefined,
): Promise<number | undefined> {
  const store = await openSpec(spec);
  const warnings: unknown[] = [];
  const sessions = createSessions({
    store,
    absoluteTimeout: null,
    logger: { warn: (...args) => void warnings.push(args), error: () => {} },
  });
  try {
    let landed: number | undefined;
    const ids = new Set(known.keys());
    if (inFlight) ids.add(inFlight.id);
    for (const id of ids) {
      const record = await store.get(storeKey(id));
      const version = record === undefined ? undefined : versionOf(id, record.data);
      // Whatever is stored is whole: data and version column agree.
      if (record !== undefined) expect(version, `session ${id} is torn`).toBe(record.version);
      if (inFlight?.id === id) {
        const previous = known.get(id);
        expect([previous, inFlight.version]).toContain(version);
        landed = version;
      } else {
        expect(version, `session ${id}`).toBe(known.get(id));
      }
      // And the manager loads it as a live session with that data.
      if (version !== undefined) {
        const session = await sessions.load({
          header: (name) => (name === 'cookie' ? `sessionid=${id}` : undefined),
          encrypted: false,
        });
        expect(session.isNew).toBe(false);
        expect(session.get('v')).toBe(version);
      }
    }
    expect(warnings).toEqual([]);
    // Nothing else is in the store: no half-created session under another key.
    const expected = [...ids].filter((id) => id !== inFlight?.id || landed !== undefined).length;
    expect(countRecords(spec)).toBe(expected);
    return landed;
  } finally {
    await sessions.close();
  }
}

export function describeCrashes(kind: 'file' | 'sqlite'): void {
  describe(`${kind} store killed with SIGKILL while writing`, () => {
    it(
      `loads every session as its previous or its new state after ${KILLS} kills`,
      async () => {
        const root = tempDir(`crash-${kind}`);
        const spec: StoreSpec =
          kind === 'file'
            ? { kind, dir: join(root, 'sessions'), lockTtlMs: FILE_LOCK_TTL }
            : { kind, path: join(root, 'sessions.db') };
        const state = join(root, 'state.json');
        const known = new Map<string, number>();
        const tally: Tally = {
          kills: 0,
          acknowledged: 0,
          inFlight: 0,
          inFlightLandedNew: 0,
          inFlightLandedOld: 0,
          tempFilesLeft: new Set(),
          staleLocksLeft: new Set(),
        };
        const spawn = () =>
          startChild('test/crash/writer.ts', { spec, state, maxSessions: MAX_SESSIONS });
        let next: Child | undefined;
        try {
          // The store makes its folder or database before the first child runs.
          await (await openSpec(spec)).close();
          next = spawn();
          for (let round = 0; round < KILLS; round++) {
            const sessions = [...known].map(([id, version]) => ({ id, version }));
            writeFileSync(state, JSON.stringify({ sessions }));
            const child = next!;
            try {
              await child.waitFor(/^ready$/);
              child.send('go');
              await child.waitFor(/^going$/);
              // The next writer starts up (and opens the store) while this one
              // writes, so it is ready when this one dies; it reads the state
              // only when told to go.
              next = round + 1 < KILLS ? spawn() : undefined;
              if (round % 2 === 0) {
                // A random moment.
                await sleep(5 + Math.random() * 250);
              } else {
                // Right after the child announced its k-th write: likely mid-write.
                const k = 1 + Math.floor(Math.random() * 20);
                await new Promise<void>((resolve) => {
                  let seen = 0;
                  child.onLine((line) => {
                    if (line.startsWith('about ') && ++seen === k) {
                      setTimeout(() => resolve(), Math.random() * 3);
                    }
                  });
                  void child.exited.then(() => resolve());
                });
              }
            } finally {
              child.kill('SIGKILL');
            }
            const exit = await child.exited;
            expect(exit, child.stderr()).toEqual({ code: null, signal: 'SIGKILL' });
            tally.kills++;

            const { inFlight, acknowledged } = readJournal(child.lines, known);
            tally.acknowledged += acknowledged;
            if (spec.kind === 'file') {
              for (const name of readdirSync(spec.dir)) {
                if (name.endsWith('.tmp')) tally.tempFilesLeft.add(name);
                if (name.endsWith('.lock')) tally.staleLocksLeft.add(name);
              }
            }
            const landed = await verify(spec, known, inFlight);
            if (inFlight) {
              tally.inFlight++;
              if (landed === inFlight.version) tally.inFlightLandedNew++;
              else tally.inFlightLandedOld++;
              if (landed === undefined) known.delete(inFlight.id);
              else known.set(inFlight.id, landed);
            }
          }
          expect(known.size).toBeGreaterThan(0);

          if (spec.kind === 'file') {
            // Leftovers of killed writes: temp files and write locks. Locks
            // expire after FILE_LOCK_TTL; a temp file counts as abandoned
            // after a minute, so age them instead of waiting.
            await sleep(FILE_LOCK_TTL + 100);
            const old = new Date(Date.now() - 5 * 60_000);
            for (const name of readdirSync(spec.dir)) {
              if (name.endsWith('.tmp')) utimesSync(join(spec.dir, name), old, old);
            }
            const sessions = createSessions({ store: await openSpec(spec) });
            try {
              expect(await sessions.clearExpired()).toBe(0);
            } finally {
              await sessions.close();
            }
            expect(readdirSync(spec.dir).sort()).toEqual(sessionFiles(spec.dir).sort());
            await verify(spec, known, undefined);
          }
          console.info(
            `[crash] ${kind}: ${tally.kills} SIGKILLs, ${tally.acknowledged} acknowledged writes, ` +
              `${tally.inFlight} kills mid-write (${tally.inFlightLandedNew} landed as the new state, ` +
              `${tally.inFlightLandedOld} as the previous), ${known.size} sessions all intact` +
              (kind === 'file'
                ? `; ${tally.tempFilesLeft.size} temp files and ${tally.staleLocksLeft.size} write locks left by kills, all removed by clearExpired`
                : ''),
          );
        } finally {
          next?.kill('SIGKILL');
          await next?.exited;
          rmSync(root, { recursive: true, force: true });
        }
      },
      STRESS_FULL ? 900_000 : 120_000,
    );
  });
}
