import { createHmac } from 'node:crypto';
import { MemoryStore } from 'express-session';
import { describe, expect, it, vi } from 'vitest';
import { StoreUnavailableError } from '../../src/errors.js';
import { fromDjango } from '../../src/import/django.js';
import {
  type ExpressSessionImportOptions,
  fromExpressSession,
} from '../../src/import/express-session.js';
import { readLegacySession } from '../../src/import/run.js';

const SECRET = 'keyboard cat';

/** A MemoryStore holding `sid`, and the connect.sid cookie express-session would have set for it. */
function legacy(sid: string, data: Record<string, unknown> = { user: 'alice' }) {
  const store = new MemoryStore();
  store.set(sid, { cookie: { originalMaxAge: null, path: '/' }, ...data } as never);
  const signature = createHmac('sha256', SECRET).update(sid).digest('base64').replace(/=+$/, '');
  const importer = fromExpressSession({
    secrets: SECRET,
    store: store as unknown as ExpressSessionImportOptions['store'],
  });
  return { store, importer, cookie: `connect.sid=${encodeURIComponent(`s:${sid}.${signature}`)}` };
}

describe('readLegacySession', () => {
  it('asks the importers in order and returns the first hit', async () => {
    const a = legacy('sid-a', { from: 'a' });
    const b = legacy('sid-b', { from: 'b' });
    const bRead = vi.spyOn(b.importer, 'read');
    const hit = await readLegacySession([a.importer, b.importer], a.cookie, Date.now());
    expect(hit?.data).toEqual({ from: 'a' });
    expect(bRead).not.toHaveBeenCalled();
  });

  it('imports nothing without a Cookie header or without importers', async () => {
    const { importer, cookie } = legacy('sid');
    expect(await readLegacySession([importer], undefined, Date.now())).toBeUndefined();
    expect(await readLegacySession([importer], '', Date.now())).toBeUndefined();
    expect(await readLegacySession([], cookie, Date.now())).toBeUndefined();
  });

  it('finds the session a concurrent request imported after the legacy record is gone', async () => {
    const { importer, cookie } = legacy('sid');
    const first = await readLegacySession([importer], cookie, Date.now());
    await first!.finish();
    expect(await readLegacySession([importer], cookie, Date.now())).toBeUndefined();

    const asked: string[] = [];
    const recentlyImported = async (seed: string) => {
      asked.push(seed);
      return true;
    };
    const late = await readLegacySession([importer], cookie, Date.now(), { recentlyImported });
    expect(asked).toEqual([first!.idSeed]);
    expect(late).toMatchObject({ alreadyImported: true, data: {}, idSeed: first!.idSeed });
    expect(late!.clearCookies).toEqual(first!.clearCookies);
  });

  it('does not let an old legacy cookie in once the import is no longer recent', async () => {
    const { importer, cookie } = legacy('sid');
    await (await readLegacySession([importer], cookie, Date.now()))!.finish();
    const late = await readLegacySession([importer], cookie, Date.now(), {
      recentlyImported: async () => false,
    });
    expect(late).toBeUndefined();
  });

  it('never asks about a forged cookie (no probing of the satchel store)', async () => {
    const { importer } = legacy('sid');
    const recentlyImported = vi.fn(async () => true);
    const forged = `connect.sid=${encodeURIComponent('s:sid.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')}`;
    expect(
      await readLegacySession([importer], forged, Date.now(), { recentlyImported }),
    ).toBeUndefined();
    const django = fromDjango({ secretKey: SECRET, store: { type: 'file', dir: '/nonexistent' } });
    expect(
      await readLegacySession([django], 'sessionid=not-a-django-key', Date.now(), {
        recentlyImported,
      }),
    ).toBeUndefined();
    expect(recentlyImported).not.toHaveBeenCalled();
  });

  it("keeps the legacy cookie's deletion unless satchel's cookie has its name, path and domain", async () => {
    const { importer, cookie } = legacy('sid');
    const clears = async (ownCookie: { name: string; path?: string; domain?: string }) =>
      (await readLegacySession([importer], cookie, Date.now(), { ownCookie }))!.clearCookies;
    expect(await clears({ name: 'connect.sid', path: '/' })).toEqual([]);
    expect(await clears({ name: 'connect.sid' })).toEqual([]);
    expect(await clears({ name: 'connect.sid', path: '/app' })).toHaveLength(1);
    expect(await clears({ name: 'connect.sid', domain: 'example.com' })).toHaveLength(1);
    expect(await clears({ name: 'sessionid', path: '/' })).toHaveLength(1);
  });

  it('passes on a legacy store outage as StoreUnavailableError', async () => {
    const { cookie } = legacy('sid');
    const broken = fromExpressSession({
      secrets: SECRET,
      store: {
        get: (_sid, done) => done(new Error('ECONNREFUSED')),
        destroy: (_sid, done) => done(),
      },
    });
    await expect(readLegacySession([broken], cookie, Date.now())).rejects.toThrow(
      StoreUnavailableError,
    );
    await expect(readLegacySession([broken], cookie, Date.now())).rejects.toThrow(
      '[satchel] [express-session] reading a legacy session failed: ECONNREFUSED',
    );
  });
});
