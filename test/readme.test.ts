/**
 * Every code block in README.md is tested. A TypeScript block is a file
 * under examples/readme/ (`<!-- file: … -->`, kept in sync by `npm run
 * readme:sync`) or an excerpt of one (`<!-- excerpt: … -->`); those files are
 * type-checked under strict by `npm run typecheck` (examples/readme/tsconfig.json)
 * and the servers among them are started here, on a free port, and asked
 * for the cart. A shell block may only name npm scripts and satchel commands
 * that exist.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isExcerptOf, readmeBlocks } from '../examples/readme/blocks.js';
import { freePort } from './e2e/harness.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const blocks = readmeBlocks(README);
// `--import tsx` resolves from the working folder; the examples run in an empty one.
const TSX = pathToFileURL(join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
const run = promisify(execFile);

describe('README code blocks', () => {
  it('finds the blocks (the parser works)', () => {
    expect(blocks.filter((b) => b.lang === 'ts').length).toBeGreaterThanOrEqual(8);
    expect(blocks.filter((b) => b.lang === 'sh').length).toBeGreaterThanOrEqual(2);
  });

  it('ties every TypeScript or JavaScript block to a file under examples/', () => {
    const loose = blocks
      .filter((b) => /^(ts|tsx|js|mjs|javascript|typescript)$/.test(b.lang) && !b.marker)
      .map((b) => `README.md:${b.line}`);
    expect(loose, 'add <!-- file: examples/… --> or <!-- excerpt: … --> above these').toEqual([]);
  });

  it('shows each example file exactly as it is type-checked and run', () => {
    for (const block of blocks.filter((b) => b.marker?.kind === 'file')) {
      const path = block.marker!.path;
      expect(path.startsWith('examples/'), path).toBe(true);
      expect(block.code, `README.md:${block.line} differs from ${path}: npm run readme:sync`).toBe(
        readFileSync(join(ROOT, path), 'utf8'),
      );
    }
  });

  it('takes every excerpt line from its example file, in order', () => {
    for (const block of blocks.filter((b) => b.marker?.kind === 'excerpt')) {
      const file = readFileSync(join(ROOT, block.marker!.path), 'utf8');
      expect(
        isExcerptOf(block.code, file),
        `README.md:${block.line} in ${block.marker!.path}`,
      ).toBe(true);
    }
  });

  it('names only npm scripts and satchel commands that exist in its shell blocks', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    const commandPaths = new Set<string>();
    for (const block of blocks.filter((b) => b.lang === 'sh')) {
      for (const raw of block.code.split('\n')) {
        const line = raw.replace(/\s+#.*$/, '').trim();
        if (line === '' || line.startsWith('#')) continue;
        for (const part of line.split(/\s*&&\s*/)) {
          // Leading VAR=value assignments set the environment of the command.
          const words = part.split(/\s+/).filter((w) => !/^[A-Z_][A-Z0-9_]*=/.test(w));
          const where = `README.md:${block.line}: ${part}`;
          if (words[0] === 'npm') {
            const [, verb, script] = words;
            if (verb === 'run') expect(pkg.scripts, where).toHaveProperty(script!);
            else if (verb === 'start' || verb === 'test')
              expect(pkg.scripts, where).toHaveProperty(verb);
            else expect(['ci', 'install', 'i'], where).toContain(verb);
            continue;
          }
          const cli = words[0] === 'npx' ? words.slice(1) : words;
          expect(cli[0], `${where}: only npm and satchel are checked; add a check`).toBe('satchel');
          const path = [];
          for (const word of cli.slice(1)) {
            if (!/^[a-z]+$/.test(word)) break;
            path.push(word);
          }
          commandPaths.add(path.join(' '));
        }
      }
    }
    expect(commandPaths.size).toBeGreaterThan(0);
    for (const path of commandPaths) {
      const { stdout } = await run(
        process.execPath,
        ['--import', 'tsx', 'src/cli/index.ts', 'help', ...path.split(' ').filter(Boolean)],
        { cwd: ROOT },
      );
      expect(stdout, path).toMatch(/^Usage: satchel/);
    }
  });
});

interface Started {
  base: string;
  child: ChildProcess;
  output: () => string;
}

