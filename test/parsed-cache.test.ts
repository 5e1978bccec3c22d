import { describe, expect, it } from 'vitest';
import { createDataCodec } from '../src/codec.js';
import { ParsedCache } from '../src/persistence/parsed.js';
import { jsonSerializer } from '../src/serializers.js';
import type { Serializer } from '../src/serializers.js';

const logger = { warn: () => {}, error: () => {} };
const cacheWith = (serializer: Serializer = jsonSerializer) =>
  new ParsedCache(createDataCodec(serializer, 10_000_000, logger, 'memory'));
const entry = (size: number): [string, Map<string, unknown>] => {
  const data = new Map<string, unknown>([['blob', 'x'.repeat(size)]]);
  return [JSON.stringify(Object.fromEntries(data)), data];
};

describe('the parsed data a process keeps for its sessions', () => {
  it('gives every load its own copy, which the next load never sees changed', () => {
    const cache = cacheWith();
    const data = new Map<string, unknown>([['cart', ['a']]]);
    cache.remember('k', '{"cart":["a"]}', data);
    (data.get('cart') as string[]).push('changed after remember');
    const first = cache.read('k', '{"cart":["a"]}')!;
    (first.get('cart') as string[]).push('changed by a handler');
    expect(cache.read('k', '{"cart":["a"]}')!.get('cart')).toEqual(['a']);
  });

  it('answers nothing for a text it did not see for that session', () => {
    const cache = cacheWith();
    cache.remember('k', '{"n":1}', new Map([['n', 1]]));
    expect(cache.read('k', '{"n":2}')).toBeUndefined();
    expect(cache.read('other', '{"n":1}')).toBeUndefined();
    expect(cache.read('k', '{"n":1}')?.get('n')).toBe(1);
  });

  it('forgets the least recently used session past 1,000', () => {
    const cache = cacheWith();
    for (let i = 0; i < 1_000; i++) cache.remember(`k${i}`, `{"i":${i}}`, new Map([['i', i]]));
    expect(cache.read('k0', '{"i":0}')).toBeDefined(); // k0 is now the most recently used
    cache.remember('k1000', '{"i":1000}', new Map([['i', 1000]]));
    expect(cache.read('k1', '{"i":1}')).toBeUndefined();
    expect(cache.read('k0', '{"i":0}')).toBeDefined();
    expect(cache.read('k1000', '{"i":1000}')).toBeDefined();
  });

  it('holds no more than 8 Mi characters of stored text, and no payload over 64 Ki characters', () => {
    const cache = cacheWith();
    const [big, bigData] = entry(70_000);
    cache.remember('big', big, bigData);
    expect(cache.read('big', big)).toBeUndefined();
    const [text, data] = entry(60_000);
    for (let i = 0; i < 200; i++) cache.remember(`k${i}`, text, data);
    const kept = Array.from({ length: 200 }, (_, i) => cache.read(`k${i}`, text)).filter(Boolean);
    expect(kept.length).toBeLessThanOrEqual(Math.floor((8 * 1024 * 1024) / text.length));
    expect(kept.length).toBeGreaterThan(100);
    expect(cache.read('k199', text)).toBeDefined();
  });

  it('keeps nothing for a serializer without clone() (a copy would cost a parse)', () => {
    const { clone: _, ...withoutClone } = jsonSerializer;
    const cache = cacheWith(withoutClone as Serializer);
    cache.remember('k', '{"n":1}', new Map([['n', 1]]));
    expect(cache.read('k', '{"n":1}')).toBeUndefined();
  });
});
