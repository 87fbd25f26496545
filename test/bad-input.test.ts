/**
 * Bad input, as a new user or a wrong setting gives it (issue 27's table, one test per row): a clear
 * error naming the option or file, or a bounded warning; never a hang, a flood or a silent no-op.
 * Cases that could block run in their own process with a timeout (support/child-script.ts).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TripwireConfigError } from '../src/errors.js';
import { resolveOptions } from '../src/options.js';
import { tripwire } from '../src/plugin.js';
import { verify } from '../src/verify.js';
import { explainRun, runScript } from './support/child-script.js';

const work = mkdtempSync(join(tmpdir(), 'tripwire-bad-input-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A small app under a root of its own: an auth module (approved) and a script that writes (rogue). */
function appRoot(name: string): string {
  const root = join(work, name);
  mkdirSync(join(root, 'auth'), { recursive: true });
  writeFileSync(join(root, 'auth', 'tokens.mjs'), 'export const issue = (T) => T.create({ token: "t" });\n');
  return root;
}

const mkfifo = (path: string): string => {
  execFileSync('mkfifo', [path]);
  return path;
};

describe('files the plugin opens are looked at first: never a blocking open or an unbounded read', () => {
  it('TRIPWIRE_RECORD naming a FIFO: a record_failed warning, and the app writes on (it used to hang at registration)', {
    timeout: 30_000,
  }, async () => {
    const root = appRoot('record-fifo');
    const fifo = mkfifo(join(work, 'record.fifo'));
    const run = await runScript(
      join(root, 'app.mjs'),
      [
        'const faults = [];',
        'const schema = new mongoose.Schema({ token: String });',
        "schema.plugin(tw.tripwire, { approved: ['auth/**'], root: import.meta.dirname, statsd: false, onError: (e) => faults.push(e) });",
        "const dbName = 'bad_input_fifo_' + process.pid;",
        'const connection = await mongoose.createConnection(process.env.MONGODB_URI, { dbName }).asPromise();',
        "const T = connection.model('AccessToken', schema);",
        "await T.create({ token: 'rogue' });",
        'await tw.flush();',
        "const written = await T.countDocuments({ token: 'rogue' });",
        'console.log(JSON.stringify({ written, faults: faults.map((f) => [f.reason, f.message]) }));',
        'await connection.close();',
      ].join('\n'),
      { TRIPWIRE_RECORD: fifo },
    );
    expect(run.timedOut, explainRun(run)).toBe(false);
    expect(run.code, explainRun(run)).toBe(0);
    const result = JSON.parse(run.stdout) as { written: number; faults: Array<[string, string]> };
    expect(result.written).toBe(1);
    const recordFaults = result.faults.filter(([reason]) => reason === 'record_failed');
    expect(recordFaults).toHaveLength(1); // once: recording stopped, not retried at every write
    expect(recordFaults[0]![1]).toContain(fifo);
    expect(recordFaults[0]![1]).toContain('a FIFO (named pipe), not a file');
  });

  it('TRIPWIRE_RECORD naming a device is a record_failed warning too, and nothing is written to it', () => {
    const faults: Error[] = [];
    const saved = process.env.TRIPWIRE_RECORD;
    process.env.TRIPWIRE_RECORD = '/dev/null';
    try {
      tripwire(new mongoose.Schema({ token: String }), {
        approved: ['auth/**'],
        root: appRoot('record-dev'),
        statsd: false,
        onError: (e) => void faults.push(e),
      });
    } finally {
      if (saved === undefined) delete process.env.TRIPWIRE_RECORD;
      else process.env.TRIPWIRE_RECORD = saved;
    }
    expect(faults.map((f) => f.message)).toEqual([
      expect.stringMatching(/TRIPWIRE_RECORD file \/dev\/null: it is a character device, not a file/),
    ]);
  });

  const registerWithBaseline = (root: string, baseline: string) =>
    [
      'try {',
      `  const options = { approved: ['auth/**'], root: ${JSON.stringify(root)}, statsd: false, baseline: ${JSON.stringify(baseline)} };`,
      '  tw.tripwire(new mongoose.Schema({ token: String }), options);',
      '  console.log(JSON.stringify({ registered: true }));',
      '} catch (error) {',
      '  console.log(JSON.stringify({ name: error.name, message: error.message }));',
      '}',
    ].join('\n');

  it("baseline: '/dev/zero' is a TripwireConfigError, read not at all (it used to read 1 GB in 15 s)", { timeout: 30_000 }, async () => {
    const root = appRoot('baseline-dev-zero');
    const run = await runScript(join(root, 'app.mjs'), registerWithBaseline(root, '/dev/zero'));
    expect(run.timedOut, explainRun(run)).toBe(false);
    expect(JSON.parse(run.stdout)).toEqual({
      name: 'TripwireConfigError',
      message: expect.stringContaining('option "baseline": baseline /dev/zero is a character device, not a file'),
    });
  });

  it('baseline naming a FIFO is a TripwireConfigError (it used to hang forever)', { timeout: 30_000 }, async () => {
    const root = appRoot('baseline-fifo');
    mkfifo(join(root, 'tripwire-baseline.json'));
    const run = await runScript(join(root, 'app.mjs'), registerWithBaseline(root, 'tripwire-baseline.json'));
    expect(run.timedOut, explainRun(run)).toBe(false);
    expect(JSON.parse(run.stdout)).toEqual({
      name: 'TripwireConfigError',
      message: expect.stringMatching(/baseline tripwire-baseline\.json \(.*\) is a FIFO \(named pipe\), not a file/),
    });
  });

  describe('a socket or a directory as baseline', () => {
    let server: Server;
    const socket = join(work, 'baseline.sock');
    beforeAll(() => new Promise<void>((resolve) => (server = createServer().listen(socket, resolve))));
    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    it('is a TripwireConfigError naming the file and what it is', () => {
      const root = appRoot('baseline-kinds');
      expect(() => resolveOptions({ approved: ['auth/**'], root, baseline: socket })).toThrow(
        new RegExp(`baseline ${socket} is a socket, not a file`),
      );
      expect(() => resolveOptions({ approved: ['auth/**'], root, baseline: 'auth' })).toThrow(
        /baseline auth \(.*\) is a directory, not a file/,
      );
    });
  });

  it('a baseline over 16 MB is a TripwireConfigError saying the limit, before it is read', () => {
    const root = appRoot('baseline-large');
    writeFileSync(join(root, 'huge.json'), Buffer.alloc(17 * 1024 * 1024, 0x20));
    expect(() => resolveOptions({ approved: ['auth/**'], root, baseline: 'huge.json' })).toThrow(
      /baseline huge\.json \(.*\) is 17\.0 MB: a baseline is at most 16\.0 MB/,
    );
  });

  it('a 10 MB baseline naming 90,000 missing files loads in linear time, with one bounded warning (was: 5.9 s, 2 million characters)', {
    timeout: 60_000,
  }, async () => {
    const root = appRoot('baseline-stale');
    const pad = 'x'.repeat(20);
    const entries = Array.from({ length: 90_000 }, (_, i) => ({
      model: 'AccessToken',
      operation: 'create',
      file: `gone/deep/folder/f${i}.mjs`,
      function: `legacy${pad}${i}`,
      count: 1,
    }));
    const text = `{"version":1,"entries":[\n${entries.map((e) => JSON.stringify(e)).join(',\n')}\n]}`;
    expect(text.length).toBeGreaterThan(10_000_000);
    writeFileSync(join(root, 'tripwire-baseline.json'), text);
    const run = await runScript(
      join(root, 'app.mjs'),
      [
        'const faults = [];',
        'const started = performance.now();',
        "const options = { approved: ['auth/**'], root: import.meta.dirname, statsd: false, baseline: 'tripwire-baseline.json' };",
        'tw.tripwire(new mongoose.Schema({ token: String }), { ...options, onError: (e) => faults.push(e) });',
        'const ms = performance.now() - started;',
        'console.log(JSON.stringify({ ms, faults: faults.map((f) => [f.reason, f.message]) }));',
      ].join('\n'),
    );
    expect(run.timedOut, explainRun(run)).toBe(false);
    const result = JSON.parse(run.stdout) as { ms: number; faults: Array<[string, string]> };
    // Linear: under a second even on a loaded 2-core machine (JSON.parse, one lookup per folder); a
    // quadratic step on 90,000 entries would take minutes. The bound leaves room for a busy machine.
    expect(result.ms, `registration took ${Math.round(result.ms)} ms`).toBeLessThan(5_000);
    const stale = result.faults.find(([reason]) => reason === 'baseline_stale');
    expect(stale?.[1]).toMatch(
      /has entries for 90000 file\(s\) that do not exist under root .*: gone\/deep\/folder\/f0\.mjs, .* and 89990 more \(moved or deleted/,
    );
    for (const [, message] of result.faults) expect(message.length, message.slice(0, 200)).toBeLessThan(2_000);
  });
});

describe('every option is range-checked', () => {
  const root = appRoot('options');
  const resolveWith = (options: Record<string, unknown>) => () => resolveOptions({ approved: ['auth/**'], root, ...options });

  it('heartbeatMs is within what a timer holds, and at least a second (2 ** 31 fired every 1 ms: 979 gauges in 2 s)', () => {
    for (const heartbeatMs of [2 ** 31, 1, 999, 0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '60000']) {
      expect(resolveWith({ heartbeatMs }), String(heartbeatMs)).toThrow(TripwireConfigError);
      expect(resolveWith({ heartbeatMs }), String(heartbeatMs)).toThrow(
        /option "heartbeatMs" must be an integer from 1000 to 2147483647, got /,
      );
    }
    expect(resolveWith({ heartbeatMs: 1_000 })().heartbeatMs).toBe(1_000);
    expect(resolveWith({ heartbeatMs: 2 ** 31 - 1 })().heartbeatMs).toBe(2 ** 31 - 1);
    expect(resolveWith({})().heartbeatMs).toBe(60_000);
  });

  it("metricPrefix keeps every metric name within Datadog's 200 characters", () => {
    const longest = 'a'.repeat(200 - 'unattributed_writes'.length);
    expect(resolveWith({ metricPrefix: longest })().metricPrefix).toBe(longest);
    expect(resolveWith({ metricPrefix: `${longest}b` })).toThrow(
      /option "metricPrefix" is 182 characters; at most 181, so that unattributed_writes after it stays within Datadog's 200-character/,
    );
  });

  it('statsd client options hot-shots would ignore or replace with a default are errors naming the option', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ port: 'abc' }, /option "statsd\.port" must be an integer from 1 to 65535 \(a number, not a string\), got "abc"/],
      [{ port: '8125' }, /option "statsd\.port" must be an integer/],
      [{ host: 5, port: -1 }, /option "statsd\.host" must be a non-empty host name or IP address, got number 5/],
      [{ host: '127.0.0.1', port: -1 }, /option "statsd\.port" must be an integer from 1 to 65535/],
      [{ port: 0 }, /option "statsd\.port"/],
      [{ port: 65_536 }, /option "statsd\.port"/],
      [{ port: 81.5 }, /option "statsd\.port"/],
      [{ host: '' }, /option "statsd\.host"/],
      [{ protocol: 'bogus' }, /option "statsd\.protocol" must be one of 'udp', 'tcp', 'uds', 'stream', got "bogus"/],
      [{ path: '/var/run/datadog/dsd.socket' }, /option "statsd\.path" is only used with protocol 'uds' \(protocol is 'udp'\)/],
      [{ protocol: 'uds', path: 7 }, /option "statsd\.path" must be the path of the agent's Unix socket, got number 7/],
      [{ protocol: 'uds', host: 'localhost' }, /option "statsd\.host" is not used with protocol 'uds'/],
      [{ protocol: 'stream' }, /option "statsd\.stream" must be a writable stream with protocol 'stream'/],
      [{ sampleRate: 2 }, /option "statsd\.sampleRate" must be a number in \(0, 1\]/],
      [{ bufferFlushInterval: 2 ** 31 }, /option "statsd\.bufferFlushInterval" must be a positive number of milliseconds/],
      [{ hots: 'localhost' }, /option "statsd" has a key hot-shots does not know: "hots"/],
    ];
    for (const [statsd, message] of cases) {
      expect(resolveWith({ statsd }), JSON.stringify(statsd)).toThrow(TripwireConfigError);
      expect(resolveWith({ statsd }), JSON.stringify(statsd)).toThrow(message);
    }
    for (const statsd of [
      { host: '127.0.0.1', port: 8125 },
      { protocol: 'tcp', host: 'agent', port: 8125 },
      { protocol: 'uds', path: '/var/run/datadog/dsd.socket' },
      { protocol: 'uds' },
      { maxBufferSize: 0, globalTags: { team: 'auth' } },
    ]) {
      expect(resolveWith({ statsd })().statsd, JSON.stringify(statsd)).toEqual(statsd);
    }
  });

  it('a value shown in an error is cut short: a 1 MB string is not echoed back', () => {
    expect(resolveWith({ mode: 'x'.repeat(1_000_000) })).toThrow(/got "x{10,}…/);
    const error = (() => {
      try {
        resolveWith({ mode: 'x'.repeat(1_000_000) })();
      } catch (caught) {
        return caught as Error;
      }
    })();
    expect(error?.message.length).toBeLessThan(500);
  });
});

