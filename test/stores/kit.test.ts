import { describe, expect, it } from 'vitest';
import { SatchelError } from '../../src/errors.js';
import { checkOptions, loadPeer, openGuard } from '../../src/stores/kit.js';

describe('store kit', () => {
  it('answers StoreUnavailableError naming the store once closed, and closes once', () => {
    const guard = openGuard('memory');
    expect(() => guard.check()).not.toThrow();
    expect(guard.close()).toBe(true);
    expect(guard.close()).toBe(false);
    expect(guard.closed).toBe(true);
    expect(() => guard.check()).toThrow(/\[satchel\] \[memory\] the store is closed/);
  });

  it('names the npm install command when an optional driver is missing, keeping the cause', () => {
    let caught: unknown;
    try {
      loadPeer('redis', 'satchel-no-such-driver', 'npm install satchel-no-such-driver');
    } catch (err) {
      caught = err;
    }
    expect(SatchelError.is(caught) && caught.code).toBe('ERR_SATCHEL_CONFIG');
    expect((caught as Error).message).toBe(
      '[satchel] redis store needs the satchel-no-such-driver package: npm install satchel-no-such-driver',
    );
    expect(((caught as Error).cause as NodeJS.ErrnoException).code).toBe('MODULE_NOT_FOUND');
  });

  it('loads an installed driver', () => {
    const pg = loadPeer<typeof import('pg')>('postgres', 'pg', 'npm install pg');
    expect(typeof pg.Pool).toBe('function');
  });

  it('refuses an unknown option key with a did-you-mean, and a non-object', () => {
    const known = ['maxEntries'] as const;
    expect(() =>
      checkOptions<{ maxEntries?: number }>('memory', { maxEntires: 1 } as never, known),
    ).toThrow('[satchel] memory store: unknown option "maxEntires": did you mean "maxEntries"?');
    expect(() => checkOptions('memory', 'x' as never, known)).toThrow(
      'memory store: options must be an object; got string',
    );
    expect(checkOptions<{ maxEntries?: number }>('memory', undefined, known)).toEqual({});
  });
});
