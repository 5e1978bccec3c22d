import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, SatchelError } from '../../src/errors.js';
import { generateId, Signer } from '../../src/ids.js';
import { type DjangoImportOptions, type DjangoStore, fromDjango } from '../../src/import/django.js';
import { readLegacySession } from '../../src/import/run.js';
import { adminDatabaseUrl, describeWithService, postgresUnreachable } from '../support/services.js';
import { type DjangoSite, djangoMissing, startDjango } from './django/site.js';

const KEY = 'django-insecure-satchel-import-test-0123456789abcdefghijklmnop';
const NEW_KEY = 'django-insecure-the-rotated-key-zyxwvutsrqponmlkjihgfedcba9876';
const TWO_WEEKS = 1_209_600_000;
const PG_URL = 'postgres://127.0.0.1:5432/test';

const missing = (await djangoMissing()) ?? (await postgresUnreachable(PG_URL));

/** One Django session backend under test: how to point the importer at it, and raw access to its records. */
interface Backend {
  name: string;
  site: DjangoSite;
  store: DjangoStore;
  raw(key: string): Promise<string | undefined>;
  setRaw(key: string, data: string): Promise<void>;
}

function importer(backend: Backend, options: Partial<DjangoImportOptions> = {}) {
  const made = fromDjango({ secretKey: KEY, store: backend.store, ...options });
  closers.push(() => made.close());
  return made;
}

function cookieFor(key: string): string {
  return `theme=dark; sessionid=${key}`;
}

const closers: (() => Promise<unknown>)[] = [];

