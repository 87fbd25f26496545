/**
 * `audit` reads the project's own compiler settings: an import through a `paths` alias names the
 * model's declaration only with the project's tsconfig (without it, every write through the alias
 * was missed and `audit --check` passed). The built bin in a child process, on a project in a temp dir.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const projectRoot = process.cwd();
const bin = join(projectRoot, 'dist', 'cli', 'main.js');
let app: string;

function write(file: string, text: string): void {
  mkdirSync(join(app, file, '..'), { recursive: true });
  writeFileSync(join(app, file), text);
}

beforeAll(() => {
  app = mkdtempSync(join(tmpdir(), 'tripwire-audit-tsconfig-'));
  mkdirSync(join(app, 'node_modules'));
  for (const name of ['mongoose', 'typescript']) symlinkSync(join(projectRoot, 'node_modules', name), join(app, 'node_modules', name));
  write('package.json', JSON.stringify({ name: 'alias-app', private: true, type: 'module' }));
  write(
    'config/tsconfig.base.json',
    JSON.stringify({
      compilerOptions: {
        strict: true,
        module: 'esnext',
        moduleResolution: 'bundler',
        baseUrl: '..',
        paths: { '@models/*': ['src/models/*'] },
      },
    }),
  );
  write('tsconfig.json', JSON.stringify({ extends: './config/tsconfig.base.json', include: ['src'] }));
  write(
    'src/models/token.ts',
    [
      "import mongoose from 'mongoose';",
      '',
      "export const AccessToken = mongoose.model('AccessToken', new mongoose.Schema({ token: String }));",
      '',
    ].join('\n'),
  );
  write(
    'src/legacy/refresh.ts',
    [
      "import { AccessToken } from '@models/token';",
      '',
      'export async function refresh(id: string) {',
      "  await AccessToken.updateOne({ _id: id }, { $set: { token: 'x' } });",
      '  const doc = await AccessToken.findById(id);',
      '  if (doc) {',
      "    doc.token = 'y';",
      '    await doc.save();',
      '  }',
      '}',
      '',
    ].join('\n'),
  );
});
afterAll(() => rmSync(app, { recursive: true, force: true }));

const audit = async (args: string[]) => {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, 'audit', '--model', 'AccessToken', '--approved', 'src/auth/**', ...args], {
      cwd: app,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
};

describe('audit with the project’s tsconfig', () => {
  it('finds the writes made through a paths alias (tsconfig.json in the current directory, extends followed)', async () => {
    const result = await audit(['--json', 'src']);
    expect(result.code, result.stderr).toBe(0);
    const { sites } = JSON.parse(result.stdout) as { sites: Array<{ file: string; line: number; operation: string; status: string }> };
    expect(sites.map((s) => `${s.operation} ${s.file}:${s.line} ${s.status}`)).toEqual([
      'updateOne src/legacy/refresh.ts:4 unseen',
      'save src/legacy/refresh.ts:8 unseen',
    ]);
    expect(await audit(['--check', 'src'])).toMatchObject({ code: 1 });
  });

  it('says which settings it read', async () => {
    expect((await audit(['src'])).stdout).toContain('2 file(s) read with tsconfig.json;');
  });

  it('--tsconfig that does not exist, or does not parse, is exit 2 naming the file', async () => {
    expect(await audit(['--tsconfig', 'nope.json', 'src'])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--tsconfig nope.json does not exist'),
    });
    write('broken.json', '{ "compilerOptions": ');
    expect(await audit(['--tsconfig', 'broken.json', 'src'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/broken\.json: /) });
  });
});
