/**
 * Right lines where users run code. A consumer project (test/fixtures/consumer, copied to a temp dir
 * with this package, Mongoose, vitest and tsx linked into its node_modules) runs:
 * - its own vitest suite with examples/throw-mode/setup.mjs: vitest transforms the modules and maps
 *   positions in its own Error.prepareStackTrace, for a plain .mjs and a .ts rogue file;
 * - the same files under tsx (Node's source maps) and the .mjs under node --enable-source-maps.
 * Each must name the line the user wrote, and RogueWriteError's stack must start there.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const projectRoot = fileURLToPath(new URL('../', import.meta.url));
const fixture = fileURLToPath(new URL('./fixtures/consumer/', import.meta.url));
let dir: string;

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: dir, env: { ...process.env, MONGODB_URI: inject('mongodbUri'), ...env }, timeout: 90_000 },
      (error, stdout, stderr) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, out: `${stdout}\n${stderr}` }),
    );
  });
}
const line = (file: string, name: string) =>
  readFileSync(join(fixture, file), 'utf8')
    .split('\n')
    .findIndex((l) => l.trimEnd().endsWith(`// @site ${name}`)) + 1;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tripwire-consumer-'));
  cpSync(fixture, dir, { recursive: true });
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(projectRoot, join(dir, 'node_modules', 'mongoose-tripwire'));
  for (const name of ['mongoose', 'vitest', 'tsx']) symlinkSync(join(projectRoot, 'node_modules', name), join(dir, 'node_modules', name));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  cpSync(join(projectRoot, 'examples/throw-mode/setup.mjs'), join(dir, 'tripwire-setup.mjs'));
  writeFileSync(
    join(dir, 'vitest.config.mjs'),
    "export default { test: { include: ['*.spec.mjs'], setupFiles: ['./tripwire-setup.mjs'] } };\n",
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a consumer project', () => {
  it('under vitest (transformed modules), a rogue write fails the test at the line written, .mjs and .ts alike', async () => {
    const result = await run([join(projectRoot, 'node_modules/vitest/vitest.mjs'), 'run'], {
      TRIPWIRE_APPROVED: 'src/auth/**',
      TRIPWIRE_ROOT: dir,
    });
    expect(result.code, result.out).toBe(0);
    expect(result.out).toMatch(new RegExp(`CONSUMER \\.mjs src/legacy/admin\\.mjs:${line('src/legacy/admin.mjs', 'admin.revokeAll')}:`));
    expect(result.out).toMatch(new RegExp(`CONSUMER \\.ts src/legacy/admin\\.ts:${line('src/legacy/admin.ts', 'admin.revokeTs')}:`));
  }, 120_000);

  it('under tsx and node --enable-source-maps, the same files are reported at the same lines', async () => {
    const mjs = `src/legacy/admin.mjs:${line('src/legacy/admin.mjs', 'admin.revokeAll')}`;
    const ts = `src/legacy/admin.ts:${line('src/legacy/admin.ts', 'admin.revokeTs')}`;
    const tsx = await run(['--import', 'tsx', 'run.mjs', 'mjs', 'ts']);
    expect(tsx.code, tsx.out).toBe(0);
    expect(
      JSON.parse(
        tsx.out
          .trim()
          .split('\n')
          .find((l) => l.startsWith('['))!,
      ).map((l: string) => l.replace(/:\d+$/, '')),
    ).toEqual([mjs, ts]);
    const maps = await run(['--enable-source-maps', 'run.mjs', 'mjs']);
    expect(maps.code, maps.out).toBe(0);
    expect(
      JSON.parse(
        maps.out
          .trim()
          .split('\n')
          .find((l) => l.startsWith('['))!,
      ).map((l: string) => l.replace(/:\d+$/, '')),
    ).toEqual([mjs]);
  }, 120_000);
});
