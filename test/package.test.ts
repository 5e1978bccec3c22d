/**
 * What `npm pack` ships, checked on the built package (`npm run build`, which
 * `npm test` runs first; this file builds once itself when dist/ is missing).
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../', import.meta.url));

interface PackedFile {
  path: string;
  mode: number;
}

let packed: PackedFile[];
let pkg: {
  license: string;
  bin: Record<string, string>;
  files: string[];
  version: string;
  exports: Record<string, string | { types: string; default: string }>;
};

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist', 'index.js'))) {
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    await run(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: ROOT });
  }
  // --ignore-scripts: no prepack rebuild while other test files read dist/.
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: ROOT,
    maxBuffer: 16 * 1024 * 1024,
  });
  packed = (JSON.parse(stdout) as { files: PackedFile[] }[])[0]!.files;
  pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8'));
}, 120_000);

describe('the packed package', () => {
  it('ships the MIT LICENSE that package.json names', async () => {
    expect(pkg.license).toBe('MIT');
    expect(packed.map((f) => f.path)).toContain('LICENSE');
    const text = await readFile(join(ROOT, 'LICENSE'), 'utf8');
    expect(text).toMatch(/^MIT License\n\nCopyright \(c\) 2026 the satchel authors\n/);
  });

  it('ships no source map that points at sources it does not ship', async () => {
    const maps = packed.filter((f) => f.path.endsWith('.map'));
    const shipped = new Set(packed.map((f) => f.path));
    for (const map of maps) {
      const json = JSON.parse(await readFile(join(ROOT, map.path), 'utf8')) as {
        sources: string[];
        sourcesContent?: (string | null)[];
      };
      for (const [i, source] of json.sources.entries()) {
        const resolved = join(map.path, '..', source);
        // A map is usable when each source is inlined or shipped beside it.
        const content = json.sourcesContent?.[i];
        expect(
          typeof content === 'string' || shipped.has(resolved),
          `${map.path} → ${source}`,
        ).toBe(true);
      }
    }
  });

  it('ships the entry point of every export and the satchel bin, executable', async () => {
    const paths = new Set(packed.map((f) => f.path));
    const bin = pkg.bin.satchel!.replace(/^\.\//, '');
    expect(paths).toContain(bin);
    const binFile = packed.find((f) => f.path === bin)!;
    expect(binFile.mode & 0o111, 'bin is executable in the tarball').not.toBe(0);
    expect(await readFile(join(ROOT, bin), 'utf8')).toMatch(/^#!\/usr\/bin\/env node\n/);
    for (const [subpath, target] of Object.entries(pkg.exports)) {
      const files = typeof target === 'string' ? [target] : [target.types, target.default];
      for (const file of files) expect(paths, subpath).toContain(file.replace(/^\.\//, ''));
    }
  });

  it('ships no tests, examples, tarballs or databases', () => {
    const stray = packed
      .map((f) => f.path)
      .filter((p) => /^(test|examples|bench|src)\/|\.tgz$|\.db(-wal|-shm)?$/.test(p));
    expect(stray).toEqual([]);
  });
});

describe('the published package', () => {
  it('resolves every subpath export from the built dist/ (npm run build first)', () => {
    const subpaths = Object.keys(pkg.exports).filter((p) => p !== './package.json');
    const script = `
      const names = ${JSON.stringify(subpaths.map((p) => `satchel${p.slice(1)}`))};
      const out = {};
      for (const name of names) out[name] = Object.keys(await import(name)).sort();
      console.log(JSON.stringify(out));
    `;
    const out = JSON.parse(
      execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }),
    ) as Record<string, string[]>;
    expect(out.satchel).toEqual(
      expect.arrayContaining(['createSessions', 'Session', 'SatchelError']),
    );
    expect(out['satchel/express']).toContain('session');
    expect(out['satchel/node']).toContain('withSessions');
    expect(out['satchel/stores/sqlite']).toContain('sqliteStore');
    for (const name of Object.keys(out)) expect(out[name]!.length, name).toBeGreaterThan(0);
  });
});

describe('running the CLI inside the repository', () => {
  it('`npx satchel` runs the built CLI after npm run build', async () => {
    const { stdout } = await run('npx', ['--no-install', 'satchel', '--version'], {
      cwd: ROOT,
      timeout: 60_000,
    });
    expect(stdout.trim()).toBe(
      JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')).version,
    );
  }, 70_000);

  it('`node dist/cli/index.js` is the same command', async () => {
    const { stdout } = await run(process.execPath, ['dist/cli/index.js', 'keygen'], { cwd: ROOT });
    expect(stdout).toMatch(/^[A-Za-z0-9_-]{43}\n$/);
  });
});
