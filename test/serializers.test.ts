import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  CorruptDataError,
  createSessions,
  generateId,
  jsonSerializer,
  richSerializer,
  SerializeError,
  type Serializer,
  type Sessions,
  storeKey,
} from '../src/index.js';
import { MAX_BIGINT_DIGITS, MAX_DEPTH } from '../src/serializers.js';
import { memoryStore } from '../src/stores/memory.js';
import { exchange, fakeRequest } from './helpers.js';

class Money {
  constructor(
    public cents: number,
    public currency = 'EUR',
  ) {}
  format(): string {
    return `${this.cents / 100} ${this.currency}`;
  }
}

const serializers: [string, Serializer][] = [
  ['json', jsonSerializer],
  ['rich', richSerializer({ Money: { type: Money } })],
];

/** An array nested `levels` deep: nest(1) is [], nest(2) is [[]]. */
function nest(levels: number): unknown {
  let value: unknown = [];
  for (let i = 1; i < levels; i++) value = [value];
  return value;
}

const nestedText = (levels: number) => `{"deep":${'['.repeat(levels)}${']'.repeat(levels)}}`;

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('rich serializer: revived classes', () => {
  const rich = richSerializer({ Money: { type: Money } });

  it("stored data cannot replace a revived instance's prototype", () => {
    // JSON.parse makes "__proto__" an own key; Object.assign would then call the prototype setter.
    const planted =
      '{"price":{"$t":"Class","n":"Money","v":{"cents":5,"__proto__":{"isAdmin":true,"currency":"XXX"}}}}';
    const err = thrown(() => rich.parse(planted));
    expect(err).toBeInstanceOf(CorruptDataError);
    expect((err as Error).message).toMatch(/class data with a "__proto__" key/);

    // Nested inside an Object tag or under a Map: still refused, never assigned.
    const wrapped = `{"m":{"$t":"Map","v":[["k",{"$t":"Class","n":"Money","v":{"__proto__":{"isAdmin":true},"cents":1}}]]}}`;
    expect(() => rich.parse(wrapped)).toThrow(CorruptDataError);

    // A genuine instance still comes back on the class's own prototype, with no constructor call.
    const loaded = rich.parse(rich.stringify({ price: new Money(250) })).price as Money;
    expect(Object.getPrototypeOf(loaded)).toBe(Money.prototype);
    expect(loaded.format()).toBe('2.5 EUR');
    expect((loaded as unknown as Record<string, unknown>).isAdmin).toBeUndefined();
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
  });

  it("stored data cannot shadow a revived instance's constructor", () => {
    const planted =
      '{"p":{"$t":"Class","n":"Money","v":{"cents":1,"constructor":{"name":"Admin"}}}}';
    expect(() => rich.parse(planted)).toThrow(/class data with a "constructor" key/);
  });

  it('a custom reviver that copies data wholesale never sees a __proto__ key from the store', () => {
    const revive = vi.fn((data: unknown) => Object.assign(new Money(0), data));
    const custom = richSerializer({ Money: { type: Money, revive } });
    const planted = '{"p":{"$t":"Class","n":"Money","v":{"__proto__":{"isAdmin":true}}}}';
    expect(() => custom.parse(planted)).toThrow(CorruptDataError);
    expect(revive).not.toHaveBeenCalled();
    expect((custom.parse(custom.stringify({ p: new Money(7) })).p as Money).cents).toBe(7);
    expect(revive).toHaveBeenCalledTimes(1);
  });

  it('refuses to write an instance whose own fields include __proto__, so what is written can be read', () => {
    const odd = new Money(1);
    Object.defineProperty(odd, '__proto__', { value: {}, enumerable: true });
    expect(() => rich.stringify({ price: odd })).toThrow(
      /session key "price": an instance of Money whose data has an own "__proto__" key/,
    );
  });

  it('refuses class data that is not an object instead of spreading a string into fields', () => {
    expect(() => rich.parse('{"p":{"$t":"Class","n":"Money","v":"abc"}}')).toThrow(
      /class data for Money that is not an object/,
    );
    expect(() => rich.parse('{"p":{"$t":"Class","n":"Money","v":[1,2]}}')).toThrow(
      CorruptDataError,
    );
  });
});

