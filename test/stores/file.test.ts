import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import type { SessionStore } from '../../src/store.js';
import { fileStore } from '../../src/stores/file.js';
import { describeStore, newKey, newRecord } from './conformance.js';

const root = mkdtempSync(join(tmpdir(), 'store-test-file-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let folders = 0;
/** A fresh, empty folder under the test root. */
function folder(): string {
  const dir = join(root, `case-${++folders}`);
  mkdirSync(dir);
  return dir;
}

/** Every path under `dir`, relative to it, with file contents, sorted. */
function snapshot(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .map((entry) => {
      const path = join(entry.parentPath, entry.name);
      const content = entry.isFile() ? readFileSync(path, 'utf8') : '<dir>';
      return `${relative(dir, path)}: ${content}`;
    })
    .sort();
}

/** The name of `owner`'s index file. */
function indexName(owner: string, prefix = 'satchel-'): string {
  return `${prefix}${createHash('sha256').update(owner).digest('base64url')}.owner`;
}

/** What the store writes in `owner`'s index holding `keys`. */
function indexText(owner: string, keys: string[]): string {
  return `satchel-owner1 ${JSON.stringify(owner)}\n${keys.map((key) => `${key}\n`).join('')}`;
}

const shared = join(root, 'conformance');
describeStore('file', () => fileStore({ dir: shared }), {
  lock: true,
  owners: true,
  persistent: () => fileStore({ dir: shared }),
});

describe('file store', () => {
  const evilKeys = [
    '../../etc/passwd',
    '../victim',
    '..',
    '.',
    '',
    'a/b',
    'a\\b',
    '/etc/passwd',
    'a\u0000b',
    'x'.repeat(129),
    'key.lock',
    'ké',
    'a b',
    '..%2fvictim',
  ];

  it('refuses a path-traversal key and touches no file outside its folder', async () => {
    const outer = folder();
    await writeFile(join(outer, 'victim'), 'keep me');
    const dir = join(outer, 'store');
    const store = fileStore({ dir });
    const before = snapshot(outer);
    expect(before).toEqual(['store: <dir>', 'victim: keep me']);

    const calls: Array<(key: string) => Promise<unknown>> = [
      (key) => store.get(key),
      (key) => store.create(key, newRecord()),
      (key) => store.update(key, newRecord({ version: 2 }), 1),
      (key) => store.touch(key, Date.now() + 60_000),
      (key) => store.destroy(key),
      (key) => store.lock!(key, 'token', 60_000),
      (key) => store.unlock!(key, 'token'),
    ];
    for (const key of [...evilKeys, undefined as unknown as string, 42 as unknown as string]) {
      for (const call of calls) {
        await expect(call(key)).rejects.toThrow(
          expect.objectContaining({
            name: 'TypeError',
            message: '[satchel] [file] invalid store key',
          }),
        );
      }
    }
    expect(snapshot(outer)).toEqual(before);
    await store.close();
  });

  it('reads a corrupt session file as absent, and lets create replace it', async () => {
    const dir = folder();
    const store = fileStore({ dir });
    const expiresAt = Date.now() + 60_000;
    const corrupt = [
      Buffer.from([0xff, 0xfe, 0x00, 0x13, 0x37, 0x0a, 0x80]),
      '',
      'not a session at all',
      `satchel1 ${expiresAt} 1 ${Date.now()}`,
      `satchel1 ${expiresAt} 1 ${Date.now()}\n{"data":"trunc`,
      `satchel1 ${expiresAt} 1 ${Date.now()}\n{"owner":"no data"}`,
      `satchel1 soon 1 ${Date.now()}\n{"data":"x"}`,
      `satchel9 ${expiresAt} 1 ${Date.now()}\n{"data":"x"}`,
    ];
    for (const content of corrupt) {
      const key = newKey();
      await writeFile(join(dir, `satchel-${key}`), content);
      expect(await store.get(key)).toBeUndefined();
      expect(await store.update(key, newRecord({ version: 2 }), 1)).toBe('missing');
      await store.touch(key, Date.now() + 120_000);
      const record = newRecord();
      expect(await store.create(key, record)).toBe(true);
      expect(await store.get(key)).toStrictEqual(record);
    }
    await store.close();
  });

  it('writes a one-line header, then the data, readable by its owner only', async () => {
    const dir = folder();
    const store = fileStore({ dir, prefix: 'sess.' });
    const key = newKey();
    const record = newRecord({ version: 3 });
    await store.create(key, record);
    const path = join(dir, `sess.${key}`);
    expect(await readFile(path, 'utf8')).toBe(
      `satchel1 ${record.expiresAt} 3 ${record.createdAt}\n` +
        JSON.stringify({ data: record.data, owner: record.owner }),
    );
    if (process.platform !== 'win32') expect(statSync(path).mode & 0o777).toBe(0o600);
    const index = indexName(record.owner!, 'sess.');
    expect(readdirSync(dir).sort()).toEqual([`sess.${key}`, index].sort());
    expect(await readFile(join(dir, index), 'utf8')).toBe(indexText(record.owner!, [key]));
    if (process.platform !== 'win32') expect(statSync(join(dir, index)).mode & 0o777).toBe(0o600);
    await store.close();
  });

  it('removes temp files left by crashed writes once they are a minute old', async () => {
    const dir = folder();
    const store = fileStore({ dir });
    const key = newKey();
    const old = [`satchel-${key}.0a1b2c3d4e5f.tmp`, `satchel-${key}.applock.abcdef.tmp`];
    const fresh = `satchel-${key}.ffeeddccbbaa.tmp`;
    const twoMinutesAgo = new Date(Date.now() - 120_000);
    for (const name of old) {
      await writeFile(join(dir, name), 'half a write');
      await utimes(join(dir, name), twoMinutesAgo, twoMinutesAgo);
    }
    await writeFile(join(dir, fresh), 'a write in progress');
    expect(await store.clearExpired()).toBe(0);
    expect(readdirSync(dir)).toEqual([fresh]);
    await store.close();
  });

  it('leaves files that are not its own alone when clearing', async () => {
    const dir = folder();
    const store = fileStore({ dir });
    const foreign = [
      'other-app.json',
      'satchel-notes',
      'satchel-notes.txt',
      'satchel-x.backup',
      'satchel-notes.owner',
      indexName('someone').replace('satchel-', 'other-'),
    ];
    for (const name of foreign) await writeFile(join(dir, name), 'someone else’s file');
    mkdirSync(join(dir, 'satchel-folder'));
    const expired = newKey();
    await store.create(expired, newRecord({ expiresAt: Date.now() - 1 }));
    expect(await store.clearExpired()).toBe(1);
    expect(readdirSync(dir).sort()).toEqual([...foreign, 'satchel-folder'].sort());
    await store.close();
  });

  describe('owner index', () => {
    it('keeps one index file per owner, named by a hash of it, and deletes it once empty', async () => {
      const dir = folder();
      const store = fileStore({ dir });
      const owners = ['ann', '../../etc/passwd', 'ユーザー 😀', 'nul \u0000 and\nnewline', ''];
      const keys = owners.map(() => newKey());
      for (const [i, owner] of owners.entries()) {
        await store.create(keys[i]!, newRecord({ owner }));
      }
      const indexes = owners.map((owner) => indexName(owner));
      expect(readdirSync(dir).sort()).toEqual(
        [...keys.map((key) => `satchel-${key}`), ...indexes].sort(),
      );
      for (const [i, owner] of owners.entries()) {
        expect(indexes[i]).toMatch(/^satchel-[A-Za-z0-9_-]{43}\.owner$/);
        expect(await readFile(join(dir, indexes[i]!), 'utf8')).toBe(indexText(owner, [keys[i]!]));
        expect((await store.listByOwner!(owner)).map((row) => row.key)).toEqual([keys[i]]);
      }
      // A session key can never name an index file: keys have no dot.
      const hash = indexes[0]!.slice('satchel-'.length);
      await expect(store.get(hash)).rejects.toThrow('[satchel] [file] invalid store key');

      for (const key of keys) await store.destroy(key);
      expect(readdirSync(dir)).toEqual([]);
      await store.close();
    });

    it('keeps its index across close and reopen, and between stores sharing the folder', async () => {
      const dir = folder();
      const first = fileStore({ dir });
      const kept = newKey();
      await first.create(kept, newRecord({ owner: 'ann' }));
      await first.close();

      // Three stores, as three processes, add to one index at once.
      const stores = [fileStore({ dir }), fileStore({ dir }), fileStore({ dir })];
      const keys = Array.from({ length: 30 }, newKey);
      await Promise.all(
        keys.map((key, i) => stores[i % 3]!.create(key, newRecord({ owner: 'ann' }))),
      );
      for (const store of stores) {
        expect((await store.listByOwner!('ann')).map((row) => row.key).sort()).toEqual(
          [kept, ...keys].sort(),
        );
      }
      await Promise.all(keys.slice(0, 15).map((key, i) => stores[i % 3]!.destroy(key)));
      const reopened = fileStore({ dir });
      expect((await reopened.listByOwner!('ann')).map((row) => row.key).sort()).toEqual(
        [kept, ...keys.slice(15)].sort(),
      );
      for (const store of [...stores, reopened]) await store.close();
    });

    it('rebuilds an index it cannot read from the session files, losing no live session', async () => {
      const dir = folder();
      const store = fileStore({ dir });
      const [a, b, bob, expired] = [newKey(), newKey(), newKey(), newKey()];
      await store.create(a, newRecord({ owner: 'ann' }));
      await store.create(b, newRecord({ owner: 'ann' }));
      await store.create(bob, newRecord({ owner: 'bob' }));
      await store.create(expired, newRecord({ owner: 'ann', expiresAt: Date.now() + 30 }));
      await sleep(50);
      const path = join(dir, indexName('ann'));
      const damaged = [
        'garbage',
        '',
        indexText('ann', ['../../etc/passwd']),
        indexText('ann', [a]).slice(0, -1),
        indexText('not ann', [a, b]),
        `satchel-owner1 {"owner":1}\n${a}\n`,
        Buffer.from([0xff, 0xfe, 0x00, 0x0a]),
      ];
      for (const content of damaged) {
        await writeFile(path, content);
        expect((await store.listByOwner!('ann')).map((row) => row.key).sort()).toEqual(
          [a, b].sort(),
        );
        expect(await readFile(path, 'utf8')).toMatch(/^satchel-owner1 "ann"\n/);
        expect((await readFile(path, 'utf8')).split('\n').slice(1, -1).sort()).toEqual(
          [a, b].sort(),
        );
      }
      // A write that finds the index damaged rebuilds it before adding to it.
      await writeFile(path, 'garbage');
      const c = newKey();
      await store.create(c, newRecord({ owner: 'ann' }));
      expect((await store.listByOwner!('ann')).map((row) => row.key).sort()).toEqual(
        [a, b, c].sort(),
      );
      // Rebuilt with nothing live: the file goes.
      await writeFile(join(dir, indexName('carol')), 'garbage');
      expect(await store.listByOwner!('carol')).toEqual([]);
      expect(existsSync(join(dir, indexName('carol')))).toBe(false);
      await store.close();
    });

    it('prunes lines of sessions that are gone, expired or someone else’s when listing', async () => {
      const dir = folder();
      const store = fileStore({ dir });
      const [live, expired, moved, gone] = [newKey(), newKey(), newKey(), newKey()];
      await store.create(live, newRecord({ owner: 'ann' }));
      await store.create(expired, newRecord({ owner: 'ann', expiresAt: Date.now() + 30 }));
      await store.create(moved, newRecord({ owner: 'bob' }));
      await sleep(50);
      // As a crash between a write and its index update could leave it.
      await writeFile(join(dir, indexName('ann')), indexText('ann', [live, expired, moved, gone]));
      expect((await store.listByOwner!('ann')).map((row) => row.key)).toEqual([live]);
      expect(await readFile(join(dir, indexName('ann')), 'utf8')).toBe(indexText('ann', [live]));
      // The session that moved is not ann's to end.
      await writeFile(join(dir, indexName('ann')), indexText('ann', [live, moved]));
      expect(await store.destroyByOwner!('ann')).toBe(1);
      expect(await store.get(moved)).toMatchObject({ owner: 'bob' });
      expect(existsSync(join(dir, indexName('ann')))).toBe(false);
      await store.close();
    });

    it('keeps index files apart from sessions when clearing, and prunes them', async () => {
      const dir = folder();
      const store = fileStore({ dir });
      const [live, soon, other] = [newKey(), newKey(), newKey()];
      await store.create(live, newRecord({ owner: 'ann' }));
      await store.create(soon, newRecord({ owner: 'ann', expiresAt: Date.now() + 30 }));
      await store.create(other, newRecord({ owner: 'bob', expiresAt: Date.now() + 30 }));
      // An index whose sessions have all gone, as a crash could leave it;
      // one that cannot be read; and the leftovers of a crashed index write.
      const orphan = indexName('carol');
      await writeFile(join(dir, orphan), indexText('carol', [newKey()]));
      const unreadable = indexName('dave');
      await writeFile(join(dir, unreadable), 'garbage');
      const staleLock = `${indexName('erin')}.lock`;
      await writeFile(
        join(dir, staleLock),
        JSON.stringify({ token: 'dead', expiresAt: Date.now() - 1 }),
      );
      const oldTemp = `${indexName('erin')}.0a1b2c.tmp`;
      await writeFile(join(dir, oldTemp), 'half an index');
      const twoMinutesAgo = new Date(Date.now() - 120_000);
      await utimes(join(dir, oldTemp), twoMinutesAgo, twoMinutesAgo);
      await sleep(50);

      expect(await store.clearExpired()).toBe(2);
      expect(readdirSync(dir).sort()).toEqual(
        [`satchel-${live}`, indexName('ann'), unreadable].sort(),
      );
      expect(await readFile(join(dir, indexName('ann')), 'utf8')).toBe(indexText('ann', [live]));
      expect(await store.clearExpired(Date.now() + 2 * 3_600_000)).toBe(1);
      expect(readdirSync(dir)).toEqual([unreadable]);
      await store.close();
    });

    it('follows the owner through create over an expired session and touch', async () => {
      const dir = folder();
      const store = fileStore({ dir });
      const key = newKey();
      await store.create(key, newRecord({ owner: 'ann', expiresAt: Date.now() + 30 }));
      await sleep(50);
      await store.create(key, newRecord({ owner: 'bob' }));
      expect(existsSync(join(dir, indexName('ann')))).toBe(false);
      await store.touch(key, Date.now() + 3 * 3_600_000);
      expect((await store.listByOwner!('bob')).map((row) => row.key)).toEqual([key]);
      // Written already expired: indexed nowhere.
      await store.update(
        key,
        newRecord({ owner: 'bob', version: 2, expiresAt: Date.now() - 1 }),
        1,
      );
      expect(readdirSync(dir)).toEqual([`satchel-${key}`]);
      await store.close();
    });
  });

  it('breaks a lock file left behind by a crashed process', async () => {
    const dir = folder();
    const store = fileStore({ dir, lockTtlMs: 1_000 });
    const stale = newKey();
    await writeFile(
      join(dir, `satchel-${stale}.lock`),
      JSON.stringify({ token: 'dead', expiresAt: Date.now() - 1 }),
    );
    // Crashed between creating the lock file and writing it: aged by mtime.
    const empty = newKey();
    await writeFile(join(dir, `satchel-${empty}.lock`), '');
    const longAgo = new Date(Date.now() - 5_000);
    await utimes(join(dir, `satchel-${empty}.lock`), longAgo, longAgo);

    const started = Date.now();
    expect(await store.create(stale, newRecord())).toBe(true);
    expect(await store.create(empty, newRecord())).toBe(true);
    expect(Date.now() - started).toBeLessThan(500);
    expect(readdirSync(dir).sort()).toEqual(
      [`satchel-${empty}`, `satchel-${stale}`, indexName('user-42')].sort(),
    );
    await store.close();
  });

  it('waits while another process holds the lock, then writes', async () => {
    const dir = folder();
    const store = fileStore({ dir });
    const key = newKey();
    await store.create(key, newRecord());
    const lockFile = join(dir, `satchel-${key}.lock`);
    await writeFile(lockFile, JSON.stringify({ token: 'other', expiresAt: Date.now() + 60_000 }));
    const started = Date.now();
    const update = store.update(key, newRecord({ version: 2 }), 1);
    await sleep(100);
    await rm(lockFile);
    expect(await update).toBe('ok');
    expect(Date.now() - started).toBeGreaterThanOrEqual(100);
    await store.close();
  });

  it('gives up with StoreUnavailableError when the lock is never released', async () => {
    const dir = folder();
    const store = fileStore({ dir, lockTtlMs: 50 });
    const key = newKey();
    await writeFile(
      join(dir, `satchel-${key}.lock`),
      JSON.stringify({ token: 'stuck', expiresAt: Date.now() + 60_000 }),
    );
    await expect(store.create(key, newRecord())).rejects.toMatchObject({
      code: 'ERR_SATCHEL_STORE_UNAVAILABLE',
      message: '[satchel] [file] could not lock a session file within 100 ms',
    });
    await store.close();
  });

  it('shares records and locks with another store on the same folder', async () => {
    const dir = folder();
    const stores: SessionStore[] = [fileStore({ dir }), fileStore({ dir }), fileStore({ dir })];
    const key = newKey();
    await stores[0]!.create(key, newRecord({ version: 0, data: '0' }));
    // Separate instances share no in-process mutex: only the lock file serializes them.
    const increment = async (store: SessionStore) => {
      for (;;) {
        const current = (await store.get(key))!;
        const next = {
          ...current,
          version: current.version + 1,
          data: `${Number(current.data) + 1}`,
        };
        if ((await store.update(key, next, current.version)) === 'ok') return;
      }
    };
    await Promise.all(Array.from({ length: 30 }, (_, i) => increment(stores[i % 3]!)));
    expect(await stores[1]!.get(key)).toMatchObject({ version: 30, data: '30' });
    expect(await stores[0]!.lock!(key, 'a', 10_000)).toBe(true);
    expect(await stores[2]!.lock!(key, 'b', 10_000)).toBe(false);
    for (const store of stores) await store.close();
  });

  it('wraps unexpected file system errors in StoreUnavailableError', async () => {
    const dir = folder();
    const store = fileStore({ dir });
    const key = newKey();
    // A folder where the session file should be: reading it fails with EISDIR.
    mkdirSync(join(dir, `satchel-${key}`));
    const error = await store.get(key).catch((err: unknown) => err);
    expect(error).toMatchObject({ code: 'ERR_SATCHEL_STORE_UNAVAILABLE', store: 'file' });
    expect((error as Error).message).toMatch(/^\[satchel\] \[file\] get failed: /);
    expect((error as Error).cause).toMatchObject({ code: 'EISDIR' });
    await store.close();
  });

  it('creates its folder and any missing parents', async () => {
    const dir = join(folder(), 'a', 'b', 'sessions');
    const store = fileStore({ dir });
    expect(statSync(dir).isDirectory()).toBe(true);
    const key = newKey();
    await store.create(key, newRecord());
    expect(await store.get(key)).toBeDefined();
    await store.close();
  });

  it('refuses, at creation, a folder it cannot create', async () => {
    const file = join(folder(), 'plain-file');
    await writeFile(file, '');
    expect(() => fileStore({ dir: file })).toThrowError(
      `[satchel] file store: cannot use dir ${JSON.stringify(file)}: not a folder`,
    );
    expect(() => fileStore({ dir: join(file, 'sessions') })).toThrowError(
      /^\[satchel\] file store: cannot use dir ".*": ENOTDIR/,
    );
  });

  it.runIf(existsSync('/proc/self'))('refuses a folder under /proc without hanging', () => {
    expect(() => fileStore({ dir: '/proc/satchel-nope' })).toThrowError(
      /^\[satchel\] file store: cannot use dir "\/proc\/satchel-nope": ENOENT/,
    );
  });

  it('refuses a prefix or lockTtlMs that is not safe', () => {
    const dir = folder();
    for (const prefix of ['', '../x', 'a/b', 'x'.repeat(65), 'a b']) {
      expect(() => fileStore({ dir, prefix })).toThrowError(
        `[satchel] file store: prefix must match /^[A-Za-z0-9_.-]{1,64}$/; got ${JSON.stringify(prefix)}`,
      );
    }
    expect(() => fileStore({ dir, lockTtlMs: 0 })).toThrowError(
      '[satchel] file store: lockTtlMs must be a positive integer; got 0',
    );
  });
});
