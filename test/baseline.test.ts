/**
 * The baseline (option `baseline`), recording (`TRIPWIRE_RECORD`) and `mongoose-tripwire baseline`:
 * real Mongoose writes on the test database, real UDP datagrams, the built CLI as a child process.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type mongoose from 'mongoose';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { RogueWriteError, TripwireConfigError } from '../src/errors.js';
import { flush } from '../src/index.js';
import { resolveOptions } from '../src/options.js';
import { tripwire } from '../src/plugin.js';
import { parseRecords } from '../src/ratchet/recorder.js';
import type { ParsedDatagram } from '../src/report/dogstatsd.js';
import type { BypassReport, TripwireOptions } from '../src/types.js';
// @ts-expect-error plain ESM fixtures without types
import { writes as approvedWrites } from './fixtures/app/auth/writes.mjs';
// @ts-expect-error plain ESM fixtures without types
import * as sites from './fixtures/app/legacy/baseline-sites.mjs';
// @ts-expect-error plain ESM fixtures without types
import { fixtureDir, siteLine } from './fixtures/app/matrix.mjs';
// @ts-expect-error plain ESM fixtures without types
import { tokenSchema } from './fixtures/app/models.mjs';
import { connect } from './support/connect.js';
import { listenerSuite } from './support/listener-suite.js';
import { waitFor } from './support/wait.js';

type Model = mongoose.Model<Record<string, unknown>>;
type EventDatagram = Extract<ParsedDatagram, { type: 'event' }>;
interface Sites {
  issueLegacy(T: Model, token: string, which: 'first' | 'second'): Promise<unknown>;
  renameUser(T: Model, token: string): Promise<unknown>;
  viaCallback(T: Model, token: string): Promise<unknown>;
}
const legacy = sites as unknown as Sites;
const SITES_FILE = 'legacy/baseline-sites.mjs';
const root = resolve(fixtureDir as string);
const line = (name: string): number => siteLine(SITES_FILE, name) as number;

const work = mkdtempSync(join(tmpdir(), 'tripwire-baseline-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let fileCount = 0;
/** A baseline file in a temporary folder; returns its absolute path. */
function baselineFile(entries: unknown[] | string, raw = false): string {
  const file = join(work, `baseline-${++fileCount}.json`);
  writeFileSync(file, raw ? (entries as string) : JSON.stringify({ version: 1, entries }));
  return file;
}
const entry = (fn: string, operation: string, count: number, file = SITES_FILE) => ({
  model: 'AccessToken',
  operation,
  file,
  function: fn,
  count,
});

const suite = listenerSuite(() => connect('baseline'));
let modelCount = 0;
let token = 0;
const nextToken = () => `tok_baseline_${process.pid}_${++token}`;

async function tokenModel(options: Partial<TripwireOptions>): Promise<{ T: Model; reports: BypassReport[]; faults: Error[] }> {
  const reports: BypassReport[] = [];
  const faults: Error[] = [];
  const schema = tokenSchema() as mongoose.Schema;
  schema.plugin(tripwire, {
    approved: ['auth/**'],
    root,
    statsd: { host: '127.0.0.1', port: suite.listener.port },
    notify: '@slack-auth-alerts',
    rateLimit: false,
    onBypass: (report) => void reports.push(report),
    onError: (error) => void faults.push(error),
    ...options,
  });
  // Named AccessToken on its own connection-scoped name, so baseline entries for AccessToken apply.
  const connection = suite.connection.useDb(`baseline_${process.pid}_${++modelCount}`, { useCache: false });
  const T = connection.model('AccessToken', schema) as unknown as Model;
  await T.init();
  return { T, reports, faults };
}

