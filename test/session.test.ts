import { afterEach, describe, expect, expectTypeOf, it, vi } from 'vitest';
import { createSessions, richSerializer, type Session, type Sessions } from '../src/index.js';
import { memoryStore } from '../src/stores/memory.js';
import { exchange } from './helpers.js';

let sessions: Sessions<any>;
afterEach(async () => {
  await sessions?.close();
});

function make(options: Parameters<typeof createSessions>[0] = {}): Sessions<any> {
  sessions = createSessions({ store: memoryStore(), ...options });
  return sessions;
}

describe('Session dictionary API', () => {
  it('gets a default without storing it, and sets, has, deletes, pops', async () => {
    make();
    const { value } = await exchange(sessions, undefined, (s) => {
      expect(s.get('cart', [])).toEqual([]);
      expect(s.has('cart')).toBe(false);
      s.set('cart', ['a']);
      s.set('name', 'x');
      expect(s.has('cart')).toBe(true);
      expect(s.pop('name')).toBe('x');
      expect(s.pop('name', 'gone')).toBe('gone');
      expect(s.delete('missing')).toBe(false);
      expect(s.setDefault('count', 1)).toBe(1);
      expect(s.setDefault('count', 2)).toBe(1);
    });
    await exchange(sessions, value, (s) => {
      expect(s.get('cart')).toEqual(['a']);
      expect(s.keys().sort()).toEqual(['cart', 'count']);
      expect(s.values()).toHaveLength(2);
      expect(Object.fromEntries(s.entries())).toEqual({ cart: ['a'], count: 1 });
      expect(s.isEmpty()).toBe(false);
      s.clear();
      expect(s.isEmpty()).toBe(true);
    });
  });

  it('saves a nested change to a value read with get (no modified flag needed)', async () => {
    make();
    const first = await exchange(sessions, undefined, (s) => s.set('cart', ['a']));
    await exchange(sessions, first.value, (s) => {
      s.get('cart').push('b');
      expect(s.modified).toBe(true);
    });
    await exchange(sessions, first.value, (s) => expect(s.get('cart')).toEqual(['a', 'b']));
  });

  it('saves a nested change made after save() at the end of the request', async () => {
    make();
    const first = await exchange(sessions, undefined, (s) => s.set('cart', ['a']));
    await exchange(sessions, first.value, async (s) => {
      const cart = s.get('cart');
      cart.push('b');
      await s.save();
      cart.push('c');
    });
    await exchange(sessions, first.value, (s) => expect(s.get('cart')).toEqual(['a', 'b', 'c']));
  });

  it('reports modified and accessed the way Django does', async () => {
    make();
    const first = await exchange(sessions, undefined, (s) => s.set('a', 1));
    await exchange(sessions, first.value, (s) => {
      expect(s.accessed).toBe(false);
      expect(s.modified).toBe(false);
      s.get('a');
      expect(s.accessed).toBe(true);
      expect(s.modified).toBe(false);
      s.set('a', 2);
      expect(s.modified).toBe(true);
    });
  });

  it('returns the new value from update and applies updates in order', async () => {
    make();
    await exchange(sessions, undefined, (s) => {
      expect(s.update('n', (n: number | undefined) => (n ?? 0) + 1)).toBe(1);
      expect(s.update('n', (n: number) => n * 10)).toBe(10);
    });
  });

  it('types get, set and update from a declared session shape', () => {
    interface Shop {
      cart: string[];
      visits: number;
    }
    const typed = createSessions<Shop>({ store: memoryStore() });
    sessions = typed;
    type S = Session<Shop>;
    const check = (s: S) => {
      expectTypeOf(s.get('cart')).toEqualTypeOf<string[] | undefined>();
      expectTypeOf(s.get('cart', [])).toEqualTypeOf<string[]>();
      expectTypeOf(s.update('visits', (v) => (v ?? 0) + 1)).toEqualTypeOf<number>();
      // @ts-expect-error unknown key
      s.get('nope');
      // @ts-expect-error wrong value type
      s.set('visits', 'many');
    };
    expect(check).toBeTypeOf('function');
  });
});

