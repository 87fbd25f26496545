/**
 * jest, as its users run it: a real jest project (test/fixtures/jest, copied to a temp dir with this
 * package and the tools linked into its node_modules) under ts-jest in jest's default CommonJS mode and
 * in its ESM mode, and under babel-jest. jest runs every test file in a `vm` context with a `require`
 * of its own (the package must load as CommonJS there) and maps positions back in the main realm's
 * `Error.prepareStackTrace` only. The project's own test asserts the lines of the refusals; here each
 * mode must pass and print them.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const projectRoot = fileURLToPath(new URL('../', import.meta.url));
const fixture = fileURLToPath(new URL('./fixtures/jest/', import.meta.url));
const LINKED = ['mongoose', 'jest', 'ts-jest', 'typescript', '@jest', '@babel', '@types'];
let dir: string;

function run(args: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: dir, env: { ...process.env, MONGODB_URI: inject('mongodbUri'), ...env }, timeout: 150_000 },
      (error, stdout, stderr) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, out: `${stdout}\n${stderr}` }),
    );
  });
}

const siteLine = (file: string, name: string): number =>
  readFileSync(join(fixture, file), 'utf8')
    .split('\n')
    .findIndex((line) => line.trimEnd().endsWith(`// @site ${name}`)) + 1;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tripwire-jest-'));
  cpSync(fixture, dir, { recursive: true });
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(projectRoot, join(dir, 'node_modules', 'mongoose-tripwire'));
  for (const name of LINKED) symlinkSync(join(projectRoot, 'node_modules', name), join(dir, 'node_modules', name));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'jest-consumer', private: true }));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MODES = [
  { mode: 'ts-jest', config: 'jest.ts-jest.config.cjs', node: [] },
  { mode: 'ts-jest-esm', config: 'jest.ts-jest-esm.config.cjs', node: ['--experimental-vm-modules'] },
  { mode: 'babel-jest', config: 'jest.babel.config.cjs', node: [] },
];

describe('a jest project', () => {
  it.each(MODES)(
    '$mode: loads the package, approves the auth module, refuses the others at the lines written',
    async ({ mode, config, node }) => {
      const jest = join(projectRoot, 'node_modules/jest/bin/jest.js');
      const result = await run([...node, jest, '--config', config, '--ci', '--no-cache'], { JEST_MODE: mode });
      expect(result.code, result.out).toBe(0);
      const legacy = `src/legacy/login\\.ts:${siteLine('src/legacy/login.ts', 'legacy.updateOne')}:\\d+`;
      const inTest = `test/tokens\\.test\\.ts:${siteLine('test/tokens.test.ts', 'test.deleteOne')}:\\d+`;
      expect(result.out).toMatch(new RegExp(`JEST ${mode} ${legacy} ${inTest}`));
    },
    180_000,
  );
});