describe('option baseline, read at registration', () => {
  const resolveWith = (baseline: unknown) => () => resolveOptions({ approved: ['auth/**'], root, baseline });

  it('reads a baseline relative to root, and an absolute one', () => {
    const file = baselineFile([entry('issueLegacy', 'create', 2)]);
    const fromRoot = resolveOptions({ approved: ['auth/**'], root, baseline: relative(root, file) }).baseline!;
    expect(fromRoot.file).toBe(file);
    expect(fromRoot.entries).toEqual([entry('issueLegacy', 'create', 2)]);
    expect(resolveOptions({ approved: ['auth/**'], root, baseline: file }).baseline!.entries).toHaveLength(1);
    expect(resolveOptions({ approved: ['auth/**'], root }).baseline).toBeUndefined();
  });

  it('a missing, malformed or wrong file is a TripwireConfigError naming the path and the problem, never "everything known"', () => {
    expect(resolveWith('no-such-baseline.json')).toThrow(TripwireConfigError);
    expect(resolveWith('no-such-baseline.json')).toThrow(
      new RegExp(
        String.raw`option "baseline": baseline no-such-baseline\.json \(.*no-such-baseline\.json\)` +
          ' does not exist: the option baseline is relative to root .*TRIPWIRE_RECORD=',
      ),
    );
    const cases: Array<[string, RegExp]> = [
      ['{"version":1,"entries":[', /is not valid JSON/],
      ['[]', /must be an object \{ "version": 1, "entries": \[\.\.\.\] \}, got an array/],
      ['{"version":2,"entries":[]}', /has version 2; this mongoose-tripwire reads version 1/],
      ['{"entries":[]}', /has version undefined/],
      ['{"version":1}', /"entries" must be an array, got undefined/],
      ['{"version":1,"entries":[],"extra":1}', /unknown key "extra"/],
      [
        JSON.stringify({ version: 1, entries: [{ ...entry('issueLegacy', 'create', 1), line: 4 }] }),
        /entries\[0\] has an unknown key "line"/,
      ],
      [JSON.stringify({ version: 1, entries: [entry('issueLegacy', 'create', 0)] }), /entries\[0\]: "count" must be a positive integer/],
      [JSON.stringify({ version: 1, entries: [entry('issueLegacy', 'create', 1.5)] }), /"count" must be a positive integer/],
      [
        JSON.stringify({ version: 1, entries: [{ ...entry('issueLegacy', 'create', 1), model: '' }] }),
        /"model" must be a non-empty string/,
      ],
      [
        JSON.stringify({ version: 1, entries: [entry('issueLegacy', 'create', 1), entry('issueLegacy', 'create', 2)] }),
        /entries\[1\] repeats the entry for AccessToken\.create in legacy\/baseline-sites\.mjs \(function issueLegacy\)/,
      ],
      [JSON.stringify({ version: 1, entries: [entry('x', 'create', 1, '<unknown>')] }), /a call site without a file cannot be baselined/],
    ];
    for (const [text, problem] of cases) {
      const file = baselineFile(text, true);
      expect(resolveWith(file), text).toThrow(TripwireConfigError);
      expect(resolveWith(file), text).toThrow(new RegExp(`baseline ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*`));
      expect(resolveWith(file), text).toThrow(problem);
    }
    expect(resolveWith(42)).toThrow(/option "baseline" must be the path of a baseline file \(relative to root\), got number 42/);
    expect(resolveWith('')).toThrow(/option "baseline" must be the path/);
  });

  it('fails schema.plugin() itself, before any model exists', () => {
    const schema = tokenSchema() as mongoose.Schema;
    expect(() => schema.plugin(tripwire, { approved: ['auth/**'], root, baseline: 'missing.json', statsd: false })).toThrow(
      TripwireConfigError,
    );
  });

  it('warns once when an entry names a file that no longer exists under root (moved or deleted code)', async () => {
    const { faults } = await tokenModel({
      baseline: baselineFile([entry('issueLegacy', 'create', 1), entry('gone', 'create', 1, 'legacy/deleted.mjs')]),
    });
    expect(faults.map((f) => (f as Error & { reason?: string }).reason)).toContain('baseline_stale');
    expect(faults.find((f) => /baseline_stale|deleted\.mjs/.test(f.message))!.message).toMatch(/legacy\/deleted\.mjs.*--prune/);
  });
});

