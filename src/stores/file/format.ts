import type { StoredSession } from '../../store.js';

/**
 * What the file store writes, and how it reads it back: file names, the
 * session record (a one-line header, then JSON), owner indexes and lock files.
 * Pure functions only; no file system access here.
 */

export const KEY = /^[A-Za-z0-9_-]{1,128}$/;
export const PREFIX = /^[A-Za-z0-9_.-]{1,64}$/;
const KEY_PART = '[A-Za-z0-9_-]{1,128}';
export const TMP_NAME = new RegExp(`^${KEY_PART}(\\.applock|\\.owner)?\\.[0-9a-f]+\\.tmp$`);
export const APPLOCK_NAME = new RegExp(`^(${KEY_PART})\\.applock$`);
export const LOCK_NAME = new RegExp(`^(${KEY_PART}(?:\\.owner)?)\\.lock$`);
/** A lock's break file (see breakFiles in ./locks.ts); captures what LOCK_NAME does. */
export const BREAK_NAME = new RegExp(`^(${KEY_PART}(?:\\.owner)?)\\.lock\\.break$`);
export const OWNER_NAME = new RegExp(`^(${KEY_PART})\\.owner$`);
const MAGIC = 'satchel1';
/** The lines after an owner index's first: keys, each ended by a newline. */
const INDEX_BODY = /^(?:[A-Za-z0-9_-]{1,128}\n)*$/;
/** Starts the first line of an owner index, followed by the owner as JSON. */
const OWNER_MAGIC = 'satchel-owner1';
const HEADER = /^satchel1 (\S+) (\S+) (\S+)$/;
/** Enough for the header line: three numbers of up to ~20 characters. */
export const HEADER_BYTES = 128;

export interface Header {
  expiresAt: number;
  version: number;
  createdAt: number;
}

export interface LockContent {
  token: string;
  expiresAt: number;
}

export function encode(record: StoredSession): string {
  const body: { data: string; owner?: string } = { data: record.data };
  if (record.owner !== undefined) body.owner = record.owner;
  return `${MAGIC} ${record.expiresAt} ${record.version} ${record.createdAt}\n${JSON.stringify(body)}`;
}

/** The record in `text`, or undefined when it cannot be parsed (it then reads as absent). */
export function decode(text: string): StoredSession | undefined {
  const newline = text.indexOf('\n');
  if (newline === -1) return undefined;
  const header = parseHeader(text.slice(0, newline));
  if (header === undefined) return undefined;
  let body: unknown;
  try {
    body = JSON.parse(text.slice(newline + 1));
  } catch {
    return undefined;
  }
  if (typeof body !== 'object' || body === null) return undefined;
  const { data, owner } = body as { data?: unknown; owner?: unknown };
  if (typeof data !== 'string') return undefined;
  if (owner !== undefined && typeof owner !== 'string') return undefined;
  const record: StoredSession = { data, ...header };
  if (owner !== undefined) record.owner = owner;
  return record;
}

/** The header on the first line of `text`; undefined when there is no complete first line. */
export function headerOf(text: string): Header | undefined {
  const newline = text.indexOf('\n');
  return newline === -1 ? undefined : parseHeader(text.slice(0, newline));
}

function parseHeader(line: string): Header | undefined {
  const match = HEADER.exec(line);
  if (match === null) return undefined;
  const [expiresAt, version, createdAt] = [match[1], match[2], match[3]].map(Number);
  if (expiresAt === undefined || version === undefined || createdAt === undefined) return undefined;
  if (Number.isNaN(expiresAt) || Number.isNaN(version) || Number.isNaN(createdAt)) return undefined;
  return { expiresAt, version, createdAt };
}

export function encodeIndex(owner: string, keys: Iterable<string>): string {
  let text = `${OWNER_MAGIC} ${JSON.stringify(owner)}\n`;
  for (const key of keys) text += `${key}\n`;
  return text;
}

/** The owner and keys of an index file, or undefined when any line is not what the store writes. */
export function parseIndex(text: string): { owner: string; keys: Set<string> } | undefined {
  const lines = text.split('\n');
  const head = lines[0] ?? '';
  if (!head.startsWith(`${OWNER_MAGIC} `) || lines.at(-1) !== '') return undefined;
  let owner: unknown;
  try {
    owner = JSON.parse(head.slice(OWNER_MAGIC.length + 1));
  } catch {
    return undefined;
  }
  if (typeof owner !== 'string') return undefined;
  // Keys become paths: only what a key may be is accepted.
  if (!INDEX_BODY.test(text.slice(head.length + 1))) return undefined;
  return { owner, keys: new Set(lines.slice(1, -1)) };
}

export function parseLock(content: string): LockContent | undefined {
  try {
    const parsed: unknown = JSON.parse(content);
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    const { token, expiresAt } = parsed as { token?: unknown; expiresAt?: unknown };
    if (typeof token !== 'string' || typeof expiresAt !== 'number') return undefined;
    return { token, expiresAt };
  } catch {
    return undefined;
  }
}
