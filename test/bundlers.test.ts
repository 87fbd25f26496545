/**
 * webpack and rollup, as apps use them: app code bundled with source maps, mongoose and this package
 * external. Each bundle must be judged exactly as the same app run from its sources (the auth module
 * approved, the repository passed through, the legacy writes at their source lines). webpack names
 * its sources `webpack://<namespace>/./src/...`, which must still mean `src/...` under the app's root.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { rollup } from 'rollup';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import webpack from 'webpack';

const run = promisify(execFile);
const app = fileURLToPath(new URL('./fixtures/bundled-js/', import.meta.url));
const out = join(app, 'out');
const EXTERNAL = ['mongoose', 'mongoose-tripwire'];

interface Result {
  sites: Array<{ operation: string; file: string; line: number; function?: string }>;
  verify: { ok: boolean; problems: string[] };
}

async function runApp(args: string[]): Promise<Result> {
  const { stdout } = await run(process.execPath, args, { cwd: app, env: { ...process.env, APP_ROOT: app }, timeout: 60_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Result;
}

function webpackBuild(filename: string, options: webpack.Configuration): Promise<void> {
  const config: webpack.Configuration = {
    mode: 'development',
    target: 'node20',
    context: app,
    entry: './src/main.js',
    experiments: { outputModule: true },
    output: { path: out, filename, module: true, library: { type: 'module' }, uniqueName: 'token-app' },
    externalsType: 'module',
    externals: EXTERNAL,
    ...options,
  };
  return new Promise((resolve, reject) => {
    webpack(config, (error, stats) => {
      if (error || stats?.hasErrors()) reject(error ?? new Error(stats?.toString()));
      else resolve();
    });
  });
}

beforeAll(async () => {
  await webpackBuild('webpack.mjs', { devtool: 'source-map' });
  const bundle = await rollup({ input: join(app, 'src/main.js'), external: EXTERNAL });
  await bundle.write({ file: join(out, 'rollup.mjs'), format: 'es', sourcemap: true });
  await bundle.close();
}, 60_000);
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('an app bundled by webpack or rollup, with source maps', () => {
  const legacy = join(app, 'src/legacy/login.js');
  const expected = [
    { operation: 'updateOne', file: legacy, line: 4, function: 'legacyLogin' },
    { operation: 'create', file: legacy, line: 5, function: 'legacyLogin' },
  ];

  it('the app from its sources: the reference', async () => {
    const sources = await runApp([join(app, 'src/main.js')]);
    expect(sources.sites).toEqual(expected);
    expect(sources.verify.ok).toBe(true);
  });

  it.each(['webpack.mjs', 'rollup.mjs'])('%s is judged exactly as its sources', async (file) => {
    const bundled = await runApp(['--enable-source-maps', join(out, file)]);
    expect(bundled.sites).toEqual(expected);
    expect(bundled.verify).toMatchObject({ ok: true, problems: [] });
  });

  it('webpack run without source maps: verify() names the bundle, its sources (as paths) and the remedy', async () => {
    const result = await runApp([join(out, 'webpack.mjs')]);
    expect(result.verify.ok).toBe(false);
    expect(result.verify.problems).toEqual([
      expect.stringMatching(
        /^out\/webpack\.mjs is built from approved or pass-through sources \(src\/auth\/tokens\.js, src\/repositories\//,
      ),
    ]);
  });

  it('webpack without a source map (development mode): its module ids name the sources, and verify() says so', async () => {
    await webpackBuild('webpack-bare.mjs', { devtool: false });
    const result = await runApp(['--enable-source-maps', join(out, 'webpack-bare.mjs')]);
    expect(result.verify.problems).toEqual([
      expect.stringMatching(/^out\/webpack-bare\.mjs is a bundle of approved or pass-through sources/),
    ]);
  });
});