describe('a "__proto__" key in plain data stays a plain own property', () => {
  for (const [kind, serializer] of serializers) {
    it(`${kind}: reads it as own data on an ordinary object, and writes it back the same`, () => {
      const text = '{"user":{"__proto__":{"isAdmin":true},"name":"ann"},"__proto__":{"x":1}}';
      const data = serializer.parse(text);
      const user = data.user as Record<string, unknown>;
      expect(Object.getPrototypeOf(user)).toBe(Object.prototype);
      expect(Object.getPrototypeOf(data)).toBe(Object.prototype);
      expect(user.isAdmin).toBeUndefined();
      expect(Object.hasOwn(user, '__proto__')).toBe(true);
      expect(Object.keys(data)).toEqual(['user', '__proto__']);
      // Stored as it was read: the key survives a second round trip unchanged.
      const again = serializer.parse(serializer.stringify(data));
      expect(Object.hasOwn(again.user as object, '__proto__')).toBe(true);
      expect(Object.getPrototypeOf(again.user)).toBe(Object.prototype);
      expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
    });
  }
});

describe("the JSON serializer's copy for updaters", () => {
  it('copies plain data deeply, as a JSON round trip would', () => {
    const value = { cart: ['a', { n: 1 }], nested: { deep: [1, 2] } };
    const copy = jsonSerializer.clone!(value) as typeof value;
    expect(copy).toEqual(value);
    expect(copy).not.toBe(value);
    expect(copy.cart).not.toBe(value.cart);
    expect(copy.nested.deep).not.toBe(value.nested.deep);
  });

  it('refuses an array with its own toJSON (JSON would store what it returns)', () => {
    const cart = Object.assign(['a'], { toJSON: () => ['b'] });
    expect(() => jsonSerializer.stringify({ cart })).toThrow(/toJSON/);
  });

  it('reads back exactly as JSON.parse would: an undefined field is dropped, -0 is 0', () => {
    const value = { kept: 1, gone: undefined, zero: -0, list: [-0] };
    const copy = jsonSerializer.clone!(value);
    expect(copy).toStrictEqual(JSON.parse(JSON.stringify(value)));
    expect(Object.keys(copy as object)).toEqual(['kept', 'zero', 'list']);
    expect(Object.is((copy as typeof value).zero, 0)).toBe(true);
  });

  it('keeps an own "__proto__" key an own data property, never a prototype', () => {
    const value = JSON.parse('{"__proto__":{"polluted":true},"a":1}');
    const copy = jsonSerializer.clone!(value) as Record<string, unknown>;
    expect(Object.getPrototypeOf(copy)).toBe(Object.prototype);
    expect(Object.hasOwn(copy, '__proto__')).toBe(true);
    expect((copy as { polluted?: boolean }).polluted).toBeUndefined();
  });

  it('never lets an updater that mutates its argument change the value another request handed out', async () => {
    const sessions = createSessions({ store: memoryStore() });
    const first = await exchange(sessions, undefined, (s) => s.set('cart', ['a']));
    const s = await sessions.load(fakeRequest(`sessionid=${first.value}`));
    const seen = s.get('cart') as string[];
    s.update('cart', (cart: string[] = []) => {
      cart.push('b');
      return cart;
    });
    expect(seen).toEqual(['a']);
    expect(s.get('cart')).toEqual(['a', 'b']);
    await sessions.commit(s, 200);
    await sessions.close();
  });
});

