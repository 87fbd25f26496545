/**
 * examples/baseline-ratchet, run as an app's CI runs it: `node --import ./tripwire-setup.mjs --test`
 * (node's own test runner, plain `node` processes) against the built package, then the ratchet on a
 * copy of it: a new rogue write fails the suite, is recorded, named by `baseline --check`, accepted
 * into the baseline; once fixed, `--check --prune` asks for the baseline to shrink, and `--prune`
 * brings back exactly the committed file.
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, inject, it } from 'vitest';

const projectRoot = fileURLToPath(new URL('../', import.meta.url));
const example = join(projectRoot, 'examples', 'baseline-ratchet');
const cli = join(projectRoot, 'dist', 'cli', 'main.js');
const TIMEOUT = 120_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function mongodbUri(): string {
  const uri = process.env.MONGODB_URI ?? inject('mongodbUri');
  if (!uri) throw new Error('MONGODB_URI is not set: the vitest global setup starts a server and sets it');
  return uri;
}

function node(args: string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  const base = { ...process.env };
  delete base.TRIPWIRE_RECORD;
  delete base.NODE_OPTIONS; // vitest's own loader options are not the app's
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd, env: { ...base, MONGODB_URI: mongodbUri(), ...env }, timeout: 50_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const failure = error as (Error & { code?: number | string }) | null;
        resolve({ code: failure ? (typeof failure.code === 'number' ? failure.code : -1) : 0, stdout, stderr });
      },
    );
  });
}
const explain = (run: Run) => `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
/** The example's test command. */
const runTests = (cwd: string, env: Record<string, string> = {}) =>
  node(['--import', './tripwire-setup.mjs', '--test', '--test-reporter=tap'], cwd, env);
const baseline = (args: string[], cwd: string) => node([cli, 'baseline', ...args], cwd);

beforeAll(() => {
  if (!existsSync(cli)) throw new Error('dist/ is missing: run `npm run build` first');
});

