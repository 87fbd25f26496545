/**
 * Fault injection: whatever goes wrong inside the plugin or around it, the host write succeeds with
 * its normal result, nothing is thrown or rejected into the app, and the fault is visible once.
 */
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import StatsD from 'hot-shots';
import mongoose from 'mongoose';
import { describe, expect, it } from 'vitest';
import { close } from '../src/index.js';
import { tripwire } from '../src/plugin.js';
import { describeTarget } from '../src/report/datadog-sink.js';
import type { BypassReport, TripwireOptions } from '../src/types.js';
import { verify } from '../src/verify.js';
// @ts-expect-error plain ESM fixtures without types
import { writes as authWrites } from './fixtures/app/auth/writes.mjs';
// @ts-expect-error plain ESM fixtures without types
import { writes as legacyWrites } from './fixtures/app/legacy/writes.mjs';
// @ts-expect-error plain ESM fixtures without types
import { fixtureDir, siteLine } from './fixtures/app/matrix.mjs';
// @ts-expect-error plain ESM fixtures without types
import { tokenSchema } from './fixtures/app/models.mjs';
import { connect } from './support/connect.js';
import { listenerSuite } from './support/listener-suite.js';
import { scaled, TEST_SCALE } from './support/scale.js';
import { settle, waitFor } from './support/wait.js';
import { captureWarnings } from './support/warnings.js';

type Model = mongoose.Model<Record<string, unknown>>;
type Write = (T: Model, c: { token(): string; id?: unknown; opts: object }) => Promise<unknown>;

let count = 0;

const suite = listenerSuite(() => connect('safety'));

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function model(options: Partial<TripwireOptions> = {}, schema = tokenSchema() as mongoose.Schema) {
  const reports: BypassReport[] = [];
  const faults: Error[] = [];
  schema.plugin(tripwire, {
    approved: ['auth/**'],
    root: fixtureDir as string,
    statsd: { host: '127.0.0.1', port: suite.listener.port },
    onBypass: (report) => void reports.push(report),
    onError: (error) => void faults.push(error),
    ...options,
  });
  const T = suite.connection.model(`SafeToken${++count}`, schema) as unknown as Model;
  await T.init();
  return { T, reports, faults };
}

const rogueCreate = legacyWrites['Model.create(single)'] as Write;
const ctx = (token = `tok_${Math.random()}`) => ({ token: () => token, opts: {} });

