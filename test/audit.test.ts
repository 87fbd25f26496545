/**
 * `mongoose-tripwire audit`, run as a user would: the built bin in a child process, on a fixture app
 * (test/fixtures/audit-app) with every shape of token write, joined with a record made by actually
 * running part of that app with TRIPWIRE_RECORD on the test server.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const projectRoot = process.cwd();
const bin = join(projectRoot, 'dist', 'cli', 'main.js');
const app = join(projectRoot, 'test', 'fixtures', 'audit-app');
const TIMEOUT = 180_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function node(args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: options.cwd, env: { ...process.env, ...options.env }, timeout: TIMEOUT - 10_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const audit = (args: string[], cwd = app) => node([bin, 'audit', ...args], { cwd });
const APP_ARGS = ['--model', 'AccessToken', '--approved', 'auth/**', '--pass-through', 'repositories/**'];

let dir: string;
let record: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tripwire-audit-'));
  record = join(dir, 'record.jsonl');
  const uri = process.env.MONGODB_URI ?? inject('mongodbUri');
  const run = await node(['--import', 'tsx', 'run.mjs'], { cwd: app, env: { MONGODB_URI: uri, TRIPWIRE_RECORD: record } });
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
}, TIMEOUT);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Every token write of the fixture app: the other model's writes (other/sessions.ts, the same shapes) are not here.
const SITES = [
  { file: 'auth/tokens.ts', line: 6, column: 33, operation: 'create', function: 'issueToken', status: 'approved' },
  {
    file: 'auth/tokens.ts',
    line: 11,
    column: 25,
    operation: 'updateOne',
    function: 'moveToken',
    status: 'approved',
    via: 'repositories/token-repository.ts:6:23',
  },
  { file: 'auth/tokens.ts', line: 15, column: 21, operation: 'deleteOne', function: 'revokeToken', status: 'approved' },
  { file: 'jobs/purge.cjs', line: 6, column: 32, operation: 'collection.deleteMany', function: 'purgeExpired', status: 'seen' },
  { file: 'jobs/purge.cjs', line: 12, column: 15, operation: 'save', function: 'stampToken', status: 'unseen' },
  { file: 'legacy/login.ts', line: 7, column: 59, operation: 'collection.insertOne', function: 'legacyLogin', status: 'unseen' },
  { file: 'legacy/login.ts', line: 10, column: 21, operation: 'create', function: 'legacyLogin', status: 'seen' },
  { file: 'legacy/login.ts', line: 15, column: 61, operation: 'driver.updateOne', function: 'nativeRefresh', status: 'unseen' },
  {
    file: 'legacy/profile.ts',
    line: 5,
    column: 25,
    operation: 'updateOne',
    function: 'renameUser',
    status: 'seen',
    via: 'repositories/token-repository.ts:6:23',
  },
  { file: 'reports/reset.ts', line: 5, column: 32, operation: 'drop', function: 'resetTokens', status: 'unseen' },
  { file: 'reports/rollup.ts', line: 5, column: 17, operation: 'aggregate.$out', function: 'rollup', status: 'unseen' },
  {
    file: 'repositories/token-repository.ts',
    line: 11,
    column: 23,
    operation: 'deleteMany',
    function: 'TokenRepository.purgeAll',
    status: 'pass-through',
  },
  { file: 'scripts/fix-token.ts', line: 8, column: 15, operation: 'save', function: 'fixToken', status: 'seen' },
];
const RUNTIME_ONLY = [{ file: 'legacy/dynamic.ts', line: 5, column: 27, operation: 'updateMany', function: 'touchAll', writes: 1 }];

describe('mongoose-tripwire audit', () => {
  it('the record holds what ran: rogue writes only, at their callers', () => {
    const lines = readFileSync(record, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { location: string; operation: string });
    expect(lines.map((l) => `${l.operation} ${l.location}`).sort()).toEqual([
      'collection.deleteMany jobs/purge.cjs:6:32',
      'create legacy/login.ts:10:21',
      'save scripts/fix-token.ts:8:15',
      'updateMany legacy/dynamic.ts:5:27',
      'updateOne legacy/profile.ts:5:25',
    ]);
  });

  it(
    '--json: every write site of the model with its status, and what only runtime saw; --check with the recorded baseline fails on unseen',
    async () => {
      const baseline = join(dir, 'baseline.json');
      const made = await node([bin, 'baseline', record, '--out', baseline], { cwd: app });
      expect(made.code, made.stderr).toBe(0);
      const run = await audit([...APP_ARGS, '--records', record, '--baseline', baseline, '--json', '--check']);
      expect(JSON.parse(run.stdout)).toEqual({ sites: SITES, runtimeOnly: RUNTIME_ONLY });
      // What ran is in the baseline; what never ran cannot be, and is named.
      expect(run.code).toBe(1);
      expect(run.stderr).toContain(`6 write site(s) of AccessToken not approved nor in baseline ${baseline}:`);
      for (const site of SITES.filter((s) => s.status === 'unseen' || s.status === 'pass-through')) {
        expect(run.stderr).toContain(
          `${site.status} ${site.file}:${site.line}:${site.column} AccessToken.${site.operation} in ${site.function}`,
        );
      }
      expect(run.stderr).not.toMatch(/\bseen |runtime-only/);
    },
    TIMEOUT,
  );

  it(
    'prints a table grouped by status, counts first; --check without a baseline names every rogue site',
    async () => {
      const run = await audit([...APP_ARGS, '--records', record, '--check']);
      expect(run.code).toBe(1);
      const lines = run.stdout.split('\n');
      expect(lines[0]).toBe('AccessToken: 13 write site(s): 5 unseen, 4 seen, 1 pass-through, 3 approved; 1 runtime-only');
      expect(lines[1]).toMatch(
        new RegExp(
          String.raw`^ {2}13 file\(s\) read with default compiler settings \(no tsconfig\.json or jsconfig\.json here\); ` +
            String.raw`collection "access_tokens" \(the schema's collection option\); 5 record\(s\) read$`,
        ),
      );
      const headings = lines.filter((line) => /^[A-Z-]+ \(\d+\)/.test(line)).map((line) => line.slice(0, line.indexOf(':')));
      expect(headings).toEqual(['UNSEEN (5)', 'SEEN (4)', 'PASS-THROUGH (1)', 'APPROVED (3)', 'RUNTIME-ONLY (1)']);
      const unseen = run.stdout.slice(run.stdout.indexOf('UNSEEN'), run.stdout.indexOf('\nSEEN (4)'));
      expect(unseen).toMatch(/legacy\/login\.ts:15:61 +driver\.updateOne +nativeRefresh/);
      expect(run.stdout).toMatch(/legacy\/profile\.ts:5:25 +updateOne +renameUser {2}\(via repositories\/token-repository\.ts:6:23\)/);
      expect(run.stdout).toMatch(/legacy\/dynamic\.ts:5:27 +updateMany +touchAll {2}\(1 write\(s\)\)/);
      expect(run.stdout).not.toContain('other/sessions.ts');
      expect(run.stderr).toContain('11 write site(s) of AccessToken not approved (no --baseline given):');
      for (const status of ['unseen', 'seen', 'pass-through', 'runtime-only']) expect(run.stderr).toContain(`\n  ${status} `);
    },
    TIMEOUT,
  );

  it(
    '--check passes with an empty baseline once every write site is approved: the migration is done',
    async () => {
      const empty = join(dir, 'empty-baseline.json');
      writeFileSync(empty, JSON.stringify({ version: 1, entries: [] }));
      const run = await audit([
        '--model',
        'AccessToken',
        '--approved',
        'auth/**',
        '--baseline',
        empty,
        '--check',
        'auth',
        'models',
        'other',
      ]);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(run.stdout).toContain('AccessToken: 2 write site(s): 0 unseen, 0 seen, 0 pass-through, 2 approved; 0 runtime-only');
      expect(run.stdout).toContain(
        `audit --check: every write site of AccessToken is approved or in baseline ${empty}: the migration is done`,
      );
    },
    TIMEOUT,
  );

  it(
    'exits 2 with a clear message when typescript cannot be found, naming how to install it',
    async () => {
      // The package as installed in a project without typescript: dist and package.json, its one dependency the CLI loads.
      const project = join(dir, 'no-typescript');
      const installed = join(project, 'node_modules', 'mongoose-tripwire');
      mkdirSync(installed, { recursive: true });
      cpSync(join(projectRoot, 'dist'), join(installed, 'dist'), { recursive: true });
      cpSync(join(projectRoot, 'package.json'), join(installed, 'package.json'));
      symlinkSync(join(projectRoot, 'node_modules', 'picomatch'), join(project, 'node_modules', 'picomatch'), 'dir');
      writeFileSync(join(project, 'package.json'), '{"name":"app","private":true}');
      writeFileSync(join(project, 'app.js'), "const mongoose = require('mongoose');\n");
      const run = await node([join(installed, 'dist', 'cli', 'main.js'), 'audit', '--model', 'AccessToken', '--approved', 'auth/**'], {
        cwd: project,
      });
      expect(run.code).toBe(2);
      expect(run.stderr).toBe(
        'mongoose-tripwire audit: the typescript package cannot be found: audit reads the code with the TypeScript compiler. ' +
          'Install it in the project: npm install -D typescript\n',
      );
    },
    TIMEOUT,
  );

  it(
    "CommonJS: module.exports of the model, Mongoose's pluralised collection; a record of a changed file matches by function only",
    async () => {
      const project = join(dir, 'cjs');
      mkdirSync(join(project, 'models'), { recursive: true });
      mkdirSync(join(project, 'tasks'), { recursive: true });
      symlinkSync(join(projectRoot, 'node_modules'), join(project, 'node_modules'), 'dir');
      writeFileSync(
        join(project, 'models', 'person.cjs'),
        "const mongoose = require('mongoose');\nmodule.exports = mongoose.model('Person', new mongoose.Schema({ name: String }));\n",
      );
      writeFileSync(
        join(project, 'tasks', 'import.cjs'),
        [
          "const mongoose = require('mongoose');",
          "const Person = require('../models/person.cjs');",
          'async function importPeople(rows) {',
          "  await mongoose.connection.db.collection('people').insertOne({ rows });",
          '  await Person.insertMany(rows);',
          "  await mongoose.connection.db.collection('persons').insertOne({ rows });",
          '}',
          'module.exports = { importPeople };',
          '',
        ].join('\n'),
      );
      // Recorded when insertMany was on line 4 of a file that has changed since (its hash differs).
      const stale = join(dir, 'stale.jsonl');
      const line = {
        tripwire: 'mongoose-tripwire',
        v: 1,
        at: new Date().toISOString(),
        pid: 1,
        root: project,
        model: 'Person',
        operation: 'insertMany',
        kind: 'create',
        file: 'tasks/import.cjs',
        function: 'importPeople',
        location: 'tasks/import.cjs:4:16',
        source: 'deadbeefdeadbeef',
        baselined: false,
        blocked: false,
      };
      writeFileSync(stale, `${JSON.stringify(line)}\n`);
      const run = await audit(['--model', 'Person', '--approved', 'models/**', '--records', stale, '--json'], project);
      expect(run.stderr).toBe('');
      expect(JSON.parse(run.stdout)).toEqual({
        sites: [
          { file: 'tasks/import.cjs', line: 4, column: 53, operation: 'driver.insertOne', function: 'importPeople', status: 'unseen' },
          { file: 'tasks/import.cjs', line: 5, column: 16, operation: 'insertMany', function: 'importPeople', status: 'seen' },
        ],
        runtimeOnly: [],
      });
      const table = await audit(['--model', 'Person', '--approved', 'models/**'], project);
      expect(table.stdout).toContain('collection "people" (Mongoose\'s pluralize)');
    },
    TIMEOUT,
  );

  it('loads typescript only in the audit command: no other module of src/ imports it at run time', () => {
    const files = readdirSync(join(projectRoot, 'src'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    const loading = files.filter((file) => {
      const text = readFileSync(join(projectRoot, 'src', file), 'utf8');
      return /^\s*import\s+(?!type\b)[^;]*from\s+'typescript'|import\(\s*'typescript'\s*\)|require\(\s*'typescript'\s*\)/m.test(text);
    });
    expect(loading.map((f) => f.split('\\').join('/'))).toEqual(['cli/audit.ts']);
  });

  it.each([
    [[], /--model <Name> is required/],
    [['--model', 'AccessToken'], /--approved <glob> is required/],
    [['--model', 'AccessToken', '--approved', 'auth/**', '--frobnicate'], /Unknown option '--frobnicate'/],
    [['--model', 'AccessToken', '--approved', 'auth/**', 'no-such-dir'], /path no-such-dir does not exist/],
    [['--model', 'AccessToken', '--approved', 'auth/**', '--records', 'missing.jsonl'], /record missing\.jsonl does not exist/],
    [['--model', 'AccessToken', '--approved', 'auth/**', '--baseline', 'missing.json'], /baseline missing\.json does not exist/],
    [['--model', 'AccessToken', '--approved', 'auth/**', '--records', 'run.mjs'], /record run\.mjs:1 is not valid JSON/],
  ])('exits 2 on bad arguments or files: %j', async (args, message) => {
    const run = await audit(args);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(message);
  });

  it(
    'exits 2 when the model is declared nowhere under the paths',
    async () => {
      const run = await audit(['--model', 'AccessTokn', '--approved', 'auth/**', 'auth', 'models']);
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(
        /no mongoose\.model\('AccessTokn', \.\.\.\) \(or connection\.model\) found in \d+ file\(s\) under auth models/,
      );
    },
    TIMEOUT,
  );
});
