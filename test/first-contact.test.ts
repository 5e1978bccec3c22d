import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, createSessions, type Sessions, storeKey } from '../src/index.js';
import { memoryStore } from '../src/stores/memory.js';
import { exchange } from './helpers.js';

let sessions: Sessions<any> | undefined;
afterEach(async () => {
  await sessions?.close();
  sessions = undefined;
});

const SECRET = 'k'.repeat(32);
const make = (options: Record<string, unknown>) => () =>
  createSessions({ store: memoryStore(), ...options } as never);

describe("typos and other libraries' option names fail loudly", () => {
  it.each([
    [{ secret: SECRET }, 'unknown option "secret": did you mean "secrets"?'],
    [{ idleTimout: 60 }, 'unknown option "idleTimout": did you mean "idleTimeout"?'],
    [{ resave: false }, 'unknown option "resave": not needed: satchel saves only what changed'],
    [{ saveUninitialized: false }, 'unknown option "saveUninitialized": not needed'],
    [
      { cookie: { samesite: 'lax' } },
      'cookie: unknown option "samesite": did you mean "sameSite"?',
    ],
    [
      { cookie: { maxAge: 1000 } },
      'cookie: unknown option "maxAge": the cookie mirrors the server-side expiry',
    ],
    [
      { transport: { type: 'url', parm: 'sid' } },
      'transport: unknown option "parm": did you mean "param"?',
    ],
    [{ wibble: 1 }, 'unknown option "wibble": known options: store, cookie'],
  ])('refuses %j', (options, message) => {
    expect(make(options)).toThrow(ConfigError);
    expect(make(options)).toThrow(message);
  });
});

describe('express-session habits fail loudly', () => {
  it('refuses a property assignment, naming session.set', async () => {
    sessions = createSessions({ store: memoryStore() });
    const s = await sessions.load({ header: () => undefined, encrypted: false });
    expect(() => {
      (s as any).views = 1;
    }).toThrow(/cannot assign session\.views.*session\.set\("views", value\)/);
  });

  it.each([
    ['destroy', 'session.flush()'],
    ['regenerate', 'session.cycleKey()'],
    ['reload', 'session.update(key, fn)'],
    ['cookie', 'createSessions({ cookie })'],
  ])('points session.%s to %s', async (name, instead) => {
    sessions = createSessions({ store: memoryStore() });
    const s = await sessions.load({ header: () => undefined, encrypted: false });
    expect(() => (s as any)[name]).toThrow(instead);
  });

  it('refuses save(callback), pointing to the promise', async () => {
    sessions = createSessions({ store: memoryStore() });
    const s = await sessions.load({ header: () => undefined, encrypted: false });
    await expect((s as any).save(() => {})).rejects.toThrow('await session.save()');
  });

  it('leaves the real API and await alone', async () => {
    sessions = createSessions({ store: memoryStore() });
    const s = await sessions.load({ header: () => undefined, encrypted: false });
    expect(await Promise.resolve(s)).toBe(s);
    expect(String(s)).toBe('[object Object]');
    expect(s.get('x', 1)).toBe(1);
  });
});

describe('turning secrets on without logging everyone out', () => {
  function logger() {
    const lines: string[] = [];
    return {
      lines,
      warn: (m: string) => void lines.push(m),
      error: (m: string) => void lines.push(m),
    };
  }

  it('says in the log, once per power of ten, why unsigned cookies are rejected', async () => {
    const store = memoryStore();
    const before = createSessions({ store });
    const ids: string[] = [];
    for (let i = 0; i < 12; i++)
      ids.push((await exchange(before, undefined, (s) => s.set('n', i))).value!);
    const log = logger();
    sessions = createSessions({ store, secrets: SECRET, logger: log });
    for (const id of ids)
      expect((await exchange(sessions, id, (s) => s.get('n'))).value).toBeUndefined();
    expect(log.lines).toEqual([
      expect.stringContaining('1 session cookie rejected: unsigned while `secrets` is set'),
      expect.stringContaining('10 session cookies rejected: unsigned while `secrets` is set'),
    ]);
  });

  it('accepts unsigned IDs during a rollout and re-sends them signed', async () => {
    const store = memoryStore();
    const before = createSessions({ store });
    const id = (await exchange(before, undefined, (s) => s.set('cart', ['a']))).value!;
    sessions = createSessions({ store, secrets: SECRET, acceptUnsignedIds: true });
    const read = await exchange(sessions, id, (s) => s.get('cart'));
    expect(read.value).toMatch(new RegExp(`^${id}\\.[\\w-]{43}$`));
    expect(await store.get(storeKey(id))).toBeDefined();
    const signed = await exchange(sessions, read.value, (s) => s.get('cart'));
    expect(signed.setCookie).toEqual([]);
  });

  it('needs secrets for acceptUnsignedIds', () => {
    expect(make({ acceptUnsignedIds: true })).toThrow(
      'acceptUnsignedIds is for rolling out secrets',
    );
  });
});