describe('report mode with a baseline', () => {
  it(
    'marks known call sites baselined (up to the count of distinct call sites), tags tripwire.bypasses, and sends known events as info ' +
      'without paging',
    async () => {
      const { T, reports } = await tokenModel({ baseline: baselineFile([entry('issueLegacy', 'create', 1)]) });
      await legacy.issueLegacy(T, nextToken(), 'first'); // known: the entry's one call site
      await legacy.issueLegacy(T, nextToken(), 'second'); // same key, a second call site: new
      await legacy.renameUser(T, nextToken()); // no entry: new
      await legacy.issueLegacy(T, nextToken(), 'first'); // the known call site again: still known
      await flush();
      await waitFor(() => reports.length === 4, 'four reports');
      expect(reports.map((r) => [r.location.replace(/:\d+$/, ''), r.baselined])).toEqual([
        [`${SITES_FILE}:${line('issueLegacy.first')}`, true],
        [`${SITES_FILE}:${line('issueLegacy.second')}`, false],
        [`${SITES_FILE}:${line('renameUser')}`, false],
        [`${SITES_FILE}:${line('issueLegacy.first')}`, true],
      ]);
      expect(reports.every((r) => r.blocked === false)).toBe(true);

      const metrics = () =>
        suite.listener.datagrams.filter(
          (d): d is Extract<ParsedDatagram, { type: 'metric' }> => d.type === 'metric' && d.name === 'tripwire.bypasses',
        );
      const sum = (tag: string) =>
        metrics()
          .filter((d) => d.tags.includes(tag))
          .reduce((total, d) => total + (d.type === 'metric' ? d.value : 0), 0);
      await waitFor(() => sum('baselined:true') + sum('baselined:false') === 4, 'the bypass counters');
      expect(sum('baselined:true')).toBe(2);
      expect(sum('baselined:false')).toBe(2);

      const events = () => suite.listener.datagrams.filter((d): d is EventDatagram => d.type === 'event');
      await waitFor(() => events().length === 4, 'four events');
      expect(suite.listener.malformed).toEqual([]);
      const known = events().filter((e) => e.tags.includes('baselined:true'));
      const fresh = events().filter((e) => e.tags.includes('baselined:false'));
      expect(known).toHaveLength(2);
      expect(fresh).toHaveLength(2);
      for (const event of known) {
        expect(event.title).toBe(`[known] Rogue write: AccessToken.create from ${SITES_FILE}:${line('issueLegacy.first')}`);
        expect(event.alertType).toBe('info');
        expect(event.text).not.toContain('@slack-auth-alerts');
        expect(event.text).toMatch(/^%%%\n_Known call site, in the baseline: counted and let through, not paged\._\n\*\*Rogue write\*\*/);
      }
      for (const event of fresh) {
        expect(event.title).toMatch(/^Rogue write: AccessToken\.(create|updateOne) from legacy\/baseline-sites\.mjs:\d+$/);
        expect(event.alertType).toBe('warning');
        expect(event.text.split('\n')[1]).toBe('@slack-auth-alerts');
      }
    },
  );

  it('keys an anonymous function as <anonymous>', async () => {
    const { T, reports } = await tokenModel({ baseline: baselineFile([entry('<anonymous>', 'create', 1)]) });
    await legacy.viaCallback(T, nextToken());
    await flush();
    await waitFor(() => reports.length === 1, 'the report');
    expect(reports[0]!.callSite.function).toBeUndefined();
    expect(reports[0]!.baselined).toBe(true);
  });

  it('without a baseline, every rogue write is baselined:false', async () => {
    const { T, reports } = await tokenModel({});
    await legacy.renameUser(T, nextToken());
    await flush();
    await waitFor(() => reports.length === 1, 'the report');
    expect(reports[0]!.baselined).toBe(false);
    await waitFor(() => suite.listener.datagrams.some((d) => d.type === 'metric' && d.name === 'tripwire.bypasses'), 'the counter');
    const bypass = suite.listener.datagrams.find(
      (d): d is Extract<ParsedDatagram, { type: 'metric' }> => d.type === 'metric' && d.name === 'tripwire.bypasses',
    )!;
    expect(bypass.tags).toContain('baselined:false');
  });
});