describe('flash values', () => {
  it('shows a flash value on the next request that reads it, once', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => {
      s.set('x', 1);
      s.flash('message', 'Added awesome-item');
      expect(s.getFlash('message')).toBeUndefined();
    });
    const b = await exchange(sessions, a.value, (s) => {
      expect(s.getFlash('message')).toBe('Added awesome-item');
      expect(s.flashes()).toEqual({ message: 'Added awesome-item' });
    });
    await exchange(sessions, b.value, (s) => expect(s.getFlash('message')).toBeUndefined());
  });

  it('keeps a read flash value for one more read with keepFlash, and all with reflash', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => {
      s.flash('one', 1);
      s.flash('two', 2);
    });
    await exchange(sessions, a.value, (s) => {
      expect(s.flashes()).toEqual({ one: 1, two: 2 });
      s.keepFlash('one');
    });
    await exchange(sessions, a.value, (s) => expect(s.flashes()).toEqual({ one: 1 }));
    const b = await exchange(sessions, a.value, (s) => {
      s.flash('three', 3);
    });
    await exchange(sessions, b.value, (s) => {
      expect(s.getFlash('three')).toBe(3);
      s.reflash();
    });
    await exchange(sessions, b.value, (s) => expect(s.getFlash('three')).toBe(3));
    await exchange(sessions, b.value, (s) => expect(s.getFlash('three')).toBeUndefined());
  });

  it('keeps flash values readable for the rest of the request after save()', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => s.flash('message', 'saved'));
    await exchange(sessions, a.value, async (s) => {
      expect(s.getFlash('message')).toBe('saved');
      await s.save();
      expect(s.getFlash('message')).toBe('saved');
      expect(s.flashes()).toEqual({ message: 'saved' });
    });
    await exchange(sessions, a.value, (s) => expect(s.getFlash('message')).toBeUndefined());
  });

  it('does not swallow a flash value in a request that never reads it (a favicon racing the page)', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => s.flash('message', 'Added awesome-item'));
    await exchange(sessions, a.value, (s) => s.get('cart'));
    await exchange(sessions, a.value, () => {});
    await exchange(sessions, a.value, (s) =>
      expect(s.getFlash('message')).toBe('Added awesome-item'),
    );
    await exchange(sessions, a.value, (s) => expect(s.getFlash('message')).toBeUndefined());
  });

  it('shows flashNow values in this request and never stores them', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => {
      s.set('x', 1);
      s.flashNow('notice', 'now');
      expect(s.getFlash('notice')).toBe('now');
    });
    await exchange(sessions, a.value, (s) => expect(s.getFlash('notice')).toBeUndefined());
  });

  it('hides flash and expiry bookkeeping from keys()', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => {
      s.set('x', 1);
      s.flash('m', 1);
      s.setExpiry(60);
    });
    await exchange(sessions, a.value, (s) => expect(s.keys()).toEqual(['x']));
  });
});

describe('test cookie', () => {
  it('reports that the test cookie worked on the next request', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => {
      s.setTestCookie();
      expect(s.testCookieWorked()).toBe(true);
    });
    await exchange(sessions, a.value, (s) => {
      expect(s.testCookieWorked()).toBe(true);
      s.deleteTestCookie();
    });
    const fresh = await exchange(sessions, undefined, (s) =>
      expect(s.testCookieWorked()).toBe(false),
    );
    expect(fresh.setCookie).toEqual([]);
  });
});