describe('faults around the plugin', () => {
  it('onBypass throwing or rejecting is reported once, and the write still resolves', async () => {
    for (const onBypass of [
      () => {
        throw new Error('boom');
      },
      () => Promise.reject(new Error('nope')),
    ]) {
      const { T, faults } = await model({ onBypass });
      for (let i = 0; i < 3; i++) expect(await rogueCreate(T, ctx())).toHaveProperty('_id');
      await waitFor(() => faults.length > 0, 'the onBypass fault');
      await settle();
      expect(faults).toHaveLength(1);
      expect(faults[0]!.message).toMatch(/onBypass/);
    }
  });

  it('a dead agent (nothing listening) loses no write and throws nothing', async () => {
    const { T, reports } = await model({ statsd: { host: '127.0.0.1', port: 9, maxBufferSize: 0 } });
    expect(await rogueCreate(T, ctx())).toHaveProperty('_id');
    await waitFor(() => reports.length > 0, 'the report');
    await settle();
    expect(reports).toHaveLength(1);
  });

  it('a 9 000-character tag is cut to 200 characters: the event still arrives, and the write is unaffected', async () => {
    const { T, faults } = await model({ tags: { huge: 'x'.repeat(9000) } });
    expect(await rogueCreate(T, ctx())).toHaveProperty('_id');
    await suite.listener.waitFor((all) => all.some((d) => d.type === 'event'));
    const event = suite.listener.datagrams.find((d) => d.type === 'event')!;
    expect(event.type === 'event' && event.tags.find((t) => t.startsWith('huge:'))).toBe(`huge:${'x'.repeat(192)}...`);
    expect(faults).toEqual([]);
    expect(await T.countDocuments()).toBe(1);
  });

  it(
    "an event that cannot fit in a datagram even without its own tags (11 KB of the client's global tags) is a visible fault, and the " +
      'write is unaffected',
    async () => {
      const client = new StatsD({
        host: '127.0.0.1',
        port: suite.listener.port,
        maxBufferSize: 0,
        globalTags: Array.from({ length: 60 }, (_, i) => `g${i}:${'y'.repeat(190)}`),
      });
      try {
        const { T, faults } = await model({ statsd: client });
        expect(await rogueCreate(T, ctx())).toHaveProperty('_id');
        await expect.poll(() => faults.map((f) => f.message).join('\n')).toMatch(/bypass event.*fit/);
        expect(faults.map((f) => f.message).join('\n')).toMatch(/tripwire\.watching.*cannot fit/);
        expect(await T.countDocuments()).toBe(1);
      } finally {
        await new Promise<void>((resolve) => client.close(() => resolve()));
      }
    },
  );

  it('a UDS socket that does not exist is a visible fault, not a crash', async () => {
    const { T, faults } = await model({ statsd: { protocol: 'uds', path: '/nonexistent/dsd.socket' } });
    expect(await rogueCreate(T, ctx())).toHaveProperty('_id');
    await expect.poll(() => faults.length).toBeGreaterThan(0);
  });

  it(
    'works when the app set Error.stackTraceLimit = 0, replaced prepareStackTrace, or froze Error — and restores them ' + 'exactly',
    async () => {
      const { T, reports } = await model();
      const savedLimit = Error.stackTraceLimit;
      const savedPrepare = Error.prepareStackTrace;
      const appPrepare = (error: Error) => `custom:${error.message}`;
      try {
        Error.stackTraceLimit = 0;
        Error.prepareStackTrace = appPrepare;
        await rogueCreate(T, ctx());
        await (authWrites['Model.create(single)'] as Write)(T, ctx());
        expect(Error.stackTraceLimit).toBe(0);
        expect(Error.prepareStackTrace).toBe(appPrepare);
      } finally {
        Error.stackTraceLimit = savedLimit;
        Error.prepareStackTrace = savedPrepare;
      }
      await waitFor(() => reports.length > 0, 'the report');
      await settle();
      expect(reports.map((r) => r.callSite.file)).toEqual([`${fixtureDir as string}legacy/writes.mjs`]);
    },
  );

  // Each configuration in its own process: a frozen Error cannot be thawed. 8 runs seed one document
  // each through the driver; the rogue create, rogue raw insert, approved create and approved raw
  // insert add one each: 12 documents written, whatever the app did to Error.
  for (const configuration of [
    'frozen',
    'frozen with a custom prepareStackTrace',
    'frozen with stackTraceLimit 0',
    'throwing getters',
    'read-only prepareStackTrace',
    'accessor prepareStackTrace',
    'no-op captureStackTrace',
  ]) {
    it(`attributes every write exactly, loses none and throws nothing into the app with Error ${configuration}`, async () => {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [join(fixtureDir as string, 'run-error-settings.mjs'), join(process.cwd(), 'dist', 'index.js'), configuration],
        { env: process.env },
      );
      const result = JSON.parse(stdout) as Record<
        'rogue' | 'rogueCreate' | 'rogueRaw' | 'deepRogue',
        Array<{ file: string; line: number }>
      > & { approved: number; deepApproved: number; written: number; thrown: string[]; faults: string[] };
      expect(result.thrown).toEqual([]);
      expect(result.written).toBe(12);
      expect(result.approved).toBe(0);
      expect(result.deepApproved).toBe(0); // the deciding frame is 15 pass-through frames up
      const at = (file: string, name: string) => ({ file: join(fixtureDir as string, file), line: siteLine(file, name) });
      expect(result.rogue.map(({ file, line }) => ({ file, line }))).toEqual([at('legacy/writes.mjs', 'Model.updateOne')]);
      expect(result.rogueCreate.map(({ file, line }) => ({ file, line }))).toEqual([at('legacy/writes.mjs', 'Model.create(single)')]);
      expect(result.rogueRaw.map(({ file, line }) => ({ file, line }))).toEqual([at('legacy/raw.mjs', 'collection.insertOne')]);
      expect(result.deepRogue.map(({ file, line }) => ({ file, line }))).toEqual([at('legacy/handlers.mjs', 'legacy.deepRogue')]);
      expect(result.faults).toEqual([]);
    });
  }

  it('handles odd _ids: strings, numbers, compound objects — each only as a keyed hash, never its value', async () => {
    for (const [type, id, shown] of [
      [String, 'custom-id', 'custom-id'],
      [Number, 424242, '424242'],
      [Object, { tenant: 'acme', n: 7 }, 'acme'],
    ] as const) {
      const schema = new mongoose.Schema({ _id: type, token: String });
      const { T, reports } = await model({}, schema);
      await (legacyWrites['Model.insertMany'] as Write)(T, ctx()).catch(() => undefined);
      await T.collection.insertOne({ _id: id as never, token: 'x' });
      await T.deleteOne({ _id: id }); // rogue: this test file is not approved
      await waitFor(() => reports.some((r) => r.operation === 'deleteOne'), 'the deleteOne report');
      await settle();
      const ids = reports.flatMap((r) => r.documentIds);
      expect(ids.length).toBeGreaterThan(0);
      expect(ids.every((i) => /^hmac:[0-9a-f]{32}$/.test(i))).toBe(true);
      expect(JSON.stringify(reports)).not.toContain(shown);
    }
  });

  it('a 10 000-document insertMany is one report with a capped id list', async () => {
    const { T, reports } = await model({ maxDocumentIds: 20 });
    await T.insertMany(Array.from({ length: 10_000 }, (_, i) => ({ token: `bulk_${i}` })));
    await waitFor(() => reports.length > 0, 'the insertMany report');
    await settle();
    expect(reports).toHaveLength(1);
    expect(reports[0]!.documentIds).toHaveLength(20);
    expect(reports[0]!.documentIdsOmitted).toBe(9_980);
  });

  it('a write 500 frames deep, and one from eval / new Function code, are attributed', async () => {
    const { T, reports } = await model({ maxFrames: 50 });
    const recurse = (n: number): Promise<unknown> => (n === 0 ? rogueCreate(T, ctx()) : recurse(n - 1));
    await recurse(500);
    // eslint-disable-next-line no-new-func
    await (new Function('T', 'return T.create({ token: "tok_fn_" + Math.random() })') as (t: Model) => Promise<unknown>)(T);
    await waitFor(() => reports.length >= 2, 'two reports');
    await settle();
    expect(reports).toHaveLength(2);
    expect(reports[0]!.stack).toHaveLength(50);
    expect(reports[0]!.framesOmitted).toBeGreaterThan(0);
    expect(reports[1]!.callSite.file).toMatch(/anonymous|eval/);
  });

  it('1 000 concurrent rogue writes from Promise.all: every one counted and attributed, memory flat after', async () => {
    const { T, reports } = await model();
    const round = async () => {
      reports.length = 0;
      await Promise.all(Array.from({ length: 1000 }, (_, i) => rogueCreate(T, ctx(`tok_c_${count}_${i}_${Math.random()}`))));
      await waitFor(() => reports.length >= 1000, '1 000 reports');
      await settle();
      expect(reports).toHaveLength(1000);
      expect(new Set(reports.map((r) => r.fingerprint)).size).toBe(1);
    };
    await round();
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 3; i++) await round();
    gc();
    reports.length = 0;
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(40 * 1024 * 1024);
  });
});