describe('"approves every file" is decided against the app under root', () => {
  /** A tree like the issue's: src, lib, test and scripts folders of .mjs and .js files, and top-level .mjs files. */
  function tree(name: string): string {
    const root = join(work, name);
    const files = [
      'src/auth/tokens.mjs',
      'src/legacy/login.mjs',
      'src/admin/scopes.js',
      'lib/db.mjs',
      'lib/util/x.js',
      'test/login.test.mjs',
      'scripts/seed.mjs',
      'app.mjs',
      'server.mjs',
    ];
    for (const file of files) {
      mkdirSync(join(root, file, '..'), { recursive: true });
      writeFileSync(join(root, file), '');
    }
    mkdirSync(join(root, 'node_modules', 'dep'), { recursive: true });
    writeFileSync(join(root, 'node_modules', 'dep', 'index.ts'), ''); // dependencies are not the app
    return root;
  }

  it('refuses /\\.m?js$/, */** and a brace list of every top folder with the top-level files: each approves every file', () => {
    const root = tree('every');
    const patterns: unknown[][] = [[/\.m?js$/], ['*/**'], ['{src,lib,test,scripts}/**', '*.mjs'], ['**/*.{js,mjs}']];
    for (const approved of patterns) {
      expect(() => resolveOptions({ approved, root }), String(approved)).not.toThrow(); // options alone: fine
      expect(
        () => tripwire(new mongoose.Schema({ a: String }), { approved: approved as never, root, statsd: false }),
        String(approved),
      ).toThrow(TripwireConfigError);
      expect(
        () => tripwire(new mongoose.Schema({ a: String }), { approved: approved as never, root, statsd: false }),
        String(approved),
      ).toThrow(/approves every (application )?file/);
    }
    expect(() =>
      tripwire(new mongoose.Schema({ a: String }), { approved: ['{src,lib,test,scripts}/**', '*.mjs'], root, statsd: false }),
    ).toThrow(
      /option "approved" \(\{src,lib,test,scripts\}\/\*\*, \*\.mjs\) approves every file of the application under root .* \(all 9\)/,
    );
  });

  it('approving more than half of the files is a boot warning and a verify() problem; a narrow pattern is neither', () => {
    const root = join(work, 'half');
    for (let i = 0; i < 12; i++) {
      mkdirSync(join(root, i < 7 ? 'src/auth' : 'src/legacy'), { recursive: true });
      writeFileSync(join(root, i < 7 ? 'src/auth' : 'src/legacy', `f${i}.mjs`), '');
    }
    const faults: Array<Error & { reason?: string }> = [];
    tripwire(new mongoose.Schema({ a: String }), { approved: ['src/auth/**'], root, statsd: false, onError: (e) => void faults.push(e) });
    const broad = faults.find((f) => f.reason === 'approved_too_broad');
    expect(broad?.message).toMatch(/approved \(src\/auth\/\*\*\) approves 7 of the 12 application files under root .*: more than half/);
    expect(verify().problems).toContainEqual(expect.stringMatching(/approves 7 of the 12 application files under root .*half/));

    const narrow: Array<Error & { reason?: string }> = [];
    tripwire(new mongoose.Schema({ a: String }), {
      approved: ['src/auth/f0.mjs'],
      root,
      statsd: false,
      onError: (e) => void narrow.push(e),
    });
    expect(narrow.filter((f) => f.reason === 'approved_too_broad')).toEqual([]);
  });
});
