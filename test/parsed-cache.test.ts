import { describe, expect, it } from 'vitest';
import { ParsedCache } from '../src/persistence/parsed.js';
import { jsonSerializer } from '../src/serializers.js';
import type { Serializer } from '../src/serializers.js';

const cacheWith = (serializer: Serializer = jsonSerializer) => new ParsedCache(serializer);
/** What the store does after a successful write: a snapshot taken before it, kept after it. */
const remember = (cache: ParsedCache, key: string, text: string, data: Map<string, unknown>) =>
  cache.keep(key, cache.snapshot(text, data));
const entry = (size: number): [string, Map<string, unknown>] => {
  const data = new Map<string, unknown>([['blob', 'x'.repeat(size)]]);
  return [JSON.stringify(Object.fromEntries(data)), data];
};

describe('the parsed data a process keeps for its sessions', () => {
  it('gives every load its own copy, which the next load never sees changed', () => {
    const cache = cacheWith();
    const data = new Map<string, unknown>([['cart', ['a']]]);
    remember(cache, 'k', '{"cart":["a"]}', data);
    (data.get('cart') as string[]).push('changed while the write was awaited');
    const first = cache.read('k', '{"cart":["a"]}')!;
    (first.get('cart') as string[]).push('changed by a handler');
    expect(cache.read('k', '{"cart":["a"]}')!.get('cart')).toEqual(['a']);
  });

  it('answers nothing for a text it did not see for that session', () => {
    const cache = cacheWith();
    remember(cache, 'k', '{"n":1}', new Map([['n', 1]]));
    expect(cache.read('k', '{"n":2}')).toBeUndefined();
    expect(cache.read('other', '{"n":1}')).toBeUndefined();
    expect(cache.read('k', '{"n":1}')?.get('n')).toBe(1);
  });

  it('forgets the least recently used session past 1,000', () => {
    const cache = cacheWith();
    for (let i = 0; i < 1_000; i++) remember(cache, `k${i}`, `{"i":${i}}`, new Map([['i', i]]));
    expect(cache.read('k0', '{"i":0}')).toBeDefined(); // k0 is now the most recently used
    remember(cache, 'k1000', '{"i":1000}', new Map([['i', 1000]]));
    expect(cache.read('k1', '{"i":1}')).toBeUndefined();
    expect(cache.read('k0', '{"i":0}')).toBeDefined();
    expect(cache.read('k1000', '{"i":1000}')).toBeDefined();
  });

  it('holds no more than 8 Mi characters of stored text, and no payload over 64 Ki characters', () => {
    const cache = cacheWith();
    const [big, bigData] = entry(70_000);
    remember(cache, 'big', big, bigData);
    expect(cache.read('big', big)).toBeUndefined();
    const [text, data] = entry(60_000);
    for (let i = 0; i < 200; i++) remember(cache, `k${i}`, text, data);
    const kept = Array.from({ length: 200 }, (_, i) => cache.read(`k${i}`, text)).filter(Boolean);
    expect(kept.length).toBeLessThanOrEqual(Math.floor((8 * 1024 * 1024) / text.length));
    expect(kept.length).toBeGreaterThan(100);
    expect(cache.read('k199', text)).toBeDefined();
  });

  it('copies nothing for a serializer other than the built-in JSON one (its copy may not be what parsing gives), but keeps its record', () => {
    const cache = cacheWith({ ...jsonSerializer, name: 'custom' });
    const record = { data: '{"n":1}', version: 3, createdAt: 1, expiresAt: 2 };
    cache.keep('k', cache.snapshot(record.data, new Map([['n', 1]])), record);
    expect(cache.read('k', '{"n":1}')).toBeUndefined();
    expect(cache.record('k')).toBe(record);
  });

  it('keeps its newer record when a read of an older one finishes after it', () => {
    const cache = cacheWith();
    const written = { data: '{"n":2}', version: 2, createdAt: 1, expiresAt: 2 };
    const readEarlier = { ...written, data: '{"n":1}', version: 1 };
    cache.keep('k', cache.snapshot(written.data, new Map([['n', 2]])), written);
    cache.keep('k', cache.snapshot(readEarlier.data, new Map([['n', 1]])), readEarlier);
    expect(cache.record('k')).toBe(written);
    expect(cache.read('k', written.data)?.get('n')).toBe(2);
  });

  it('tells the record it last kept for a session until that session is forgotten', () => {
    const cache = cacheWith();
    expect(cache.record('k')).toBeUndefined();
    const first = { data: '{"n":1}', version: 1, createdAt: 1, expiresAt: 2 };
    const second = { ...first, data: '{"n":2}', version: 2 };
    cache.keep('k', cache.snapshot(first.data, new Map([['n', 1]])), first);
    cache.keep('k', cache.snapshot(second.data, new Map([['n', 2]])), second);
    expect(cache.record('k')).toBe(second);
    cache.forget('k');
    expect(cache.record('k')).toBeUndefined();
  });
});
