import { afterEach, describe, expect, it, vi } from 'vitest';
import { createSessions, type Sessions } from '../../src/index.js';
import { cookieStore } from '../../src/stores/cookie.js';
import { exchange } from '../helpers.js';

const KEY_A = 'a'.repeat(32);
const KEY_B = 'b'.repeat(32);

let sessions: Sessions<any>;
afterEach(async () => {
  vi.useRealTimers();
  await sessions?.close();
});

function make(secrets: string | string[] = KEY_A, options = {}): Sessions<any> {
  sessions = createSessions({ store: cookieStore({ secrets }), ...options });
  return sessions;
}

describe('cookie store', () => {
  it('keeps the whole session in an encrypted cookie that does not show the data', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => s.set('cart', ['secret-item']));
    expect(a.value).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(Buffer.from(a.value!, 'base64url').toString('latin1')).not.toContain('secret-item');
    await exchange(sessions, a.value, (s) => expect(s.get('cart')).toEqual(['secret-item']));
  });

  it('reads a tampered cookie as an empty session (authenticated encryption)', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => s.set('role', 'user'));
    const bytes = Buffer.from(a.value!, 'base64url');
    for (const i of [0, 5, 20, bytes.length - 1]) {
      const forged = Buffer.from(bytes);
      forged[i]! ^= 1;
      await exchange(sessions, forged.toString('base64url'), (s) =>
        expect(s.get('role')).toBeUndefined(),
      );
    }
    await exchange(sessions, `${a.value}AAAA`, (s) => expect(s.get('role')).toBeUndefined());
    await exchange(sessions, 'not base64 !', (s) => expect(s.isNew).toBe(true));
  });

  it('refuses a replayed cookie once the expiry sealed inside has passed', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    make(KEY_A, { idleTimeout: 60 });
    const a = await exchange(sessions, undefined, (s) => s.set('a', 1));
    vi.advanceTimersByTime(61_000);
    // The browser would have dropped it; an attacker who kept a copy gets nothing.
    await exchange(sessions, a.value, (s) => expect(s.get('a')).toBeUndefined());
  });

  it('opens cookies sealed by an older key and seals with the first (rotation)', async () => {
    make([KEY_A]);
    const old = await exchange(sessions, undefined, (s) => s.set('a', 1));
    make([KEY_B, KEY_A]);
    const reSealed = await exchange(sessions, old.value, (s) =>
      s.update('a', (n: number) => n + 1),
    );
    make([KEY_B]);
    await exchange(sessions, reSealed.value, (s) => expect(s.get('a')).toBe(2));
  });

  it('invalidates every cookie sealed with a key that is rotated out (secure-session CVE-2024-31999)', async () => {
    make([KEY_A]);
    const a = await exchange(sessions, undefined, (s) => s.set('user', 'ann'));
    make([KEY_B]);
    await exchange(sessions, a.value, (s) => expect(s.get('user')).toBeUndefined());
  });

  it('fails with a clear error before a sealed cookie would pass 4096 bytes', async () => {
    make();
    await expect(
      exchange(sessions, undefined, (s) => s.set('big', 'x'.repeat(4000))),
    ).rejects.toMatchObject({
      code: 'ERR_SATCHEL_COOKIE_TOO_LARGE',
      message: expect.stringMatching(
        /^\[satchel\] cookie "sessionid" would be \d+ bytes, over the 4096 bytes browsers keep$/,
      ),
    });
  });

  it('deletes the cookie on flush and sends no cookie for an untouched session', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => s.set('a', 1));
    expect((await exchange(sessions, a.value, (s) => s.get('a'))).setCookie).toEqual([]);
    const flushed = await exchange(sessions, a.value, (s) => s.flush());
    expect(flushed.value).toBeUndefined();
    expect(flushed.setCookie[0]).toMatch(/^sessionid=; Max-Age=0/);
  });

  it('keeps the last response when two requests change one cookie session (documented: no compare-and-set)', async () => {
    make();
    const a = await exchange(sessions, undefined, (s) => s.set('cart', []));
    const [one, two] = await Promise.all([
      exchange(sessions, a.value, (s) => s.update('cart', (c: string[]) => [...c, 'one'])),
      exchange(sessions, a.value, (s) => s.update('cart', (c: string[]) => [...c, 'two'])),
    ]);
    await exchange(sessions, one.value, (s) => expect(s.get('cart')).toEqual(['one']));
    await exchange(sessions, two.value, (s) => expect(s.get('cart')).toEqual(['two']));
  });

  it('validates its secrets and refuses lock: true', () => {
    expect(() => cookieStore({ secrets: 'short' })).toThrow(
      '[satchel] cookie store: secrets[0] must be at least 32 characters; got 5 (generate one with: npx satchel keygen)',
    );
    expect(() => createSessions({ store: cookieStore({ secrets: KEY_A }), lock: true })).toThrow(
      '[satchel] lock needs a server-side store; the cookie store keeps no server state',
    );
  });

  it('refuses express-session\'s "secret" and other unknown option keys', () => {
    expect(() => cookieStore({ secret: KEY_A } as never)).toThrow(
      '[satchel] cookie store: unknown option "secret": the option is "secrets" (a string or an array, the first one seals)',
    );
    expect(() => cookieStore({ secrets: KEY_A, maxAge: 60 } as never)).toThrow(
      '[satchel] cookie store: unknown option "maxAge": known options: secrets',
    );
    expect(() => cookieStore({ secrets: [] })).toThrow(
      '[satchel] cookie store: secrets must hold at least one key',
    );
  });

  it('has nothing to clear on the server', async () => {
    make();
    expect(await sessions.clearExpired()).toBe(0);
  });
});