describeWithService('fromDjango against Django from Debian (gunicorn)', missing, () => {
  const dir = mkdtempSync(join(tmpdir(), 'satchel-django-'));
  const sqlitePath = join(dir, 'db.sqlite3');
  const sha1Path = join(dir, 'sha1.sqlite3');
  const fileDir = join(dir, 'sessions');
  const schema = `satchel_django_${process.pid}`;
  let admin: pg.Client;
  let pool: pg.Pool;
  let sqlite: Backend;
  let postgres: Backend;
  let files: Backend;
  let sha1Site: DjangoSite;

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: adminDatabaseUrl(PG_URL) });
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE; CREATE SCHEMA ${schema}`);
    pool = new pg.Pool({
      connectionString: adminDatabaseUrl(PG_URL),
      options: `-c search_path=${schema}`,
    });
    mkdirSync(fileDir);

    const env = { DJANGO_SECRET_KEY: KEY };
    const starting = [
      startDjango({ ...env, DJANGO_SQLITE_PATH: sqlitePath }),
      startDjango({ ...env, DJANGO_DB: 'postgres', DJANGO_PG_SCHEMA: schema }),
      startDjango({ ...env, DJANGO_SESSION_ENGINE: 'file', DJANGO_SESSION_FILE_PATH: fileDir }),
      startDjango({ ...env, DJANGO_SQLITE_PATH: sha1Path, DJANGO_HASHING: 'sha1' }),
    ];
    // Every site that started is stopped after the run, even when another failed to start.
    for (const site of starting)
      void site.then(
        (s) => closers.push(() => s.stop()),
        () => {},
      );
    const [sqliteSite, pgSite, fileSite, oldSite] = (await Promise.all(starting)) as [
      DjangoSite,
      DjangoSite,
      DjangoSite,
      DjangoSite,
    ];
    sha1Site = oldSite;

    const db = new Database(sqlitePath);
    closers.push(async () => db.close());
    sqlite = {
      name: 'db backend on SQLite',
      site: sqliteSite,
      store: { type: 'sqlite', path: sqlitePath },
      raw: async (key) =>
        (
          db.prepare('SELECT session_data FROM django_session WHERE session_key = ?').get(key) as
            | { session_data: string }
            | undefined
        )?.session_data,
      setRaw: async (key, data) => {
        db.prepare('UPDATE django_session SET session_data = ? WHERE session_key = ?').run(
          data,
          key,
        );
      },
    };
    postgres = {
      name: 'db backend on PostgreSQL',
      site: pgSite,
      store: { type: 'postgres', pool },
      raw: async (key) =>
        (await pool.query('SELECT session_data FROM django_session WHERE session_key = $1', [key]))
          .rows[0]?.session_data,
      setRaw: async (key, data) => {
        await pool.query('UPDATE django_session SET session_data = $1 WHERE session_key = $2', [
          data,
          key,
        ]);
      },
    };
    files = {
      name: 'file backend',
      site: fileSite,
      store: { type: 'file', dir: fileDir },
      raw: async (key) => {
        try {
          return readFileSync(join(fileDir, `sessionid${key}`), 'latin1');
        } catch {
          return undefined;
        }
      },
      setRaw: async (key, data) => writeFileSync(join(fileDir, `sessionid${key}`), data),
    };
  }, 90_000);

  afterAll(async () => {
    for (const close of closers.reverse()) await close().catch(() => {});
    await pool?.end();
    await admin?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin?.end();
    rmSync(dir, { recursive: true, force: true });
  });

  describe.each([
    ['db backend on SQLite', () => sqlite],
    ['db backend on PostgreSQL', () => postgres],
    ['file backend', () => files],
  ] as const)('%s', (_name, backend) => {
    it('imports the data Django stored, with its two-week expiry', async () => {
      const b = backend();
      const before = Date.now();
      const key = await b.site.login();
      expect(key).toMatch(/^[a-z0-9]{32}$/);
      const legacy = await readLegacySession([importer(b)], cookieFor(key), Date.now());
      expect(legacy).toBeDefined();
      expect(legacy!.importer).toBe('django');
      expect(legacy!.data).toEqual({ user: 'alice', cart: ['item-0', 'item-1'], note: 'café ✓' });
      expect(legacy!.expiresAt).toBeGreaterThanOrEqual(before + TWO_WEEKS - 2_000);
      expect(legacy!.expiresAt).toBeLessThanOrEqual(Date.now() + TWO_WEEKS + 2_000);
    });

    it("honours set_expiry(seconds) and drops Django's _session_expiry bookkeeping", async () => {
      const b = backend();
      const before = Date.now();
      const key = await b.site.login('?expiry=600');
      const legacy = await readLegacySession([importer(b)], cookieFor(key), Date.now());
      expect(legacy!.data).not.toHaveProperty('_session_expiry');
      expect(legacy!.data).toMatchObject({ user: 'alice' });
      expect(legacy!.expiresAt).toBeGreaterThanOrEqual(before + 600_000 - 2_000);
      expect(legacy!.expiresAt).toBeLessThanOrEqual(Date.now() + 600_000 + 2_000);
    });

    it('reads session data Django compressed', async () => {
      const b = backend();
      const key = await b.site.login('?items=300');
      expect((await b.raw(key))?.startsWith('.'), 'Django compressed this one').toBe(true);
      expect((await b.raw(await b.site.login()))?.startsWith('.'), 'and not the small one').toBe(
        false,
      );
      const legacy = await readLegacySession([importer(b)], cookieFor(key), Date.now());
      expect(legacy!.data.cart).toHaveLength(300);
      expect((legacy!.data.cart as string[])[299]).toBe('item-299');
    });

    it('imports nothing from session data altered without the secret key (tampering)', async () => {
      const b = backend();
      const key = await b.site.login();
      const original = (await b.raw(key))!;
      // Put another user in the payload and keep Django's timestamp and signature.
      const [, stamp, signature] = original.split(':');
      const forgedPayload = Buffer.from('{"user":"admin","cart":[]}').toString('base64url');
      await b.setRaw(key, `${forgedPayload}:${stamp}:${signature}`);
      expect(await readLegacySession([importer(b)], cookieFor(key), Date.now())).toBeUndefined();
      // Signed with a key the importer does not have.
      const other = fromDjango({ secretKey: NEW_KEY, store: b.store });
      await b.setRaw(key, original);
      expect(await readLegacySession([other], cookieFor(key), Date.now())).toBeUndefined();
      await other.close();
    });

    it('imports nothing for a session key Django does not know', async () => {
      const b = backend();
      const unknown = randomBytes(16).toString('hex');
      expect(
        await readLegacySession([importer(b)], cookieFor(unknown), Date.now()),
      ).toBeUndefined();
    });

    it('imports nothing once the session has expired', async () => {
      const b = backend();
      const key = await b.site.login('?expiry=600');
      const later = Date.now() + 601_000;
      expect(await readLegacySession([importer(b)], cookieFor(key), later)).toBeUndefined();
    });

    it('removes the Django session on finish(): Django itself no longer knows it', async () => {
      const b = backend();
      const key = await b.site.login();
      expect(await b.site.whoami(key)).toBe('alice');
      const legacy = await readLegacySession([importer(b)], cookieFor(key), Date.now());
      await legacy!.finish();
      expect(await b.raw(key)).toBeUndefined();
      expect(await b.site.whoami(key)).toBeNull();
      expect(await readLegacySession([importer(b)], cookieFor(key), Date.now())).toBeUndefined();
    });

    it('keeps the Django session with keepLegacy: true', async () => {
      const b = backend();
      const key = await b.site.login();
      const legacy = await readLegacySession(
        [importer(b, { keepLegacy: true })],
        cookieFor(key),
        Date.now(),
      );
      await legacy!.finish();
      expect(await b.site.whoami(key)).toBe('alice');
    });
  });

  it('verifies with SECRET_KEY_FALLBACKS after the key was rotated', async () => {
    const key = await sqlite.site.login();
    const rotated = importer(sqlite, { secretKey: NEW_KEY, secretKeyFallbacks: [KEY] });
    const legacy = await readLegacySession([rotated], cookieFor(key), Date.now());
    expect(legacy!.data).toMatchObject({ user: 'alice' });
    // The seed comes from the current key, which every process shares.
    expect(legacy!.idSeed).toBe(
      createHmac('sha256', NEW_KEY).update(`satchel-import:django:${key}`).digest('base64url'),
    );
    const withoutFallback = importer(sqlite, { secretKey: NEW_KEY });
    expect(await readLegacySession([withoutFallback], cookieFor(key), Date.now())).toBeUndefined();
  });

  it("reads the legacy format Django 3.1/3.2 writes with DEFAULT_HASHING_ALGORITHM = 'sha1'", async () => {
    const key = await sha1Site.login();
    const db = new Database(sha1Path, { readonly: true });
    const raw = (
      db.prepare('SELECT session_data FROM django_session WHERE session_key = ?').get(key) as {
        session_data: string;
      }
    ).session_data;
    db.close();
    if (sha1Site.version[0] < 4) {
      // base64 of '<40 hex digits>:<json>': no ':' separators outside the base64.
      expect(Buffer.from(raw, 'base64').toString('latin1')).toMatch(/^[0-9a-f]{40}:\{/);
    }
    const old = importer(sqlite, { store: { type: 'sqlite', path: sha1Path } });
    const legacy = await readLegacySession([old], cookieFor(key), Date.now());
    expect(legacy!.data).toEqual({ user: 'alice', cart: ['item-0', 'item-1'], note: 'café ✓' });
  });

  it("never takes satchel's own IDs under the same cookie name for Django keys", async () => {
    let queries = 0;
    const spy = {
      query: async (text: string, values?: unknown[]) => {
        queries++;
        return pool.query(text, values);
      },
    };
    const django = importer(postgres, { store: { type: 'postgres', pool: spy } });
    const satchelId = generateId();
    const signed = new Signer(['a'.repeat(32)]).sign(satchelId);
    for (const value of [satchelId, signed, 'A'.repeat(32), `${'a'.repeat(31)}-`, 'a'.repeat(33)]) {
      expect(await readLegacySession([django], `sessionid=${value}`, Date.now())).toBeUndefined();
    }
    expect(queries, 'the Django store is not even asked').toBe(0);
    const key = await postgres.site.login();
    expect(await readLegacySession([django], cookieFor(key), Date.now())).toBeDefined();
    expect(queries).toBe(1);
  });

  it("leaves the Django cookie's deletion out when satchel's own cookie replaces it", async () => {
    const key = await sqlite.site.login();
    const same = await readLegacySession([importer(sqlite)], cookieFor(key), Date.now(), {
      ownCookie: { name: 'sessionid', path: '/' },
    });
    expect(same!.clearCookies).toEqual([]);
    const other = await readLegacySession([importer(sqlite)], cookieFor(key), Date.now(), {
      ownCookie: { name: 'satchel', path: '/' },
    });
    expect(other!.clearCookies).toEqual([
      expect.stringMatching(/^sessionid=; Max-Age=0; Path=\/; Expires=Thu, 01 Jan 1970/),
    ]);
  });

  it("reads the SQLite database with Node's own node:sqlite where Node has it (22.13+)", async () => {
    const key = await sqlite.site.login();
    const builtin = { type: 'sqlite', path: sqlitePath, driver: 'node:sqlite' } as const;
    const hasNodeSqlite = (() => {
      try {
        return process.getBuiltinModule?.('node:sqlite') !== undefined;
      } catch {
        return false;
      }
    })();
    if (!hasNodeSqlite) {
      expect(() => fromDjango({ secretKey: KEY, store: builtin })).toThrow(
        `store.driver 'node:sqlite' needs Node 22.13 or later; this is ${process.version}`,
      );
      return;
    }
    const legacy = await readLegacySession(
      [importer(sqlite, { store: builtin })],
      cookieFor(key),
      Date.now(),
    );
    expect(legacy!.data).toMatchObject({ user: 'alice' });
  });

  it('counts a file session from the last write with SESSION_COOKIE_AGE (maxAge)', async () => {
    const key = await files.site.login();
    const { mtimeMs } = statSync(join(fileDir, `sessionid${key}`));
    const short = importer(files, { store: { type: 'file', dir: fileDir, maxAge: 60 } });
    const legacy = await readLegacySession([short], cookieFor(key), Date.now());
    expect(legacy!.expiresAt).toBe(mtimeMs + 60_000);
    expect(await readLegacySession([short], cookieFor(key), mtimeMs + 60_000)).toBeUndefined();
  });

  it('answers StoreUnavailableError when the Django database cannot be read', async () => {
    const key = await sqlite.site.login();
    const cases = [
      importer(sqlite, { store: { type: 'sqlite', path: join(dir, 'missing.sqlite3') } }),
      importer(postgres, { store: { type: 'postgres', pool, table: 'no_such_table' } }),
    ];
    for (const broken of cases) {
      const error = await readLegacySession([broken], cookieFor(key), Date.now()).catch(
        (e: unknown) => e,
      );
      expect(SatchelError.is(error) && error.code).toBe('ERR_SATCHEL_STORE_UNAVAILABLE');
      expect((error as Error).message).toMatch(
        /^\[satchel\] \[django\] reading a Django session failed: /,
      );
    }
  });
});

describe('fromDjango options', () => {
  const store = { type: 'file', dir: tmpdir() } as const;
  it('refuses Django setting names and typos with advice', () => {
    expect(() => fromDjango({ SECRET_KEY: KEY, store } as unknown as DjangoImportOptions)).toThrow(
      /unknown option "SECRET_KEY": use secretKey/,
    );
    expect(() =>
      fromDjango({
        secretKey: KEY,
        store: { type: 'postgress', pool: {} },
      } as unknown as DjangoImportOptions),
    ).toThrow(
      /store.type must be 'postgres', 'sqlite' or 'file'; got postgress \(did you mean "postgres"\?\)/,
    );
    expect(() =>
      fromDjango({
        secretKey: KEY,
        store: { type: 'file', dir: tmpdir(), path: 'x' },
      } as unknown as DjangoImportOptions),
    ).toThrow(/store \(file\): unknown option "path"/);
  });
  it('refuses a missing secret key, a bad fallback list and a table name that is not an identifier', () => {
    expect(() => fromDjango({ store } as unknown as DjangoImportOptions)).toThrow(ConfigError);
    expect(() =>
      fromDjango({ secretKey: KEY, secretKeyFallbacks: KEY as unknown as string[], store }),
    ).toThrow(/secretKeyFallbacks must be an array/);
    expect(() =>
      fromDjango({ secretKey: KEY, store: { type: 'sqlite', path: 'x', table: 'a; DROP' } }),
    ).toThrow(/store.table must be a plain identifier/);
  });
});