describe('never silent', () => {
  it('verify() reads the hooks back from Mongoose and reports what is instrumented', async () => {
    const { T } = await model({ approved: ['auth/**', 'no-such-folder/**'], models: [`SafeToken${count + 1}`, 'NeverCompiled'] });
    const result = verify();
    const registration = result.registrations.find((r) => r.models.some((m) => m.model === T.modelName))!;
    expect(registration.models).toEqual([{ model: T.modelName, missing: [] }]);
    expect(registration.approved).toEqual([
      { pattern: 'auth/**', files: readdirSync(`${fixtureDir as string}auth`).length },
      { pattern: 'no-such-folder/**', files: 0 },
    ]);
    expect(registration.modelsNeverCompiled).toEqual(['NeverCompiled']);
    expect(result.ok).toBe(false);
    expect(result.problems.join('\n')).toMatch(/no-such-folder/);
    expect(registration.statsd).toBe(`udp://127.0.0.1:${suite.listener.port}`);
  });

  it('verify() notices a model whose entry point was taken away', async () => {
    const { T } = await model();
    delete (T as unknown as Record<string, unknown>).insertMany; // back to Mongoose's own, unwatched
    const check = verify()
      .registrations.flatMap((r) => r.models)
      .find((m) => m.model === T.modelName)!;
    expect(check.missing).toEqual(['Model.insertMany wrapper']);
  });

  it('sends a tripwire.watching heartbeat per watched model', async () => {
    const { T } = await model({ heartbeatMs: 1_000 });
    await suite.listener.waitFor(
      (all) =>
        all.filter((d) => d.type === 'metric' && d.name === 'tripwire.watching' && d.tags.includes(`model:${T.modelName}`)).length >= 2,
    );
  });

  it('warns at registration when no statsd option and no DD_AGENT_HOST leave the target unknown', async () => {
    const saved = process.env.DD_AGENT_HOST;
    delete process.env.DD_AGENT_HOST;
    try {
      const { faults } = await model({ statsd: undefined });
      expect(faults.map((f) => f.message).join('\n')).toMatch(
        /no statsd option and no DD_AGENT_HOST: events go to udp:\/\/127\.0\.0\.1:8125/,
      );
    } finally {
      if (saved !== undefined) process.env.DD_AGENT_HOST = saved;
    }
  });

  it(
    'with DD_DOGSTATSD_PORT, the default-target warning names the port the datagrams really go to, and boot notices are not counted as ' +
      'tripwire.errors',
    async () => {
      const saved = { host: process.env.DD_AGENT_HOST, port: process.env.DD_DOGSTATSD_PORT };
      delete process.env.DD_AGENT_HOST;
      process.env.DD_DOGSTATSD_PORT = String(suite.listener.port);
      try {
        // Three boot notices: the default target, a pattern matching nothing, and verify()'s problem about it.
        const { T, faults } = await model({ statsd: undefined, approved: ['auth/**', 'no-such-folder/**'], rateLimit: false });
        const target = `udp://127.0.0.1:${suite.listener.port}`;
        expect(faults.find((f) => (f as { reason?: string }).reason === 'statsd_default_target')?.message).toMatch(
          `events go to ${target},`,
        );
        expect(faults.map((f) => f.message).join('\n')).not.toMatch(/:8125\b/);
        const check = verify();
        expect(check.registrations.find((r) => r.models.some((m) => m.model === T.modelName))!.statsd).toBe(target);
        expect(faults.map((f) => (f as { reason?: string }).reason)).toEqual(
          expect.arrayContaining(['statsd_default_target', 'approved_matches_nothing', 'verify']),
        );
        // A real fault during the run still is counted: the onBypass option throwing.
        const { T: Faulty } = await model({
          statsd: undefined,
          onBypass: () => {
            throw new Error('boom');
          },
        });
        await rogueCreate(T, ctx());
        await rogueCreate(Faulty, ctx());
        await settle();
        await close();
        await suite.listener.waitFor(
          (all) =>
            all.some((d) => d.type === 'metric' && d.name === 'tripwire.errors') &&
            all.some((d) => d.type === 'metric' && d.name === 'tripwire.bypasses'),
        );
        const reasons = suite.listener.datagrams
          .filter((d) => d.type === 'metric' && d.name === 'tripwire.errors')
          .flatMap((d) => (d.type === 'metric' ? d.tags : []));
        expect(reasons).toEqual(['reason:onBypass_threw']);
        expect(
          suite.listener.datagrams.some(
            (d) => d.type === 'metric' && d.name === 'tripwire.bypasses' && d.tags.includes(`model:${T.modelName}`),
          ),
        ).toBe(true);
        // The other transports hot-shots reads from the environment are named as they are.
        expect(describeTarget({ protocol: 'uds', path: '/var/run/datadog/dsd.socket' })).toBe('unix:///var/run/datadog/dsd.socket');
        expect(describeTarget({ protocol: 'tcp', host: 'agent', port: 8126 })).toBe('tcp://agent:8126');
      } finally {
        if (saved.host !== undefined) process.env.DD_AGENT_HOST = saved.host;
        if (saved.port === undefined) delete process.env.DD_DOGSTATSD_PORT;
        else process.env.DD_DOGSTATSD_PORT = saved.port;
      }
    },
  );

  it('enabled: false registers nothing and says so once', async () => {
    const made: { T?: Model } = {};
    const warnings = await captureWarnings(async () => {
      const options = { approved: ['auth/**'], enabled: false, statsd: false as const };
      const schema = tokenSchema() as mongoose.Schema;
      schema.plugin(tripwire, options);
      made.T = suite.connection.model(`Disabled${++count}`, schema) as unknown as Model;
      await rogueCreate(made.T, ctx());
      await settle();
    });
    expect(warnings.map((w) => [w.name, (w as { code?: string }).code, w.message])).toEqual([
      ['TripwireWarning', 'TRIPWIRE_DISABLED', 'mongoose-tripwire is disabled (enabled: false): no write is checked or reported'],
    ]);
    const T = made.T!;
    expect(
      verify()
        .registrations.flatMap((r) => r.models)
        .some((m) => m.model === T.modelName),
    ).toBe(false);
  });
});