describe('throw mode with a baseline', () => {
  it(
    'lets known call sites through (counted, reported baselined) and refuses new ones with a message saying how to accept ' + 'them',
    async () => {
      const file = baselineFile([entry('issueLegacy', 'create', 1)]);
      const { T, reports } = await tokenModel({ mode: 'throw', baseline: file });
      const first = nextToken();
      await legacy.issueLegacy(T, first, 'first');
      expect(await T.countDocuments({ token: first })).toBe(1);

      const second = nextToken();
      const refused = await legacy.issueLegacy(T, second, 'second').then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(RogueWriteError);
      expect((refused as RogueWriteError).message).toBe(
        `mongoose-tripwire: rogue write refused: AccessToken.create from ` +
          `${SITES_FILE}:${line('issueLegacy.second')}:${(refused as RogueWriteError).report.callSite.column} is not approved code. ` +
          `New rogue call site: the baseline ${file} knows 1 call site for AccessToken.create in legacy/baseline-sites.mjs (function ` +
          `issueLegacy) and this is one more. ` +
          `Route this write through approved code, or accept it into the baseline: run the tests with ` +
          `TRIPWIRE_RECORD=tripwire-record.jsonl, then \`npx mongoose-tripwire baseline tripwire-record.jsonl --out ${file}\``,
      );
      expect((refused as RogueWriteError).report).toMatchObject({ blocked: true, baselined: false });
      expect(await T.countDocuments({ token: second })).toBe(0);

      const renamed = await legacy.renameUser(T, first).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(renamed).toBeInstanceOf(RogueWriteError);
      expect((renamed as Error).message).toContain(
        `New rogue call site: AccessToken.updateOne in legacy/baseline-sites.mjs (function renameUser) is not in the baseline ${file}. ` +
          `Route this write`,
      );
      expect(await T.countDocuments({ user: 'renamed' })).toBe(0);

      await legacy.issueLegacy(T, nextToken(), 'first'); // the known call site, again
      await flush();
      await waitFor(() => reports.length === 4, 'four reports');
      expect(reports.map((r) => ({ line: r.callSite.line, baselined: r.baselined, blocked: r.blocked }))).toEqual([
        { line: line('issueLegacy.first'), baselined: true, blocked: false }, // let through: reported when it completed
        { line: line('issueLegacy.second'), baselined: false, blocked: true }, // refused: reported at once
        { line: line('renameUser'), baselined: false, blocked: true },
        { line: line('issueLegacy.first'), baselined: true, blocked: false },
      ]);
    },
  );

  it('without a baseline, the refusal message is unchanged', async () => {
    const { T } = await tokenModel({ mode: 'throw', statsd: false });
    const error = await legacy.renameUser(T, nextToken()).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect((error as Error).message).toMatch(/is not approved code$/);
  });
});

describe('TRIPWIRE_RECORD', () => {
  const saved = process.env.TRIPWIRE_RECORD;
  afterEach(() => {
    if (saved === undefined) delete process.env.TRIPWIRE_RECORD;
    else process.env.TRIPWIRE_RECORD = saved;
  });

  it('appends every rogue write as one JSON line, in report and in throw mode; the file exists from registration', async () => {
    const file = join(work, 'records', `rec-${process.pid}.jsonl`);
    process.env.TRIPWIRE_RECORD = file;
    const { T } = await tokenModel({ statsd: false, baseline: baselineFile([entry('issueLegacy', 'create', 1)]) });
    expect(readFileSync(file, 'utf8')).toBe(''); // created (with its folder) at registration: recorded, nothing rogue yet
    const approved = (approvedWrites as Record<string, (T: Model, c: { token(): string; opts: object }) => Promise<unknown>>)[
      'Model.create'
    ]!;
    await approved(T, { token: nextToken, opts: {} });
    await legacy.issueLegacy(T, nextToken(), 'first');
    await legacy.issueLegacy(T, nextToken(), 'first');
    await legacy.renameUser(T, nextToken());
    await flush();
    const { T: Throwing } = await tokenModel({ mode: 'throw', statsd: false });
    await legacy.renameUser(Throwing, nextToken()).catch(() => undefined);

    const records = parseRecords(readFileSync(file, 'utf8'), file);
    const source = createHash('sha256')
      .update(readFileSync(join(root, SITES_FILE)))
      .digest('hex')
      .slice(0, 16);
    expect(records.map(({ at, line: _line, ...rest }) => ({ ...rest, at: typeof at }))).toEqual([
      ...[true, true].map((baselined) => ({
        tripwire: 'mongoose-tripwire',
        v: 1,
        at: 'string',
        pid: process.pid,
        root,
        model: 'AccessToken',
        operation: 'create',
        kind: 'create',
        file: SITES_FILE,
        function: 'issueLegacy',
        location: expect.stringMatching(new RegExp(`^legacy/baseline-sites\\.mjs:${line('issueLegacy.first')}:\\d+$`)),
        source,
        baselined,
        blocked: false,
      })),
      expect.objectContaining({ operation: 'updateOne', function: 'renameUser', baselined: false, blocked: false }),
      expect.objectContaining({ operation: 'updateOne', function: 'renameUser', baselined: false, blocked: true }),
    ]);
  });

  it('never throws into the app: an unwritable file is a fault, and the write goes on', async () => {
    const directory = join(work, 'a-directory');
    mkdirSync(directory, { recursive: true });
    process.env.TRIPWIRE_RECORD = directory;
    const { T, faults } = await tokenModel({ statsd: false });
    const written = nextToken();
    await legacy.renameUser(T, written);
    await legacy.issueLegacy(T, written, 'first');
    await flush();
    expect(await T.countDocuments({ token: written })).toBe(1);
    expect(faults.some((f) => (f as Error & { reason?: string }).reason === 'record_failed' && f.message.includes(directory))).toBe(true);
  });
});

