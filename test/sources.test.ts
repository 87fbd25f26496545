/**
 * verify() and approved files that are not what runs: `approved: ['src/auth/**']` matching `.ts`
 * sources while the process runs the compiled JavaScript without source maps (every approved write
 * would be reported as rogue). Each case is a real `node` process running the built package.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { close } from '../src/index.js';
import { tripwire } from '../src/plugin.js';
import { verify } from '../src/verify.js';

const projectRoot = fileURLToPath(new URL('../', import.meta.url));
let app: string;

interface Outcome {
  ok: boolean;
  problems: string[];
}

beforeAll(() => {
  app = mkdtempSync(join(tmpdir(), 'tripwire-sources-'));
  const files: Record<string, string> = {
    'src/auth/tokens.ts': 'export const issue = (): number => 1;\n',
    'src/auth/README.md': 'not code\n',
    'src/mixed/helper.ts': 'export {};\n',
    'src/mixed/legacy.js': 'export {};\n',
    'dist/auth/tokens.js': 'export const issue = () => 1;\n',
    'lib/other/client.js': 'export {};\n',
  };
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(join(app, file, '..'), { recursive: true });
    writeFileSync(join(app, file), text);
  }
  const script = `
    import mongoose from ${JSON.stringify(pathToFileURL(join(projectRoot, 'node_modules/mongoose/index.js')).href)};
    import { tripwire, verify, close } from ${JSON.stringify(pathToFileURL(join(projectRoot, 'dist/index.js')).href)};
    const approved = JSON.parse(process.env.APPROVED);
    if (process.env.WITH_FUNCTION) approved.push((frame) => frame.file.endsWith('/dist/auth/tokens.js'));
    const schema = new mongoose.Schema({ token: String });
    schema.plugin(tripwire, { approved, root: ${JSON.stringify(app)}, statsd: false, onError: () => undefined });
    mongoose.model('AccessToken', schema);
    const { ok, problems } = verify();
    console.log(JSON.stringify({ ok, problems }));
    await close();
  `;
  writeFileSync(join(app, 'verify.mjs'), script);
  writeFileSync(join(app, 'verify.mts'), `${script.replace('(frame) =>', '(frame: { file: string }) =>')}\nexport {};\n`);
});

afterAll(async () => {
  await close();
  if (app) rmSync(app, { recursive: true, force: true });
});

function verifyIn(
  approved: string[],
  { flags = [], entry = 'verify.mjs', env = {} }: { flags?: string[]; entry?: string; env?: Record<string, string> } = {},
): Promise<Outcome> {
  const inherited: NodeJS.ProcessEnv = { ...process.env };
  delete inherited.NODE_OPTIONS; // whatever the test runner put there is not the app's
  const environment: NodeJS.ProcessEnv = { ...inherited, APPROVED: JSON.stringify(approved), ...env };
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [...flags, entry], { cwd: app, env: environment, timeout: 45_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${error.message}\n${stdout}\n${stderr}`));
      else resolve(JSON.parse(stdout) as Outcome);
    });
  });
}

const NOT_RUN =
  /approved pattern src\/auth\/\*\* matches only TypeScript sources \(1 file\), but nothing says this process runs TypeScript/;

describe('verify(): approved TypeScript sources that are not what runs', () => {
  it('warns when a pattern matches only .ts sources and the process runs compiled JavaScript without source maps', async () => {
    const result = await verifyIn(['src/auth/**']);
    expect(result.ok).toBe(false);
    expect(result.problems).toHaveLength(1);
    expect(result.problems[0]).toMatch(NOT_RUN);
    expect(result.problems[0]).toMatch(/--enable-source-maps/);
  });

  it('warns also when another pattern approves JavaScript that is not the compiled sources', async () => {
    const result = await verifyIn(['src/auth/**', 'lib/other/**']);
    expect(result.problems).toEqual([expect.stringMatching(NOT_RUN)]);
  });

  it('is ok with source maps on (flag or NODE_OPTIONS): the frames name the .ts sources', async () => {
    expect(await verifyIn(['src/auth/**'], { flags: ['--enable-source-maps'] })).toEqual({ ok: true, problems: [] });
    expect(await verifyIn(['src/auth/**'], { env: { NODE_OPTIONS: '--enable-source-maps' } })).toEqual({ ok: true, problems: [] });
  });

  it('is ok when the process runs TypeScript through a loader (tsx)', async () => {
    const tsx = pathToFileURL(join(projectRoot, 'node_modules/tsx/dist/loader.mjs')).href;
    expect(await verifyIn(['src/auth/**'], { flags: ['--import', tsx], entry: 'verify.mts' })).toEqual({ ok: true, problems: [] });
  });

  it(
    'is ok when the compiled files are approved too, when a pattern matches JavaScript as well, or when a function may approve any ' +
      'frame',
    async () => {
      expect(await verifyIn(['src/auth/**', 'dist/auth/**'])).toEqual({ ok: true, problems: [] });
      expect(await verifyIn(['src/mixed/**'])).toEqual({ ok: true, problems: [] });
      expect(await verifyIn(['src/auth/**'], { env: { WITH_FUNCTION: '1' } })).toEqual({ ok: true, problems: [] });
    },
  );

  it('is ok under a test runner that runs the .ts files (this vitest process)', () => {
    const schema = new mongoose.Schema({ token: String });
    schema.plugin(tripwire, { approved: ['src/auth/**'], root: app, statsd: false, onError: () => undefined });
    mongoose.model('SourcesToken', schema);
    expect(verify()).toMatchObject({ ok: true, problems: [] });
  });
});
