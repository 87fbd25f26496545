/**
 * The ratchet followed literally, as a new user would: a test setup that already names
 * `baseline: 'tripwire-baseline.json'` records its first baseline with no code change (a missing
 * baseline is empty while TRIPWIRE_RECORD is set), and the refusal message's commands accept a new
 * rogue write any number of times on the same record file (lines of an earlier run about a file
 * changed since are ignored, and the CLI says so). On a copy of examples/baseline-ratchet, run with
 * `node --test` against the built package.
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TripwireConfigError } from '../src/errors.js';
import { resolveOptions } from '../src/options.js';
import { tripwire } from '../src/plugin.js';
import { mongodbUri, projectRoot } from './support/child-script.js';

const example = join(projectRoot, 'examples', 'baseline-ratchet');
const cli = join(projectRoot, 'dist', 'cli', 'main.js');
const TIMEOUT = 240_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function node(args: string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  const base = { ...process.env };
  delete base.TRIPWIRE_RECORD;
  delete base.NODE_OPTIONS; // vitest's loader options are not the app's
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd, env: { ...base, MONGODB_URI: mongodbUri(), ...env }, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const failure = error as (Error & { code?: number | string }) | null;
        resolve({ code: failure ? (typeof failure.code === 'number' ? failure.code : -1) : 0, stdout, stderr });
      },
    );
  });
}
const explain = (run: Run) => `exit ${run.code}\n--- stdout\n${run.stdout.slice(-6000)}\n--- stderr\n${run.stderr.slice(-3000)}`;
const runTests = (cwd: string, env: Record<string, string> = {}) =>
  node(['--import', './tripwire-setup.mjs', '--test', '--test-reporter=tap'], cwd, env);

/** Runs a command as the refusal message prints it (`npx mongoose-tripwire …` is the built CLI here). */
function runPrinted(command: string, cwd: string): Promise<Run> {
  const words = command.split(' ');
  expect(words.slice(0, 2)).toEqual(['npx', 'mongoose-tripwire']);
  return node([cli, ...words.slice(2)], cwd);
}