describe('serializers', () => {
  it('refuses a function, which JSON would silently drop', async () => {
    make();
    await expect(exchange(sessions, undefined, (s) => s.set('fn', () => 1))).rejects.toThrow(
      /cannot serialize a function/,
    );
  });

  it('refuses a Map, Set or BigInt with the json serializer instead of saving {} silently', async () => {
    make();
    for (const value of [new Map([[1, 2]]), new Set([1]), 1n]) {
      await expect(exchange(sessions, undefined, (s) => s.set('v', value))).rejects.toThrow(
        /with the json serializer; use serializer: 'rich'/,
      );
    }
  });

  it("round-trips Date, Map, Set, BigInt and registered classes with serializer: 'rich'", async () => {
    class Money {
      constructor(
        public amount: number,
        public currency: string,
      ) {}
      format() {
        return `${this.amount} ${this.currency}`;
      }
    }
    make({ serializer: richSerializer({ Money: { type: Money } }) });
    const when = new Date('2026-11-25T10:00:00Z');
    const a = await exchange(sessions, undefined, (s) => {
      s.set('when', when);
      s.set('tags', new Set(['a', 'b']));
      s.set('map', new Map([[1, { x: 1n }]]));
      s.set('big', 2n ** 70n);
      s.set('price', new Money(5, 'EUR'));
      s.set('tricky', { $t: 'Date', v: 0 });
    });
    await exchange(sessions, a.value, (s) => {
      expect(s.get('when')).toEqual(when);
      expect(s.get('tags')).toEqual(new Set(['a', 'b']));
      expect(s.get('map')).toEqual(new Map([[1, { x: 1n }]]));
      expect(s.get('big')).toBe(2n ** 70n);
      expect((s.get('price') as Money).format()).toBe('5 EUR');
      expect(s.get('tricky')).toEqual({ $t: 'Date', v: 0 });
    });
  });

  it('never runs code while loading rich data: an unknown class tag reads as corrupt', () => {
    const rich = richSerializer();
    const evil = JSON.stringify({ x: { $t: 'Class', n: 'Function', v: 'return process.exit(1)' } });
    expect(() => rich.parse(evil)).toThrow(/unknown class "Function"/);
    expect(rich.parse('{"__proto__":{"polluted":1}}')).not.toHaveProperty('polluted');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('options are validated at creation', () => {
  it.each([
    [
      { secrets: 'short' },
      '[satchel] secrets[0] must be at least 32 characters; got 5 (generate one with: npx satchel keygen)',
    ],
    [{ secrets: [] }, '[satchel] secrets must hold at least one key'],
    [
      { cookie: { name: '__Host-sid' } },
      '[satchel] cookie.name with the __Host- prefix requires cookie.secure: true',
    ],
    [
      { cookie: { name: '__Host-sid', secure: true, path: '/app' } },
      "[satchel] cookie.name with the __Host- prefix requires cookie.path '/'; got '/app'",
    ],
    [
      { cookie: { name: '__Host-sid', secure: true, domain: 'example.com' } },
      '[satchel] cookie.name with the __Host- prefix must not set cookie.domain',
    ],
    [
      { cookie: { name: '__Secure-sid' } },
      '[satchel] cookie.name with the __Secure- prefix requires cookie.secure: true',
    ],
    [
      { cookie: { name: 'bad name' } },
      '[satchel] cookie.name "bad name" is not a valid cookie name',
    ],
    [{ idleTimeout: -1 }, '[satchel] idleTimeout must be a positive number; got -1'],
    [
      { cookie: { sameSite: 'none', secure: false } },
      "[satchel] cookie.sameSite 'none' requires cookie.secure (browsers drop the cookie otherwise)",
    ],
  ] as const)('rejects %j', (options, message) => {
    expect(() => createSessions({ store: memoryStore(), ...(options as object) })).toThrow(message);
  });

  it('rejects cookie attribute injection through options (cookie CVE-2024-47764)', () => {
    expect(() =>
      createSessions({ store: memoryStore(), cookie: { path: '/; Domain=evil.example' } }),
    ).toThrow(/path is invalid/);
  });

  it('accepts a valid __Host- configuration', () => {
    make({ cookie: { name: '__Host-sid', secure: true } });
    expect(sessions.cookie.name).toBe('__Host-sid');
  });
});

vi.setConfig({ testTimeout: 10_000 });