describe('examples/baseline-ratchet', () => {
  it('its test suite passes with the committed baseline (known rogue writes let through in throw mode)', { timeout: TIMEOUT }, async () => {
    const run = await runTests(example);
    expect(run.code, explain(run)).toBe(0);
    expect(run.stdout).toMatch(/^# pass 4$/m);
    expect(run.stdout).toMatch(/^# fail 0$/m);
  });

  it('fails on a newly added rogue write, says how to accept it, and the baseline ratchets', { timeout: TIMEOUT }, async () => {
    // A copy outside the repository, resolving mongoose and the package as an app's node_modules would.
    const app = mkdtempSync(join(tmpdir(), 'tripwire-ratchet-'));
    cpSync(example, app, { recursive: true });
    mkdirSync(join(app, 'node_modules'));
    symlinkSync(join(projectRoot, 'node_modules', 'mongoose'), join(app, 'node_modules', 'mongoose'), 'dir');
    symlinkSync(projectRoot, join(app, 'node_modules', 'mongoose-tripwire'), 'dir');
    const committed = readFileSync(join(app, 'tripwire-baseline.json'), 'utf8');

    // A teammate adds a nightly job that deletes tokens itself, with its test.
    mkdirSync(join(app, 'app', 'jobs'));
    writeFileSync(
      join(app, 'app', 'jobs', 'expire.mjs'),
      "export async function expireTokens(AccessToken) {\n  return AccessToken.deleteMany({ scopes: 'expired' });\n}\n",
    );
    writeFileSync(
      join(app, 'test', 'expire.test.mjs'),
      [
        "import { after, before, test } from 'node:test';",
        "import { openDatabase } from '../app/models.mjs';",
        "import { expireTokens } from '../app/jobs/expire.mjs';",
        'let db;',
        "before(async () => { db = await openDatabase('expire'); });",
        'after(async () => { await db.close(); });',
        "test('expired tokens are removed', async () => { await expireTokens(db.AccessToken); });",
        '',
      ].join('\n'),
    );

    const failing = await runTests(app);
    expect(failing.code, explain(failing)).not.toBe(0);
    expect(failing.stdout).toMatch(/^# fail 1$/m);
    expect(failing.stdout).toContain(
      'rogue write refused: AccessToken.deleteMany from app/jobs/expire.mjs:2:22 is not approved code. New rogue call site: ' +
        'AccessToken.deleteMany in app/jobs/expire.mjs (function expireTokens) is not in the baseline tripwire-baseline.json. ' +
        'Route this write through approved code, or accept it into the baseline: run the tests with ' +
        'TRIPWIRE_RECORD=tripwire-record.jsonl, then `npx mongoose-tripwire baseline tripwire-record.jsonl --out tripwire-baseline.json`',
    );

    // Record a run (no change to the app), and CI's check names the new entry.
    const record = join(app, 'tripwire-record.jsonl');
    const recorded = await runTests(app, { TRIPWIRE_RECORD: record });
    expect(recorded.code, explain(recorded)).not.toBe(0);
    expect(recorded.stdout).toContain(
      `it was recorded in ${record}: run \`npx mongoose-tripwire baseline ${record} --out tripwire-baseline.json\``,
    );
    const check = await baseline(['tripwire-record.jsonl', '--check'], app);
    expect(check.code, explain(check)).toBe(1);
    expect(check.stderr).toContain(
      '+ AccessToken.deleteMany in app/jobs/expire.mjs (function expireTokens): 1 call site(s), the baseline allows 0: ' +
        'app/jobs/expire.mjs:2:22',
    );
    expect(check.stderr).not.toContain('legacy/login.mjs'); // the known ones are not new

    // Accepting it (a reviewed change to the committed file) makes the suite pass again.
    const accept = await baseline(['tripwire-record.jsonl'], app);
    expect(accept.code, explain(accept)).toBe(0);
    expect(readFileSync(join(app, 'tripwire-baseline.json'), 'utf8')).toContain(
      '{"model":"AccessToken","operation":"deleteMany","file":"app/jobs/expire.mjs","function":"expireTokens","count":1}',
    );
    const passing = await runTests(app);
    expect(passing.code, explain(passing)).toBe(0);

    // The job is migrated (its rogue write removed): a fresh record no longer has it.
    rmSync(join(app, 'app', 'jobs'), { recursive: true });
    rmSync(join(app, 'test', 'expire.test.mjs'));
    rmSync(record);
    const clean = await runTests(app, { TRIPWIRE_RECORD: record });
    expect(clean.code, explain(clean)).toBe(0);
    const grows = await baseline(['tripwire-record.jsonl', '--check'], app);
    expect(grows.code, explain(grows)).toBe(0); // nothing new
    const shrinks = await baseline(['tripwire-record.jsonl', '--check', '--prune'], app);
    expect(shrinks.code, explain(shrinks)).toBe(1); // but the baseline should shrink
    expect(shrinks.stderr).toContain('- AccessToken.deleteMany in app/jobs/expire.mjs (function expireTokens): 1 known, 0 seen');
    const pruned = await baseline(['tripwire-record.jsonl', '--prune'], app);
    expect(pruned.code, explain(pruned)).toBe(0);
    expect(readFileSync(join(app, 'tripwire-baseline.json'), 'utf8')).toBe(committed);

    // A record older than an edit of the code it names is refused, not counted.
    writeFileSync(join(app, 'app', 'legacy', 'login.mjs'), `${readFileSync(join(app, 'app', 'legacy', 'login.mjs'), 'utf8')}// edited\n`);
    const stale = await baseline(['tripwire-record.jsonl', '--check'], app);
    expect(stale.code, explain(stale)).toBe(2);
    expect(stale.stderr).toMatch(/is stale: app\/legacy\/login\.mjs changed since it was recorded/);
    rmSync(app, { recursive: true, force: true });
  });

  it('a missing baseline fails every test at boot, naming the file: never "all known"', { timeout: TIMEOUT }, async () => {
    const app = mkdtempSync(join(tmpdir(), 'tripwire-ratchet-'));
    cpSync(example, app, { recursive: true });
    mkdirSync(join(app, 'node_modules'));
    symlinkSync(join(projectRoot, 'node_modules', 'mongoose'), join(app, 'node_modules', 'mongoose'), 'dir');
    symlinkSync(projectRoot, join(app, 'node_modules', 'mongoose-tripwire'), 'dir');
    rmSync(join(app, 'tripwire-baseline.json'));
    const run = await runTests(app);
    expect(run.code, explain(run)).not.toBe(0);
    expect(run.stdout).toMatch(/^# pass 0$/m);
    expect(run.stdout).toContain('TripwireConfigError');
    expect(run.stdout).toMatch(/option "baseline": baseline tripwire-baseline\.json \(.*tripwire-baseline\.json\) does not exist/);
    rmSync(app, { recursive: true, force: true });
  });
});