describe('nothing leaks', () => {
  // TRIPWIRE_TEST_SCALE=1 (CI): 100 batches of 100 writes, 10 000 cases.
  const BATCHES = scaled(100);
  it(
    `no field or filter value written through any path, rogue or approved, appears in a report or a datagram (${BATCHES * 100} cases)`,
    async () => {
      const { T, reports } = await model({ rateLimit: false });
      const paths = [
        'Model.create(single)',
        'Model.insertOne',
        'new Model().save()',
        'Model.insertMany',
        'Model.bulkWrite(insert)',
        'Model.updateOne(upsert)',
        'Model.findOneAndUpdate(upsert)',
      ];
      const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@.+_-éü漢🔑';
      const random = (n: number) =>
        Array.from({ length: n }, () => [...alphabet][Math.floor(Math.random() * [...alphabet].length)]).join('');
      const secrets: string[] = [];
      for (let batch = 0; batch < BATCHES; batch++) {
        await Promise.all(
          Array.from({ length: 100 }, (_, i) => {
            const secret = i % 3 === 0 ? `${random(8)}@${random(6)}.example` : `sk_${random(24)}`;
            secrets.push(secret);
            const table = (i % 2 === 0 ? legacyWrites : authWrites) as Record<string, Write>;
            return table[paths[(batch + i) % paths.length]!]!(T, { token: () => `${secret}#${Math.random()}`, opts: {} });
          }),
        );
      }
      await settle();
      await close();
      await settle(200); // whatever datagrams arrive are searched; none is waited for
      expect(secrets).toHaveLength(BATCHES * 100);
      expect(reports.length).toBeGreaterThan(BATCHES * 40);
      const everything = JSON.stringify(reports) + JSON.stringify(suite.listener.datagrams);
      const leaked = foundIn(everything, secrets);
      expect(leaked).toEqual([]);
    },
    60_000 + TEST_SCALE * 540_000,
  ); // bounded work: 10 minutes at full size on a loaded machine
});

/**
 * `secrets.filter((secret) => text.includes(secret))`, in one pass over the text instead of one per
 * secret (quadratic at 10 000 secrets): every position is looked up by its first 8 code units.
 */
function foundIn(text: string, secrets: string[]): string[] {
  const K = 8;
  expect(secrets.every((secret) => secret.length >= K)).toBe(true);
  const byPrefix = new Map<string, string[]>();
  for (const secret of secrets) {
    const key = secret.slice(0, K);
    const list = byPrefix.get(key);
    if (list) list.push(secret);
    else byPrefix.set(key, [secret]);
  }
  const found = new Set<string>();
  for (let i = 0; i + K <= text.length; i++) {
    const candidates = byPrefix.get(text.slice(i, i + K));
    if (candidates) for (const secret of candidates) if (text.startsWith(secret, i)) found.add(secret);
  }
  return secrets.filter((secret) => found.has(secret));
}