/** Starts an example as a user would (`tsx file.ts`), in an empty folder, on a free PORT. */
async function start(file: string, cwd: string): Promise<Started> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', TSX, join(ROOT, file)], {
    cwd,
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
  });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${file} exited ${child.exitCode}:\n${output}`);
    try {
      await fetch(`${base}/`, { signal: AbortSignal.timeout(1_000) });
      return { base, child, output: () => output };
    } catch {
      if (Date.now() > deadline) throw new Error(`${file} did not listen in 20 s:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

async function stop(started: Started): Promise<void> {
  if (started.child.exitCode !== null) return;
  const exited = new Promise((resolve) => started.child.once('exit', resolve));
  started.child.kill('SIGTERM');
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3_000))]);
  if (started.child.exitCode === null) started.child.kill('SIGKILL');
}

/** A browser's cookie jar of one: sends back the session cookie the server last set. */
function browser(base: string) {
  let cookie = '';
  return async (method: string, path: string): Promise<Response> => {
    const response = await fetch(`${base}${path}`, {
      method,
      redirect: 'manual',
      headers: cookie === '' ? {} : { cookie },
    });
    const set = response.headers.getSetCookie().find((c) => c.startsWith('sessionid='));
    if (set !== undefined) cookie = set.split(';')[0]!;
    return response;
  };
}

describe('README examples, started as pasted', () => {
  let cwd: string;
  beforeAll(async () => {
    // The examples import 'satchel' through package.json "exports", i.e. dist/.
    if (!existsSync(join(ROOT, 'dist', 'index.js'))) {
      const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
      await run(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: ROOT });
    }
    cwd = await mkdtemp(join(tmpdir(), 'satchel-readme-'));
  }, 120_000);
  afterAll(async () => {
    await rm(cwd, { recursive: true, force: true });
  });

  const shown = (file: string) =>
    blocks.some((b) => b.marker?.kind === 'file' && b.marker.path === file);

  it.each([
    ['examples/readme/express.ts', 'GET', '/add_to_cart/awesome-item/', '/add_to_cart/%3Cb%3E/'],
    ['examples/readme/node.ts', 'GET', '/add_to_cart/awesome-item/', '/add_to_cart/%3Cb%3E/'],
    ['examples/readme/web-node.ts', 'GET', '/add_to_cart/awesome-item/', '/add_to_cart/%3Cb%3E/'],
    ['examples/readme/fastify.ts', 'POST', '/add_to_cart/awesome-item/', '/add_to_cart/%3Cb%3E/'],
    ['examples/readme/hono.ts', 'POST', '/add_to_cart/awesome-item/', '/add_to_cart/%3Cb%3E/'],
  ])('%s keeps both items a visitor adds to the cart', async (file, method, first, second) => {
    expect(shown(file), `${file} is shown in the README`).toBe(true);
    const server = await start(file, cwd);
    try {
      const visit = browser(server.base);
      let last: Response | undefined;
      for (const path of [first, second]) {
        last = await visit(method, path);
        if (method === 'POST') {
          // Saved before the redirect leaves: the page it points to shows the item.
          expect(last.status, server.output()).toBe(303);
          expect(last.headers.get('location')).toMatch(/\/cart\/$/);
          last = await visit('GET', '/cart/');
        }
        expect(last.status, server.output()).toBe(200);
      }
      const body = await last!.text();
      if (file.endsWith('express.ts')) {
        // The item is escaped, not injected into the page.
        expect(body).toBe('<ul><li>awesome-item</li><li>&#60;b&#62;</li></ul>');
      } else {
        expect(JSON.parse(body)).toEqual(['awesome-item', '<b>']);
      }
    } finally {
      await stop(server);
    }
  });

  it('examples/readme/devices.ts lists the device of a user who logged in', async () => {
    const server = await start('examples/readme/devices.ts', cwd);
    try {
      const visit = browser(server.base);
      const login = await fetch(`${server.base}/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': 'readme' },
        body: 'user=ann',
      });
      expect(login.status, server.output()).toBe(303);
      const cookie = login.headers.getSetCookie().find((c) => c.startsWith('sessionid='))!;
      const devices = await fetch(`${server.base}/devices`, {
        headers: { cookie: cookie.split(';')[0]! },
      });
      expect(devices.status, server.output()).toBe(200);
      expect(await devices.json()).toMatchObject([
        { current: true, device: { userAgent: 'readme' } },
      ]);
      // A visitor without a session is sent to log in.
      expect((await visit('GET', '/devices')).status).toBe(303);
    } finally {
      await stop(server);
    }
  });
});