const work = mkdtempSync(join(tmpdir(), 'tripwire-first-run-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

beforeAll(() => {
  if (!existsSync(cli)) throw new Error('dist/ is missing: run `npm run build` first');
});

describe('a missing baseline while recording', () => {
  const root = join(work, 'notice');
  mkdirSync(join(root, 'auth'), { recursive: true });
  writeFileSync(join(root, 'auth', 'tokens.mjs'), '');

  it('is an empty baseline with a notice when TRIPWIRE_RECORD is set, and an error naming the way out otherwise', () => {
    const saved = process.env.TRIPWIRE_RECORD;
    try {
      delete process.env.TRIPWIRE_RECORD;
      expect(() => resolveOptions({ approved: ['auth/**'], root, baseline: 'tripwire-baseline.json' })).toThrow(TripwireConfigError);
      expect(() => resolveOptions({ approved: ['auth/**'], root, baseline: 'tripwire-baseline.json' })).toThrow(
        new RegExp(
          String.raw`baseline tripwire-baseline\.json \(.*\) does not exist: .*once with TRIPWIRE_RECORD=tripwire-record\.jsonl ` +
            String.raw`\(a missing baseline is then taken as empty\)`,
        ),
      );

      process.env.TRIPWIRE_RECORD = join(work, 'notice.jsonl');
      const resolved = resolveOptions({ approved: ['auth/**'], root, baseline: 'tripwire-baseline.json' });
      expect(resolved.baseline).toMatchObject({ path: 'tripwire-baseline.json', entries: [], missing: true });
      const faults: Array<Error & { reason?: string }> = [];
      tripwire(new mongoose.Schema({ a: String }), {
        approved: ['auth/**'],
        root,
        statsd: false,
        baseline: 'tripwire-baseline.json',
        onError: (e) => void faults.push(e),
      });
      const notice = faults.find((f) => f.reason === 'baseline_missing');
      expect(notice?.message).toMatch(
        /baseline tripwire-baseline\.json does not exist under root .*: taken as empty because TRIPWIRE_RECORD is set \(a first recording/,
      );
      // A file that exists but is wrong is never "empty", recording or not.
      writeFileSync(join(root, 'bad.json'), '{"version":1}');
      expect(() => resolveOptions({ approved: ['auth/**'], root, baseline: 'bad.json' })).toThrow(/"entries" must be an array/);
    } finally {
      if (saved === undefined) delete process.env.TRIPWIRE_RECORD;
      else process.env.TRIPWIRE_RECORD = saved;
    }
  });
});

describe('the README ratchet, followed literally', () => {
  it('records the first baseline with no code change, then accepts new rogue writes any number of times', {
    timeout: TIMEOUT,
  }, async () => {
    const app = join(work, 'app');
    cpSync(example, app, { recursive: true });
    rmSync(join(app, 'tripwire-baseline.json')); // a new user: the setup names a baseline that is not written yet
    mkdirSync(join(app, 'node_modules'));
    symlinkSync(join(projectRoot, 'node_modules', 'mongoose'), join(app, 'node_modules', 'mongoose'), 'dir');
    symlinkSync(projectRoot, join(app, 'node_modules', 'mongoose-tripwire'), 'dir');
    const baselineFile = join(app, 'tripwire-baseline.json');

    // 1. Record: the setup is unchanged (report mode lets every rogue write through, to record them all).
    const first = await runTests(app, { TRIPWIRE_RECORD: 'tripwire-record.jsonl', TRIPWIRE_MODE: 'report' });
    expect(first.code, explain(first)).toBe(0);
    expect(readFileSync(join(app, 'tripwire-record.jsonl'), 'utf8').trim().split('\n').length).toBeGreaterThanOrEqual(3);
    // 2. Write the baseline; 3. the suite passes in throw mode with it.
    const written = await runPrinted('npx mongoose-tripwire baseline tripwire-record.jsonl --out tripwire-baseline.json', app);
    expect(written.code, explain(written)).toBe(0);
    expect(readFileSync(baselineFile, 'utf8')).toContain('"file":"app/legacy/login.mjs","function":"legacyLogin","count":1');
    const passing = await runTests(app);
    expect(passing.code, explain(passing)).toBe(0);

    // A teammate adds rogue writes, one change after another: each is refused, then accepted as the message says.
    const versions = [
      'export async function expireTokens(AccessToken) {\n  return AccessToken.deleteMany({ scopes: "expired" });\n}\n',
      '// Nightly jobs.\nexport async function expireTokens(AccessToken) {\n  return AccessToken.deleteMany({ scopes: "expired" });\n}\n' +
        'export async function purgeTokens(AccessToken) {\n  return AccessToken.updateMany({}, { $set: { scopes: [] } });\n}\n',
      '// Nightly jobs, again.\n' +
        'export async function expireTokens(AccessToken) {\n  return AccessToken.deleteMany({ scopes: "expired" });\n}\n' +
        'export async function purgeTokens(AccessToken) {\n  return AccessToken.updateMany({}, { $set: { scopes: [] } });\n}\n' +
        'export async function dropTokens(AccessToken) {\n  return AccessToken.deleteOne({ scopes: "dropped" });\n}\n',
    ];
    const calls = ['expireTokens', 'purgeTokens', 'dropTokens'];
    mkdirSync(join(app, 'app', 'jobs'));
    for (const [round, source] of versions.entries()) {
      writeFileSync(join(app, 'app', 'jobs', 'nightly.mjs'), source);
      const uses = calls.slice(0, round + 1);
      writeFileSync(
        join(app, 'test', 'nightly.test.mjs'),
        [
          "import { after, before, test } from 'node:test';",
          "import { openDatabase } from '../app/models.mjs';",
          `import { ${uses.join(', ')} } from '../app/jobs/nightly.mjs';`,
          'let db;',
          "before(async () => { db = await openDatabase('nightly'); });",
          'after(async () => { await db.close(); });',
          ...uses.map((fn) => `test('${fn}', async () => { await ${fn}(db.AccessToken); });`),
          '',
        ].join('\n'),
      );
      const refused = await runTests(app);
      expect(refused.code, `round ${round}\n${explain(refused)}`).not.toBe(0);
      const advice = /accept it into the baseline: run the tests with TRIPWIRE_RECORD=(\S+), then `([^`]+)`/.exec(refused.stdout);
      expect(advice, `round ${round}: the refusal says how to accept\n${explain(refused)}`).not.toBeNull();
      const [, record, command] = advice!;
      expect(command).toBe(`npx mongoose-tripwire baseline ${record} --out tripwire-baseline.json`);

      // Exactly as printed: record a run (in throw mode the new write is refused, and recorded), then the command.
      const recorded = await runTests(app, { TRIPWIRE_RECORD: record! });
      expect(recorded.code, explain(recorded)).not.toBe(0);
      const accepted = await runPrinted(command!, app);
      expect(accepted.code, `round ${round}: accepting exits 0\n${explain(accepted)}`).toBe(0);
      expect(accepted.stdout).toMatch(/^wrote tripwire-baseline\.json: /);
      if (round > 0) {
        // The record file holds the earlier rounds' lines about nightly.mjs, which changed since: ignored, and said.
        expect(accepted.stderr).toMatch(
          /ignored \d+ line\(s\) of tripwire-record\.jsonl recorded by an earlier run, before their file changed: app\/jobs\/nightly\.mjs/,
        );
      }
      const green = await runTests(app);
      expect(green.code, `round ${round}: the suite passes once accepted\n${explain(green)}`).toBe(0);
    }
    const entries = (JSON.parse(readFileSync(baselineFile, 'utf8')) as { entries: Array<{ function: string }> }).entries;
    expect(entries.map((entry) => entry.function).sort()).toEqual([
      'dropTokens',
      'expireTokens',
      'grantScope',
      'legacyLogin',
      'purgeTokens',
    ]);
  });
});