describe(`nesting deeper than ${MAX_DEPTH} levels`, () => {
  for (const [kind, serializer] of serializers) {
    it(`${kind}: writes and reads back exactly ${MAX_DEPTH} levels`, () => {
      const text = serializer.stringify({ deep: nest(MAX_DEPTH) });
      expect(serializer.parse(text)).toEqual({ deep: nest(MAX_DEPTH) });
    });

    it(`${kind}: refuses to write one level more with a SerializeError, not a RangeError`, () => {
      for (const levels of [MAX_DEPTH + 1, 100_000]) {
        const err = thrown(() => serializer.stringify({ ok: 1, deep: nest(levels) }));
        expect(err).toBeInstanceOf(SerializeError);
        expect((err as Error).message).toBe(
          `[satchel] session key "deep": nested deeper than ${MAX_DEPTH} levels of objects and arrays (MAX_DEPTH); store it flatter`,
        );
      }
    });

    it(`${kind}: reads stored data nested one level more as corrupt, not a stack overflow`, () => {
      for (const levels of [MAX_DEPTH + 1, 1_000_000]) {
        const err = thrown(() => serializer.parse(nestedText(levels)));
        expect(err).toBeInstanceOf(CorruptDataError);
        expect((err as Error).message).toMatch(/nested deeper than 100 levels/);
      }
      expect(serializer.parse(nestedText(MAX_DEPTH))).toEqual({ deep: nest(MAX_DEPTH) });
    });

    it(`${kind}: refuses deep data made of shared sub-objects at once (no walk over every path)`, () => {
      let shared: unknown = 1;
      for (let i = 0; i < MAX_DEPTH + 10; i++) shared = [shared, shared];
      // 2^110 paths: only a walk that stops at the cap and visits shared objects once ends.
      expect(() => serializer.stringify({ dag: shared })).toThrow(/"dag": nested deeper than 100/);
    });

    it(`${kind}: names a cycle as a cycle`, () => {
      const loop: Record<string, unknown> = { a: 1 };
      loop.self = { back: loop };
      expect(() => serializer.stringify({ loop })).toThrow(
        /session key "loop".*cannot serialize a cycle/,
      );
    });
  }

  it('rich: counts Maps, Sets and class instances as levels, the same way both ways', () => {
    const rich = richSerializer({ Money: { type: Money } });
    let value: unknown = new Money(1);
    for (let i = 0; i < MAX_DEPTH - 3; i++) {
      value = i % 2 ? new Set([value]) : new Map([['k', value]]);
    }
    // 97 Maps and Sets, then Money and its fields one level each: 99 levels.
    const text = rich.stringify({ v: value });
    expect(rich.parse(text)).toEqual({ v: value });
    expect(() => rich.stringify({ v: [value] })).not.toThrow();
    expect(() => rich.stringify({ v: [[value]] })).toThrow(/nested deeper than 100 levels/);
  });

  it('rich: reads hostile tag nesting (Date in Date, Class in Class, Object in Object) as corrupt', () => {
    const rich = richSerializer({ Money: { type: Money } });
    const deep = (open: string, close: string, n: number) =>
      `{"x":${open.repeat(n)}1${close.repeat(n)}}`;
    for (const text of [
      deep('{"$t":"Date","v":', '}', 100_000),
      deep('{"$t":"Class","n":"Money","v":', '}', 100_000),
      deep('{"$t":"Object","v":{"a":', '}}', 100_000),
      deep('{"$t":"Set","v":[', ']}', 100_000),
      deep('{"$t":"Map","v":[["k",', ']]}', 100_000),
    ]) {
      expect(() => rich.parse(text)).toThrow(CorruptDataError);
    }
  });
});

describe(`rich serializer: BigInt over ${MAX_BIGINT_DIGITS} digits`, () => {
  const rich = richSerializer();
  afterEach(() => vi.unstubAllGlobals());

  it(`round-trips ${MAX_BIGINT_DIGITS} digits, either sign`, () => {
    const big = BigInt('9'.repeat(MAX_BIGINT_DIGITS));
    expect(rich.parse(rich.stringify({ a: big, b: -big }))).toEqual({ a: big, b: -big });
  });

  it('reads a huge stored BigInt as corrupt without parsing it (no CPU spent on a planted literal)', () => {
    const parseBigInt = vi.fn(BigInt);
    vi.stubGlobal('BigInt', parseBigInt);
    for (const v of ['9'.repeat(MAX_BIGINT_DIGITS + 1), `-${'9'.repeat(2_000_000)}`]) {
      const err = thrown(() => rich.parse(JSON.stringify({ a: { $t: 'BigInt', v } })));
      expect(err).toBeInstanceOf(CorruptDataError);
      expect((err as Error).message).toMatch(/a BigInt that is not 1 to 10000 decimal digits/);
    }
    expect(parseBigInt).not.toHaveBeenCalled();
  });

  it('reads other BigInt spellings (hex, blanks, non-strings) as corrupt', () => {
    for (const v of ['0x10', ' 1', '1 ', '', '1e3', 12, true, null]) {
      expect(() => rich.parse(JSON.stringify({ a: { $t: 'BigInt', v } }))).toThrow(
        CorruptDataError,
      );
    }
  });

  it('refuses to write one it could not read back', () => {
    expect(() => rich.stringify({ big: 10n ** BigInt(MAX_BIGINT_DIGITS) })).toThrow(
      /session key "big": a BigInt over 10000 digits/,
    );
  });
});

