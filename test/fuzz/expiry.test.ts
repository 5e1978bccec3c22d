/**
 * Per-session expiry from values an app may pass on from a user ("remember
 * me for N days"): whatever `setExpiry` accepts must give a record that
 * expires and a cookie that can be sent.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { createSessions, type SessionsOptions } from '../../src/index.js';
import { memoryStore } from '../../src/stores/memory.js';
import { check, fuzzFile } from './config.js';
import { request } from './support.js';

fuzzFile('expiry');

const expiry = fc.oneof(
  fc.integer({ min: 0, max: 10 ** 9 }),
  fc.double({ min: 0, max: Number.MAX_VALUE, noNaN: true, noDefaultInfinity: true }),
  fc.date({ min: new Date(0), max: new Date(8.64e15), noInvalidDate: true }),
  fc.constant(null),
);

function property(options: SessionsOptions) {
  const store = memoryStore();
  const sessions = createSessions({ store, ...options });
  afterAll(() => sessions.close());
  return fc.asyncProperty(expiry, async (value) => {
    const session = await sessions.load(request({}));
    session.set('a', 1);
    try {
      session.setExpiry(value);
    } catch (err) {
      // Refusing a value up front is fine: a TypeError naming it.
      expect(err).toBeInstanceOf(TypeError);
      return;
    }
    const { headers } = await sessions.commit(session, 200);
    const cookie = headers.find(([name]) => name === 'set-cookie')?.[1];
    if (cookie === undefined) {
      // Only a value that has already run out (a past Date, a sub-millisecond age) sends
      // no cookie: as in Django, the session is already expired and nothing is stored.
      expect(session.expiresAt.getTime()).toBeLessThanOrEqual(Date.now());
      return;
    }
    expect(cookie).toMatch(/^sessionid=[\w-]{43}; /);
    const expires = /Expires=([^;]+)/.exec(cookie!)?.[1];
    if (expires !== undefined) expect(Number.isNaN(Date.parse(expires))).toBe(false);
  });
}

describe('setExpiry', () => {
  it('gives a sendable cookie for any value it accepts, under the default absolute timeout', async () => {
    await check(property({}), 2_000);
  });

  // With no absolute timeout, setExpiry's own bound (100 years) is all that
  // keeps an expiry a sendable date (setExpiry(1e300) used to slip through).
  it('gives a sendable cookie for any value it accepts, with no absolute timeout', async () => {
    await check(property({ absoluteTimeout: null }), 2_000);
  });
});
