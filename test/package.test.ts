import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  exports: Record<string, unknown>;
};

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