describe('rich serializer: tags are read strictly', () => {
  const rich = richSerializer();

  it('keeps NaN, ±Infinity and -0, and refuses any other Number spelling', () => {
    const back = rich.parse(rich.stringify({ a: [Number.NaN, Infinity, -Infinity, -0, 0] }));
    expect(back.a).toEqual([Number.NaN, Infinity, -Infinity, -0, 0]);
    expect(Object.is((back.a as number[])[3], -0)).toBe(true);
    for (const v of ['0x10', '1', 'nan', {}]) {
      expect(() => rich.parse(JSON.stringify({ a: { $t: 'Number', v } }))).toThrow(
        CorruptDataError,
      );
    }
  });

  it('round-trips an invalid Date and refuses a Date that holds anything but a number', () => {
    const back = rich.parse(rich.stringify({ d: new Date(Number.NaN) })).d as Date;
    expect(back).toBeInstanceOf(Date);
    expect(Number.isNaN(back.getTime())).toBe(true);
    for (const v of ['2020-01-01', { $t: 'Date', v: 0 }, null]) {
      expect(() => rich.parse(JSON.stringify({ d: { $t: 'Date', v } }))).toThrow(
        /a Date without a number/,
      );
    }
  });

  it('keeps undefined and empty slots in arrays', () => {
    // biome-ignore lint/suspicious/noSparseArray: the empty slot is the point
    const back = rich.parse(rich.stringify({ a: [1, undefined, , 4] })).a as unknown[];
    expect(back).toEqual([1, undefined, undefined, 4]);
    expect(back).toHaveLength(4);
  });

  it('names the path of a value it cannot write', () => {
    expect(() =>
      rich.stringify({ order: { lines: [{ at: new Date(0) }, { fn: () => 1 }] } }),
    ).toThrow('[satchel] session key "order" (at order.lines[1].fn): cannot serialize a function');
    expect(() => rich.stringify({ m: new Map([['k', new WeakMap()]]) })).toThrow(
      /session key "m" \(at m<Map value>\): cannot serialize an instance of WeakMap; register it/,
    );
  });
});

