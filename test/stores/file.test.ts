import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { basename, join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { SessionStore } from '../../src/store.js';
import { fileStore } from '../../src/stores/file.js';
import { tempFolders } from '../support/folders.js';
import { describeStore, newKey, newRecord } from './conformance.js';

const { root, folder } = tempFolders('store-test-file-');

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
    const warnings: string[] = [];
    const store = fileStore({ dir, logger: { warn: (message) => warnings.push(message) } });
    const key = newKey();
    // A folder where the session file should be: it reads as absent (and is
    // logged), and writing over it fails with EISDIR.
    mkdirSync(join(dir, `satchel-${key}`));
    expect(await store.get(key)).toBeUndefined();
    expect(warnings).toEqual([
      `[satchel] [file] ignored ${join(dir, `satchel-${key}`)}: it is not a regular file`,
    ]);
    const error = await store.create(key, newRecord()).catch((err: unknown) => err);
    expect(error).toMatchObject({ code: 'ERR_SATCHEL_STORE_UNAVAILABLE', store: 'file' });
    expect((error as Error).message).toMatch(/^\[satchel\] \[file\] create failed: /);
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

describe('file store in hostile places', () => {
  const isRoot = process.getuid?.() === 0;
  const posix = process.platform !== 'win32';
  /** Another user's uid: nobody. Only root can give a file away, so those cases need root. */
  const NOBODY = 65534;

  /** A folder anyone may write to, with the sticky bit, as /tmp. */
  function sharedFolder(): string {
    const dir = folder();
    chmodSync(dir, 0o1777);
    return dir;
  }

  function quietStore(options: Parameters<typeof fileStore>[0] = {}) {
    const warnings: string[] = [];
    const store = fileStore({ ...options, logger: { warn: (message) => warnings.push(message) } });
    return { store, warnings };
  }

  /** What the store would write for `record`: a well-formed session file. */
  function recordText(record: ReturnType<typeof newRecord>): string {
    return `satchel1 ${record.expiresAt} ${record.version} ${record.createdAt}\n${JSON.stringify({ data: record.data, owner: record.owner })}`;
  }

  it.runIf(posix)('keeps records in a private 0700 subfolder inside a shared folder', async () => {
    const dir = sharedFolder();
    const store = fileStore({ dir });
    const key = newKey();
    await store.create(key, newRecord());
    const own = join(dir, `satchel-sessions-${process.getuid!()}`);
    expect(readdirSync(dir)).toEqual([basename(own)]);
    expect(statSync(own).mode & 0o7777).toBe(0o700);
    expect(readdirSync(own)).toContain(`satchel-${key}`);
    await store.close();
    // A second store (another process) finds the same folder and the record.
    const again = fileStore({ dir });
    expect(await again.get(key)).toBeDefined();
    await again.close();
  });

  it.runIf(posix)('refuses a private folder with a wider mode', () => {
    const dir = sharedFolder();
    const own = join(dir, `satchel-sessions-${process.getuid!()}`);
    mkdirSync(own);
    chmodSync(own, 0o755);
    expect(() => fileStore({ dir })).toThrowError(
      `[satchel] file store: refusing the private folder ${JSON.stringify(own)} (dir ${JSON.stringify(dir)} is shared, so sessions are kept in a folder of this user's inside it): its mode is 0755, wider than 0700; run chmod 700 on it, or remove it`,
    );
  });

  it.runIf(posix && isRoot)('refuses a private folder created by another user', () => {
    const dir = sharedFolder();
    const own = join(dir, `satchel-sessions-${process.getuid!()}`);
    mkdirSync(own, { mode: 0o700 });
    chownSync(own, NOBODY, NOBODY);
    expect(() => fileStore({ dir })).toThrowError(
      new RegExp(`private folder .* it is owned by uid ${NOBODY}, not this process's uid 0`),
    );
  });

  it.runIf(posix)('refuses a world-writable folder without the sticky bit', () => {
    const dir = folder();
    chmodSync(dir, 0o777);
    expect(() => fileStore({ dir })).toThrowError(
      `[satchel] file store: refusing dir ${JSON.stringify(dir)}: it is world-writable without the sticky bit, so any user could replace its contents; use a folder of your own, or chmod +t it`,
    );
  });

  it.runIf(posix)('refuses a private folder that is a symlink planted in the shared folder', () => {
    const dir = sharedFolder();
    const elsewhere = folder();
    chmodSync(elsewhere, 0o700);
    symlinkSync(elsewhere, join(dir, `satchel-sessions-${process.getuid!()}`));
    expect(() => fileStore({ dir })).toThrowError(/it is not a folder \(a symlink or file\)/);
  });

  it.runIf(posix && isRoot)('does not adopt a session record planted by another user', async () => {
    const dir = folder();
    const { store, warnings } = quietStore({ dir });
    const key = newKey();
    const planted = newRecord({ owner: 'admin' });
    const path = join(dir, `satchel-${key}`);
    await writeFile(path, recordText(planted), { mode: 0o600 });
    chownSync(path, NOBODY, NOBODY);
    // An index naming the planted key, planted too.
    const index = join(dir, indexName('admin'));
    await writeFile(index, indexText('admin', [key]));
    chownSync(index, NOBODY, NOBODY);

    expect(await store.get(key)).toBeUndefined();
    expect(await store.listByOwner!('admin')).toEqual([]);
    expect(await store.update(key, newRecord({ version: 2 }), planted.version)).toBe('missing');
    expect(warnings).toContain(
      `[satchel] [file] ignored ${path}: it is owned by uid ${NOBODY}, not 0`,
    );
    // The store's own write replaces it.
    expect(await store.create(key, newRecord())).toBe(true);
    expect(statSync(path).uid).toBe(0);
    expect((await store.get(key))?.owner).toBe('user-42');
    await store.close();
  });

  it.runIf(posix)('does not follow a symlink planted in the folder', async () => {
    const dir = folder();
    const outside = folder();
    const { store, warnings } = quietStore({ dir });
    const key = newKey();
    // A well-formed record of this user's, outside the folder, linked in.
    const target = join(outside, 'record');
    await writeFile(target, recordText(newRecord({ owner: 'admin' })));
    symlinkSync(target, join(dir, `satchel-${key}`));
    // A lock file linked to a file that must survive.
    const victim = join(outside, 'victim');
    await writeFile(victim, 'keep me');
    symlinkSync(victim, join(dir, `satchel-${key}.lock`));

    expect(await store.get(key)).toBeUndefined();
    expect(warnings[0]).toBe(
      `[satchel] [file] ignored ${join(dir, `satchel-${key}`)}: it is a symbolic link`,
    );
    // The planted lock is broken, not followed: create succeeds at once.
    expect(await store.create(key, newRecord())).toBe(true);
    expect(lstatSync(join(dir, `satchel-${key}`)).isFile()).toBe(true);
    expect(await readFile(victim, 'utf8')).toBe('keep me');
    expect(await readFile(target, 'utf8')).toContain('admin');
    await store.close();
  });

  it.runIf(posix)('does not hang on a FIFO named like a session file', async () => {
    const dir = folder();
    const { store, warnings } = quietStore({ dir, lockTtlMs: 1_000 });
    // More FIFOs than libuv has threads (4): a blocking open would park them all.
    const keys = Array.from({ length: 6 }, newKey);
    for (const key of keys) {
      for (const suffix of ['', '.lock', '.applock']) {
        execFileSync('mkfifo', [join(dir, `satchel-${key}${suffix}`)]);
      }
    }
    const started = Date.now();
    expect(await Promise.all(keys.map((key) => store.get(key)))).toEqual(keys.map(() => undefined));
    expect(await store.lock!(keys[0]!, 'token', 60_000)).toBe(true);
    expect(await store.clearExpired(Date.now())).toBe(0);
    // A FIFO in place of the lock file is broken like a stale lock.
    expect(await store.create(keys[1]!, newRecord())).toBe(true);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(warnings.some((w) => w.endsWith('it is not a regular file'))).toBe(true);
    await store.close();
  });

  it('does not read a file above maxFileBytes', async () => {
    const dir = folder();
    const { store, warnings } = quietStore({ dir, maxFileBytes: 1_024 });
    const key = newKey();
    await store.create(key, newRecord({ data: 'x'.repeat(2_000) }));
    expect(await store.get(key)).toBeUndefined();
    expect(warnings).toEqual([
      expect.stringMatching(/: it is larger than maxFileBytes \(\d+ > 1024\)$/),
    ]);
    await store.close();
  });

  it('logs each refused file once', async () => {
    const dir = folder();
    const { store, warnings } = quietStore({ dir });
    const key = newKey();
    mkdirSync(join(dir, `satchel-${key}`));
    for (let i = 0; i < 3; i++) expect(await store.get(key)).toBeUndefined();
    expect(warnings).toHaveLength(1);
    await store.close();
  });

  it('with createDir false, refuses a folder that does not exist and creates nothing', () => {
    const dir = join(folder(), 'typo');
    expect(() => fileStore({ dir, createDir: false })).toThrowError(
      `[satchel] file store: the folder ${JSON.stringify(dir)} does not exist`,
    );
    expect(existsSync(dir)).toBe(false);
  });
});

describe('file store options', () => {
  it('refuses an unknown option key with a did-you-mean', () => {
    expect(() => fileStore({ dir: folder(), lockTTLMs: 5 } as never)).toThrowError(
      '[satchel] file store: unknown option "lockTTLMs": did you mean "lockTtlMs"?',
    );
    expect(() => fileStore({ path: folder() } as never)).toThrowError(
      /^\[satchel\] file store: unknown option "path": known options: dir, prefix/,
    );
  });

  it('reports clearExpired progress with the running count', async () => {
    const dir = folder();
    const store = fileStore({ dir });
    const now = Date.now();
    const keys = Array.from({ length: 600 }, newKey);
    for (const key of keys)
      await store.create(key, newRecord({ expiresAt: now - 1, owner: undefined }));
    const seen: number[] = [];
    const removed = await store.clearExpired(now, {
      onProgress: ({ removed }) => seen.push(removed),
    });
    expect(removed).toBe(600);
    // Every 256 files examined, then once at the end.
    expect(seen.length).toBe(3);
    expect(seen.at(-1)).toBe(600);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    await store.close();
  });
});
