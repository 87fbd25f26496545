/**
 * Which running files hold approved code they cannot be judged by (src/attribution/builds.ts): read
 * from real files on disk, as verify() and the boot check read them.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ownedFiles, unjudgedBuilds } from '../src/attribution/builds.js';

const root = mkdtempSync(join(tmpdir(), 'tripwire-builds-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
mkdirSync(join(root, 'src/auth'), { recursive: true });
mkdirSync(join(root, 'dist'), { recursive: true });
writeFileSync(join(root, 'src/auth/tokens.js'), 'export const issue = () => {};\n');
const owned = ownedFiles(['src/auth/**'], root);

function running(name: string, text: string): string {
  const file = join(root, 'dist', name);
  writeFileSync(file, text);
  return file;
}

describe('a running file that holds approved code', () => {
  it('a webpack bundle (module ids in development mode), without a source map', () => {
    const file = running('webpack.js', '/***/ "./src/auth/tokens.js":\n/*!*** ./src/auth/tokens.js ***!*/\n(() => {});\n');
    expect(unjudgedBuilds([file], owned, root)).toEqual([
      expect.stringMatching(/^dist\/webpack\.js is a bundle of .*\(src\/auth\/tokens\.js\)/),
    ]);
  });

  it('an esbuild bundle, its markers relative to the folder it ran in', () => {
    const file = running('esbuild.js', '// app/src/auth/tokens.js\nvar issue = () => {};\n');
    expect(unjudgedBuilds([file], owned, root)).toHaveLength(1);
  });

  it('a generated file with an inline map naming the approved source, maps not enabled', () => {
    const map = Buffer.from(JSON.stringify({ version: 3, sources: ['../src/auth/tokens.js'], mappings: 'AAAA' })).toString('base64');
    const file = running('mapped.js', `var issue = () => {};\n//# sourceMappingURL=data:application/json;base64,${map}\n`);
    expect(unjudgedBuilds([file], owned, root)).toEqual([expect.stringMatching(/carries a source map, but source maps are not enabled/)]);
  });

  it('not a plain module that imports the approved one, nor a compiled file of other sources, nor an approved file itself', () => {
    const importer = running('plain.js', "import { issue } from '../src/auth/tokens.js';\n// src/auth/tokens.js is the auth module\n");
    const map = Buffer.from(JSON.stringify({ version: 3, sources: ['../src/legacy.ts'], mappings: 'AAAA' })).toString('base64');
    const compiled = running('legacy.js', `var x = 1;\n//# sourceMappingURL=data:application/json;base64,${map}\n`);
    expect(unjudgedBuilds([importer, compiled, join(root, 'src/auth/tokens.js')], owned, root)).toEqual([]);
  });
});