describe('json serializer: values that do not survive a JSON round trip are refused', () => {
  const json = jsonSerializer;
  const refused = (data: Record<string, unknown>) => {
    const err = thrown(() => json.stringify(data));
    expect(err).toBeInstanceOf(SerializeError);
    return (err as Error).message;
  };

  it('refuses a Date, naming the key and the way out', () => {
    expect(refused({ cart: ['a'], when: new Date() })).toBe(
      `[satchel] session key "when": a Date does not survive JSON (it reads back as a string); store date.toISOString() or use serializer: 'rich'`,
    );
  });

  it('refuses Map, Set, BigInt, NaN and ±Infinity with a pointer to the rich serializer', () => {
    const cases: [unknown, RegExp][] = [
      [
        new Map(),
        /session key "v": cannot serialize a Map with the json serializer; use serializer: 'rich'/,
      ],
      [
        new Set(),
        /session key "v": cannot serialize a Set with the json serializer; use serializer: 'rich'/,
      ],
      [
        1n,
        /session key "v": cannot serialize a BigInt with the json serializer; use serializer: 'rich'/,
      ],
      [Number.NaN, /session key "v": NaN does not survive JSON \(it reads back as null\)/],
      [Infinity, /session key "v": Infinity does not survive JSON/],
      [{ n: -Infinity }, /session key "v" \(at v\.n\): -Infinity does not survive JSON/],
    ];
    for (const [value, message] of cases) expect(refused({ v: value })).toMatch(message);
  });

  it('refuses undefined and empty slots inside arrays, which JSON turns into null', () => {
    expect(refused({ list: ['a', undefined] })).toMatch(
      /session key "list" \(at list\[1\]\): undefined \(or an empty slot\) in an array does not survive JSON/,
    );
    // biome-ignore lint/suspicious/noSparseArray: the empty slot is the point
    expect(refused({ list: [1, , 3] })).toMatch(/\(at list\[1\]\)/);
  });

  it('refuses functions and symbols, which JSON drops', () => {
    expect(refused({ fn: () => 1 })).toMatch(/session key "fn": cannot serialize a function/);
    expect(refused({ o: { s: Symbol('x') } })).toMatch(
      /session key "o" \(at o\.s\): cannot serialize a symbol/,
    );
  });

  it('refuses class instances, boxed values, Buffers and objects with toJSON', () => {
    expect(refused({ price: new Money(5) })).toMatch(
      /session key "price": cannot serialize an instance of Money with the json serializer \(it would read back as a plain object\).*serializer: 'rich'/,
    );
    expect(refused({ b: Buffer.from('x') })).toMatch(
      /instance of Buffer .*read back as what its toJSON\(\) returns/,
    );
    expect(refused({ u: new URL('https://example.com/') })).toMatch(/instance of URL/);
    expect(refused({ s: [new String('x')] })).toMatch(/\(at s\[0\]\).*instance of String/);
    expect(refused({ o: { toJSON: () => 'x' } })).toMatch(
      /session key "o": an object with a toJSON method does not survive JSON/,
    );
    class Tags extends Array<string> {}
    expect(refused({ tags: Tags.from(['a']) })).toMatch(/instance of Tags/);
  });

  it('names the full path of a nested value', () => {
    expect(
      refused({ order: { lines: [{ sku: 'a' }, { sku: 'b', 'added at': new Date() }] } }),
    ).toMatch(/^\[satchel\] session key "order" \(at order\.lines\[1\]\["added at"\]\): a Date/);
  });

  it('accepts what JSON keeps: plain and null-prototype objects, arrays, finite numbers, -0, null', () => {
    const bare = Object.assign(Object.create(null), { a: 1 });
    const data = { s: 'x', n: [1, 2.5, -0, 1e300], b: true, z: null, o: { bare, list: [[], {}] } };
    expect(json.parse(json.stringify(data))).toEqual({ ...data, n: [1, 2.5, 0, 1e300] });
  });

  it('drops an undefined object field, which reads back the same (absent reads as undefined)', () => {
    expect(json.parse(json.stringify({ user: { name: 'a', email: undefined } }))).toEqual({
      user: { name: 'a' },
    });
  });

  it('reads stored numbers JSON could not have written (1e999) as corrupt', () => {
    expect(() => json.parse('{"a":[1,1e999]}')).toThrow(/non-finite number/);
  });
});

describe('through the manager', () => {
  let sessions: Sessions<any> | undefined;
  afterEach(async () => {
    await sessions?.close();
    sessions = undefined;
  });

  it("json: a Date set in a handler fails the commit with the key's name, and nothing is saved", async () => {
    const store = memoryStore();
    sessions = createSessions({ store });
    const create = vi.spyOn(store, 'create');
    await expect(
      exchange(sessions, undefined, (s) => {
        s.set('cart', ['a']);
        s.set('when', new Date());
      }),
    ).rejects.toThrow(/session key "when": a Date does not survive JSON.*serializer: 'rich'/);
    expect(create).not.toHaveBeenCalled();
  });

  it('rich: the same Date is kept as a Date', async () => {
    sessions = createSessions({ store: memoryStore(), serializer: 'rich' });
    const when = new Date('2026-11-29T12:00:00Z');
    const { value } = await exchange(sessions, undefined, (s) => s.set('when', when));
    await exchange(sessions, value, (s) => expect(s.get('when')).toEqual(when));
  });

  for (const kind of ['json', 'rich'] as const) {
    it(`${kind}: stored data nested too deep reads as an empty session with a warning`, async () => {
      const store = memoryStore();
      const warnings: unknown[][] = [];
      sessions = createSessions({
        store,
        serializer: kind,
        logger: { warn: (...a: unknown[]) => void warnings.push(a), error: () => {} },
      });
      const id = generateId();
      const now = Date.now();
      await store.create(storeKey(id), {
        data: nestedText(1_000_000),
        version: 1,
        createdAt: now,
        expiresAt: now + 60_000,
      });
      const session = await sessions.load(fakeRequest(`sessionid=${id}`));
      expect(session.isNew).toBe(true);
      expect(session.keys()).toEqual([]);
      expect(warnings).toHaveLength(1);
      expect(JSON.stringify(warnings)).toMatch(/nested deeper than 100 levels/);
    });
  }
});
