import { utimesSync, writeFileSync } from 'node:fs';
import type { Trust } from '../../src/stores/file/fs.js';

/** What the file store's lock tests trust: this user's files, up to 1 MiB, nothing refused aloud. */
export const lockTrust: Trust = { uid: process.getuid?.(), maxBytes: 1 << 20, refuse() {} };

/** Writes `text` at `path` (mode 0600), last changed `ageMs` ago. */
export function writeAged(path: string, text: string, ageMs: number): void {
  writeFileSync(path, text, { mode: 0o600 });
  const then = new Date(Date.now() - ageMs);
  utimesSync(path, then, then);
}

/** Writes, at `path`, the expired lock a crashed holder left behind. */
export function writeStaleLock(path: string): void {
  writeAged(path, JSON.stringify({ token: 'dead', expiresAt: Date.now() - 1 }), 0);
}