// ---- The CLI ----

const cli = join(fileURLToPath(new URL('../', import.meta.url)), 'dist', 'cli', 'main.js');
interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}
function baselineCli(args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, 'baseline', ...args], { cwd, timeout: 45_000 }, (error, stdout, stderr) => {
      const failure = error as (Error & { code?: number | string }) | null;
      resolve({ code: failure ? (typeof failure.code === 'number' ? failure.code : -1) : 0, stdout, stderr });
    });
  });
}
const explain = (run: Run) => `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;

/** A record line as the plugin writes it (source null: no freshness check unless given). */
function recordLine(fields: {
  model?: string;
  operation?: string;
  file: string;
  function: string;
  location: string;
  source?: string | null;
  root?: string;
}): string {
  return JSON.stringify({
    tripwire: 'mongoose-tripwire',
    v: 1,
    at: new Date().toISOString(),
    pid: 1,
    root: fields.root ?? '/nowhere',
    model: fields.model ?? 'AccessToken',
    operation: fields.operation ?? 'create',
    kind: 'create',
    file: fields.file,
    function: fields.function,
    location: fields.location,
    source: fields.source ?? null,
    baselined: false,
    blocked: false,
  });
}

describe('npx mongoose-tripwire baseline', () => {
  const dir = () => mkdtempSync(join(work, 'cli-'));

  it(
    'writes a stable, one-entry-per-line baseline counting distinct call sites; --check names what is new; --prune shrinks ' + 'it',
    async () => {
      const cwd = dir();
      writeFileSync(
        join(cwd, 'a.jsonl'),
        [
          recordLine({ file: 'src/legacy/login.ts', function: 'login', location: 'src/legacy/login.ts:10:5' }),
          recordLine({ file: 'src/legacy/login.ts', function: 'login', location: 'src/legacy/login.ts:10:5' }), // the same call site again
          recordLine({ file: 'src/legacy/login.ts', function: 'login', location: 'src/legacy/login.ts:14:5' }),
          '',
        ].join('\n'),
      );
      const cleanup = {
        operation: 'deleteMany',
        file: 'src/admin/cleanup.ts',
        function: '<anonymous>',
        location: 'src/admin/cleanup.ts:3:1',
      };
      writeFileSync(join(cwd, 'b.jsonl'), `${recordLine(cleanup)}\n`);

      const write = await baselineCli(['a.jsonl', 'b.jsonl'], cwd);
      expect(write.code, explain(write)).toBe(0);
      expect(write.stdout).toMatch(
        /^wrote tripwire-baseline\.json: 2 entries \(2 added, 0 grown, 0 lowered, 0 dropped\) from 4 recorded rogue write\(s\)/,
      );
      const text = readFileSync(join(cwd, 'tripwire-baseline.json'), 'utf8');
      expect(text).toBe(
        [
          '{',
          '  "$comment": "Known rogue writes (mongoose-tripwire). Written by `npx mongoose-tripwire baseline`; ' +
            'it should only shrink. See ' +
            'the README, \\"Ratcheting a migration\\".",',
          '  "version": 1,',
          '  "entries": [',
          '    {"model":"AccessToken","operation":"deleteMany","file":"src/admin/cleanup.ts","function":"<anonymous>","count":1},',
          '    {"model":"AccessToken","operation":"create","file":"src/legacy/login.ts","function":"login","count":2}',
          '  ]',
          '}',
          '',
        ].join('\n'),
      );
      // The same records in another order write the same bytes.
      const again = await baselineCli(['b.jsonl', 'a.jsonl', '--out', 'again.json'], cwd);
      expect(again.code, explain(again)).toBe(0);
      expect(readFileSync(join(cwd, 'again.json'), 'utf8')).toBe(text);

      const check = await baselineCli(['a.jsonl', 'b.jsonl', '--check'], cwd);
      expect(check.code, explain(check)).toBe(0);
      expect(check.stdout).toMatch(/covers every rogue call site recorded \(3 call site\(s\), 4 write\(s\)\)/);

      // A new call site of a known key, and a new key: the baseline would grow.
      writeFileSync(
        join(cwd, 'c.jsonl'),
        [
          recordLine({ file: 'src/legacy/login.ts', function: 'login', location: 'src/legacy/login.ts:20:5' }),
          recordLine({ operation: 'updateOne', file: 'src/jobs/rotate.ts', function: 'rotate', location: 'src/jobs/rotate.ts:8:9' }),
          '',
        ].join('\n'),
      );
      const grows = await baselineCli(['a.jsonl', 'b.jsonl', 'c.jsonl', '--check'], cwd);
      expect(grows.code, explain(grows)).toBe(1);
      expect(grows.stderr).toContain('2 new rogue call site key(s), not in tripwire-baseline.json');
      expect(grows.stderr).toContain(
        '+ AccessToken.updateOne in src/jobs/rotate.ts (function rotate): 1 call site(s), the baseline allows 0: src/jobs/rotate.ts:8:9',
      );
      expect(grows.stderr).toContain(
        '+ AccessToken.create in src/legacy/login.ts (function login): 3 call site(s), the baseline allows 2: src/legacy/login.ts:10:5, ' +
          'src/legacy/login.ts:14:5, src/legacy/login.ts:20:5',
      );
      expect(grows.stderr).toContain('accept them: mongoose-tripwire baseline a.jsonl b.jsonl c.jsonl --out tripwire-baseline.json');
      expect(readFileSync(join(cwd, 'tripwire-baseline.json'), 'utf8')).toBe(text); // --check writes nothing

      // Only part of the app recorded: without --prune nothing is lost; with --check --prune, it could shrink.
      const partial = await baselineCli(['b.jsonl', '--check'], cwd);
      expect(partial.code, explain(partial)).toBe(0);
      expect(partial.stderr).toMatch(
        new RegExp(
          String.raw`1 entry of tripwire-baseline\.json can shrink[\s\S]*- AccessToken\.create` +
            String.raw` in src\/legacy\/login\.ts \(function login\): 2 known, 0 seen`,
        ),
      );
      const strict = await baselineCli(['b.jsonl', '--check', '--prune'], cwd);
      expect(strict.code, explain(strict)).toBe(1);
      const keep = await baselineCli(['b.jsonl'], cwd);
      expect(keep.code, explain(keep)).toBe(0);
      expect(readFileSync(join(cwd, 'tripwire-baseline.json'), 'utf8')).toBe(text);

      writeFileSync(
        join(cwd, 'fixed.jsonl'),
        `${recordLine({ file: 'src/legacy/login.ts', function: 'login', location: 'src/legacy/login.ts:14:5' })}\n`,
      );
      const pruned = await baselineCli(['fixed.jsonl', '--prune'], cwd);
      expect(pruned.code, explain(pruned)).toBe(0);
      expect(pruned.stdout).toMatch(/1 entry \(0 added, 0 grown, 1 lowered, 1 dropped\)/);
      expect(readFileSync(join(cwd, 'tripwire-baseline.json'), 'utf8')).toContain(
        '    {"model":"AccessToken","operation":"create","file":"src/legacy/login.ts","function":"login","count":1}\n  ]',
      );

      // Nothing rogue recorded any more: an empty record prunes the baseline to no entries.
      writeFileSync(join(cwd, 'empty.jsonl'), '');
      expect((await baselineCli(['empty.jsonl', '--prune'], cwd)).code).toBe(0);
      expect(JSON.parse(readFileSync(join(cwd, 'tripwire-baseline.json'), 'utf8'))).toMatchObject({ version: 1, entries: [] });
    },
  );

  it('bad, missing or stale files are clear errors (exit 2), never approvals', async () => {
    const cwd = dir();
    const good = recordLine({ file: 'src/a.ts', function: 'f', location: 'src/a.ts:1:1' });
    writeFileSync(join(cwd, 'good.jsonl'), `${good}\n`);
    writeFileSync(join(cwd, 'cut.jsonl'), `${good}\n${good.slice(0, 40)}\n`);
    writeFileSync(join(cwd, 'other.jsonl'), '{"level":"info","msg":"hello"}\n');
    writeFileSync(join(cwd, 'v2.jsonl'), `${good.replace('"v":1', '"v":2')}\n`);
    writeFileSync(join(cwd, 'bad-baseline.json'), '{"version":1,"entries":[{"model":"A"}]}');
    // Recorded against files that changed, or vanished, since.
    const app = join(cwd, 'app');
    mkdirSync(join(app, 'src'), { recursive: true });
    writeFileSync(join(app, 'src/a.ts'), 'export const a = 2;\n');
    const hashOfOld = createHash('sha256').update('export const a = 1;\n').digest('hex').slice(0, 16);
    writeFileSync(
      join(cwd, 'changed.jsonl'),
      `${recordLine({ root: app, file: 'src/a.ts', function: 'f', location: 'src/a.ts:1:1', source: hashOfOld })}\n`,
    );
    writeFileSync(
      join(cwd, 'vanished.jsonl'),
      `${recordLine({ root: app, file: 'src/gone.ts', function: 'f', location: 'src/gone.ts:1:1', source: hashOfOld })}\n`,
    );

    const cases: Array<[string[], RegExp]> = [
      [[], /name at least one record file/],
      [['missing.jsonl'], /record missing\.jsonl does not exist: run the app or its tests with TRIPWIRE_RECORD=missing\.jsonl first/],
      [['cut.jsonl'], /record cut\.jsonl:2 is not valid JSON/],
      [['other.jsonl'], /record other\.jsonl:1 is not a mongoose-tripwire record line/],
      [['v2.jsonl'], /record v2\.jsonl:1 has record version 2/],
      [['good.jsonl', '--out', 'bad-baseline.json'], /baseline bad-baseline\.json, entries\[0\]: "operation" must be a non-empty string/],
      [['good.jsonl', '--check', '--out', 'nowhere.json'], /baseline nowhere\.json does not exist, so there is nothing to check against/],
      [
        ['changed.jsonl'],
        new RegExp(
          String.raw`record changed\.jsonl:1 \(AccessToken\.create at src\/a\.ts:1:1, .*\)` +
            String.raw` is stale: src\/a\.ts changed since it was recorded; delete the record and record again`,
        ),
      ],
      [['vanished.jsonl'], /is stale: .*src\/gone\.ts no longer exists \(made under another root\? pass --root\)/],
      [['good.jsonl', '--frobnicate'], /Unknown option '--frobnicate'/],
    ];
    for (const [args, problem] of cases) {
      const run = await baselineCli(args, cwd);
      expect(run.code, `${args.join(' ')}\n${explain(run)}`).toBe(2);
      expect(run.stderr, args.join(' ')).toMatch(problem);
      expect(existsSync(join(cwd, 'tripwire-baseline.json')), args.join(' ')).toBe(false);
    }
    // --root points the freshness check at the app's current checkout.
    const moved = await baselineCli(['vanished.jsonl', '--root', join(cwd, 'elsewhere')], cwd);
    expect(moved.stderr).toMatch(/elsewhere\/src\/gone\.ts no longer exists; delete/);
  });
});
