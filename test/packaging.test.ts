/**
 * The package as it is published: `npm pack` of the built tree, installed with npm into a fresh
 * app next to Mongoose, then used from ESM, from CommonJS (require(esm)) and from TypeScript
 * against the shipped declarations.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const projectRoot = fileURLToPath(new URL('../', import.meta.url));
const TIMEOUT = 180_000;
const REPOSITORY = 'https://github.com/mongoose-tripwire/mongoose-tripwire';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env: process.env, timeout: TIMEOUT - 10_000, maxBuffer: 32 * 1024 * 1024 }, (error, stdout, stderr) => {
      const failure = error as (Error & { code?: number | string }) | null;
      resolve({ code: failure ? (typeof failure.code === 'number' ? failure.code : -1) : 0, stdout, stderr });
    });
  });
}
const explain = (result: Run): string => `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;

// npm-cli.js next to the running node, so the test does not depend on PATH lookups or shell shims.
function npm(args: string[], cwd: string): Promise<Run> {
  const npmCli = process.env.npm_execpath?.endsWith('npm-cli.js') ? process.env.npm_execpath : undefined;
  return npmCli ? run(process.execPath, [npmCli, ...args], cwd) : run(process.platform === 'win32' ? 'npm.cmd' : 'npm', args, cwd);
}
const node = (args: string[], cwd: string) => run(process.execPath, args, cwd);
const tsc = (args: string[], cwd: string) => node([join(projectRoot, 'node_modules/typescript/bin/tsc'), ...args], cwd);

let work: string;
let tarball: string;
let packedFiles: string[];
let tarEntries: string[];
let app: string;
let install: Run;

beforeAll(async () => {
  if (!existsSync(join(projectRoot, 'dist/index.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  work = mkdtempSync(join(tmpdir(), 'tripwire-pack-'));

  const pack = await npm(['pack', '--json', '--pack-destination', work], projectRoot);
  if (pack.code !== 0) throw new Error(`npm pack failed\n${explain(pack)}`);
  const [packed] = JSON.parse(pack.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = join(work, packed!.filename);
  packedFiles = packed!.files.map((f) => f.path).sort();
  const list = await run('tar', ['-tzf', tarball], work);
  if (list.code !== 0) throw new Error(`tar -tzf failed\n${explain(list)}`);
  tarEntries = list.stdout.split('\n').filter(Boolean).sort();

  // A consumer app: its own package.json, Mongoose at the version the suite runs on, the tarball.
  app = join(work, 'app');
  mkdirSync(join(app, 'src/auth'), { recursive: true });
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'tripwire-consumer', version: '1.0.0', private: true, type: 'module' }, null, 2),
  );
  writeFileSync(join(app, 'src/auth/tokens.mjs'), 'export const approvedModule = true;\n');
  const mongooseVersion = (JSON.parse(readFileSync(join(projectRoot, 'node_modules/mongoose/package.json'), 'utf8')) as { version: string })
    .version;
  const installArgs = ['install', tarball, `mongoose@${mongooseVersion}`, '--no-audit', '--no-fund', '--no-package-lock'];
  // The npm cache has what the project installed; go to the registry only for what it lacks.
  install = await npm([...installArgs, '--offline'], app);
  if (install.code !== 0) {
    const offline = install;
    install = await npm([...installArgs, '--prefer-offline'], app);
    if (install.code !== 0)
      throw new Error(`npm install failed, offline and online\n--- offline\n${explain(offline)}\n--- prefer-offline\n${explain(install)}`);
  }
}, TIMEOUT);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the tarball', () => {
  it('holds only dist/, the Datadog assets, docs/, README.md, LICENSE and package.json, with the types of every export', () => {
    expect(tarEntries.length).toBeGreaterThan(4);
    for (const entry of tarEntries) {
      expect(entry, 'an unexpected file in the tarball').toMatch(
        /^package\/(dist\/.+|datadog\/[\w-]+\.json|docs\/[\w-]+\.md|README\.md|LICENSE|package\.json)$/,
      );
    }
    const docPages = readdirSync(join(projectRoot, 'docs'))
      .filter((name) => name.endsWith('.md'))
      .map((name) => `docs/${name}`);
    for (const file of ['datadog/dashboard.json', 'datadog/monitors.json', 'docs/verification.md', ...docPages]) {
      expect(tarEntries, file).toContain(`package/${file}`);
    }
    expect(tarEntries.map((entry) => entry.replace(/^package\//, ''))).toEqual(packedFiles);
    for (const file of [
      'package.json',
      'README.md',
      'LICENSE',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/cli/listen.js',
      'dist/cli/listen.d.ts',
      'dist/report/dogstatsd.js',
      'dist/report/dogstatsd.d.ts',
      'dist/cli/main.js',
    ]) {
      expect(tarEntries, file).toContain(`package/${file}`);
    }
    // Nothing of the tests, the examples or the sources.
    expect(tarEntries.filter((entry) => /\/(test|examples|src|bench)\//.test(entry))).toEqual([]);
  });

  it('names its repository, home page and issue tracker', () => {
    const manifest = JSON.parse(readFileSync(join(app, 'node_modules/mongoose-tripwire/package.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest.repository).toEqual({ type: 'git', url: `git+${REPOSITORY}.git` });
    expect(manifest.homepage).toBe(`${REPOSITORY}#readme`);
    expect(manifest.bugs).toEqual({ url: `${REPOSITORY}/issues` });
  });

  it(
    'every link in the installed README and docs/ works: relative ones to a shipped file, repository ones to a file of this ' +
      'repository',
    () => {
      const installed = join(app, 'node_modules/mongoose-tripwire');
      const checked: string[] = [];
      const docPages = readdirSync(join(installed, 'docs'))
        .filter((name) => name.endsWith('.md'))
        .map((name) => `docs/${name}`);
      expect(docPages.length).toBeGreaterThan(1);
      for (const doc of ['README.md', ...docPages]) {
        const text = readFileSync(join(installed, doc), 'utf8');
        for (const [, target = ''] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
          const path = target.replace(/#.*$/, '');
          if (path === '') continue;
          if (/^https?:/.test(path)) {
            if (!path.startsWith(`${REPOSITORY}/`)) continue;
            const inRepo = /^\/(?:tree|blob)\/main\/(.+)$/.exec(path.slice(REPOSITORY.length));
            if (!inRepo) continue; // the issue tracker and the like
            expect(existsSync(join(projectRoot, inRepo[1]!)), `${doc}: ${target} is not a file of this repository`).toBe(true);
          } else {
            expect(existsSync(join(installed, dirname(doc), path)), `${doc}: ${target} is not in the installed package`).toBe(true);
          }
          checked.push(`${doc} -> ${target}`);
        }
      }
      for (const needed of ['datadog/dashboard.json', 'datadog/monitors.json', ...docPages]) {
        expect(
          checked.some((link) => link.startsWith('README.md -> ') && link.endsWith(needed)),
          `README links ${needed}`,
        ).toBe(true);
      }
      expect(checked.filter((link) => link.includes('/examples/')).length).toBeGreaterThanOrEqual(6);
    },
  );

  it('installs with npm next to Mongoose', () => {
    expect(install.code, explain(install)).toBe(0);
    expect(existsSync(join(app, 'node_modules/mongoose-tripwire/dist/index.js'))).toBe(true);
    expect(existsSync(join(app, 'node_modules/mongoose-tripwire/src'))).toBe(false);
  });
});

describe('the installed package', () => {
  const consumerChecks = (loaded: string) => `
    const schema = new mongoose.Schema({ token: String });
    schema.plugin(tripwire, { approved: ['src/auth/**'], statsd: false });
    mongoose.model('AccessToken', schema);
    const result = verify();
    console.log(JSON.stringify({
      loaded: ${JSON.stringify(loaded)},
      typeofTripwire: typeof tripwire,
      registrations: result.registrations.length,
      ok: result.ok,
      problems: result.problems,
      models: result.registrations.flatMap((r) => r.models.map((m) => ({ model: m.model, missing: m.missing.length }))),
      approvedFiles: result.registrations[0] && result.registrations[0].approved[0].files,
      subpaths: [typeof listen.startListener, typeof dogstatsd.parsePacket],
    }));
  `;

  it('works from ESM: import { tripwire, verify } from "mongoose-tripwire"', { timeout: TIMEOUT }, async () => {
    writeFileSync(
      join(app, 'esm.mjs'),
      `import mongoose from 'mongoose';
      import { tripwire, verify, close } from 'mongoose-tripwire';
      import * as listen from 'mongoose-tripwire/listen';
      import * as dogstatsd from 'mongoose-tripwire/dogstatsd';
      ${consumerChecks('esm')}
      await close();
      `,
    );
    const result = await node(['esm.mjs'], app);
    expect(result.code, explain(result)).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      loaded: 'esm',
      typeofTripwire: 'function',
      registrations: 1,
      ok: true,
      problems: [],
      models: [{ model: 'AccessToken', missing: 0 }],
      approvedFiles: 1,
      subpaths: ['function', 'function'],
    });
  });

  it('works from CommonJS: require("mongoose-tripwire")', { timeout: TIMEOUT }, async () => {
    writeFileSync(
      join(app, 'cjs.cjs'),
      `const mongoose = require('mongoose');
      const { tripwire, verify, close } = require('mongoose-tripwire');
      const listen = require('mongoose-tripwire/listen');
      const dogstatsd = require('mongoose-tripwire/dogstatsd');
      ${consumerChecks('cjs')}
      close().catch((error) => { console.error(error); process.exitCode = 1; });
      `,
    );
    const result = await node(['cjs.cjs'], app);
    expect(result.code, explain(result)).toBe(0);
    expect(result.stderr).not.toMatch(/ERR_REQUIRE_ESM|ERR_REQUIRE_ASYNC_MODULE/);
    expect(JSON.parse(result.stdout)).toMatchObject({
      loaded: 'cjs',
      typeofTripwire: 'function',
      registrations: 1,
      ok: true,
      models: [{ model: 'AccessToken', missing: 0 }],
    });
  });

  it('exposes only its exports: internal files are not importable', { timeout: TIMEOUT }, async () => {
    writeFileSync(
      join(app, 'deep.mjs'),
      `try { await import('mongoose-tripwire/dist/plugin.js'); console.log('imported'); } catch (error) { console.log(error.code); }\n`,
    );
    const result = await node(['deep.mjs'], app);
    expect(result.stdout.trim(), explain(result)).toBe('ERR_PACKAGE_PATH_NOT_EXPORTED');
  });

  const tscArgs = (file: string) => [
    '--noEmit',
    '--strict',
    '--target',
    'es2022',
    '--module',
    'nodenext',
    '--moduleResolution',
    'nodenext',
    '--skipLibCheck',
    '--types',
    'node',
    '--typeRoots',
    join(projectRoot, 'node_modules/@types'),
    file,
  ];

  it('type-checks a TypeScript consumer against the shipped declarations', { timeout: TIMEOUT }, async () => {
    writeFileSync(
      join(app, 'good.ts'),
      `import mongoose from 'mongoose';
      import { tripwire, verify, RogueWriteError, type BypassReport, type TripwireOptions } from 'mongoose-tripwire';
      import { startListener } from 'mongoose-tripwire/listen';
      import { parsePacket, type ParsedDatagram } from 'mongoose-tripwire/dogstatsd';

      const schema = new mongoose.Schema({ token: String });
      schema.plugin(tripwire, { approved: ['src/auth/**'] });
      const options: TripwireOptions = {
        approved: ['src/auth/**', /\\/auth\\//, (frame) => frame.file.endsWith('.ts')],
        mode: 'throw',
        notify: '@slack-auth-alerts',
        onBypass: (report: BypassReport) => { const line: number = report.callSite.line; void line; },
      };
      new mongoose.Schema({ token: String }).plugin(tripwire, options);
      const ok: boolean = verify().ok;
      const error: unknown = undefined;
      if (error instanceof RogueWriteError) { const model: string = error.report.model; void model; }
      const datagrams: ParsedDatagram[] = parsePacket('tripwire.writes:1|c|#model:AccessToken');
      void startListener; void ok; void datagrams;
      `,
    );
    const result = await tsc(tscArgs('good.ts'), app);
    expect(result.code, explain(result)).toBe(0);
  });

  it('refuses a misspelt option at compile time', { timeout: TIMEOUT }, async () => {
    writeFileSync(
      join(app, 'bad.ts'),
      `import mongoose from 'mongoose';
      import { tripwire } from 'mongoose-tripwire';
      const schema = new mongoose.Schema({ token: String });
      schema.plugin(tripwire, { aproved: [] });
      `,
    );
    const result = await tsc(tscArgs('bad.ts'), app);
    expect(result.code, explain(result)).not.toBe(0);
    expect(result.stdout).toMatch(/bad\.ts\(4,\d+\): error TS\d+/);
    expect(result.stdout).toContain('approved');
  });
});
