/**
 * Delivery from every process: short scripts that end naturally, call close(), or process.exit(),
 * run as plain `node` on the built package against a real UDP listener; and flush()/close() in
 * process, which resolve only once every completed rogue write is counted, reported and sent.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type mongoose from 'mongoose';
import { describe, expect, it } from 'vitest';
import { close, flush } from '../src/index.js';
import { tripwire } from '../src/plugin.js';
import type { ParsedDatagram } from '../src/report/dogstatsd.js';
import type { BypassReport, TripwireOptions } from '../src/types.js';
// @ts-expect-error plain ESM fixtures without types
import { writes as legacyWrites } from './fixtures/app/legacy/writes.mjs';
// @ts-expect-error plain ESM fixtures without types
import { fixtureDir, siteLine } from './fixtures/app/matrix.mjs';
// @ts-expect-error plain ESM fixtures without types
import { tokenSchema } from './fixtures/app/models.mjs';
import { connect } from './support/connect.js';
import { listenerSuite } from './support/listener-suite.js';
import { settle } from './support/wait.js';

type Model = mongoose.Model<Record<string, unknown>>;
type Write = (T: Model, c: { token(): string; id?: unknown; opts: object }) => Promise<unknown>;
type EventDatagram = Extract<ParsedDatagram, { type: 'event' }>;

const suite = listenerSuite(() => connect('delivery'));
const SCRIPT = join(fixtureDir as string, 'scripts', 'admin-script.mjs');
const DIST = join(process.cwd(), 'dist', 'index.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function runScript(ending: string, host = '127.0.0.1'): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [SCRIPT, DIST, ending, host],
      { env: { ...process.env, TRIPWIRE_PORT: String(suite.listener.port) }, timeout: 45_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof (error as { code?: unknown }).code === 'number' ? (error as { code: number }).code : null) : 0;
        resolve({ code, stdout, stderr, ms: Date.now() - started });
      },
    );
  });
}

const events = () => suite.listener.datagrams.filter((d): d is EventDatagram => d.type === 'event');
const counterSum = (name: string, tag?: string) =>
  suite.listener.datagrams
    .filter((d) => d.type === 'metric' && d.name === name && (!tag || d.tags.includes(tag)))
    .reduce((sum, d) => sum + (d.type === 'metric' ? d.value : 0), 0);
const printed = (stdout: string) =>
  stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, string>);

describe('a short script delivers, however it ends', () => {
  const first = `scripts/admin-script.mjs:${siteLine('scripts/admin-script.mjs', 'first') as number}`;
  const second = `scripts/admin-script.mjs:${siteLine('scripts/admin-script.mjs', 'second') as number}`;

  for (const ending of ['natural', 'close', 'two-close', 'exit']) {
    it(`ending "${ending}": every event, the exact counters and the heartbeat arrive`, async () => {
      const run = await runScript(ending);
      const explain = `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
      expect(run.code, explain).toBe(0);
      const sites = ending === 'two-close' ? [first, second] : [first];
      await suite.listener.waitFor(
        () => events().length === sites.length && counterSum('tripwire.bypasses') === sites.length && counterSum('tripwire.watching') > 0,
      );
      expect(suite.listener.malformed).toEqual([]);
      expect(events().map((e) => e.title)).toEqual(
        sites.map((site, i) => `Rogue write: AccessToken.${i === 0 ? 'updateMany' : 'deleteMany'} from ${site}`),
      );
      for (const site of sites) expect(counterSum('tripwire.bypasses', `callsite:${site}`)).toBe(1);
      expect(counterSum('tripwire.writes', 'approved:false')).toBe(sites.length);
      expect(
        printed(run.stdout)
          .filter((line) => line.onBypass)
          .map((line) => line.onBypass!.replace(/:\d+$/, '')),
      ).toEqual(sites);
      expect(
        printed(run.stdout).filter((line) => line.onError),
        explain,
      ).toEqual([]);
      // Nothing is kept alive: the script ends as soon as its own work is done.
      expect(run.ms).toBeLessThan(10_000);
    });
  }

  it('ends (and says why) when the agent host does not resolve: the end-of-process flush is bounded', async () => {
    const run = await runScript('natural', 'no-such-agent.invalid');
    expect(run.code, run.stderr).toBe(0);
    expect(
      printed(run.stdout)
        .map((line) => line.onError ?? '')
        .join('\n'),
    ).toMatch(/could not send to DogStatsD/);
  });
});

describe("the checklist's rogue-write script (examples/rogue-write-check)", () => {
  it('delivers its event and counters to the agent named by DD_AGENT_HOST / DD_DOGSTATSD_PORT', async () => {
    const script = join(process.cwd(), 'examples', 'rogue-write-check', 'check.mjs');
    const line =
      readFileSync(script, 'utf8')
        .split('\n')
        .findIndex((l) => l.trimEnd().endsWith('// @site deliberate-rogue-write')) + 1;
    expect(line).toBeGreaterThan(0);
    const run = await new Promise<Run>((resolve) => {
      const started = Date.now();
      execFile(
        process.execPath,
        [script],
        {
          cwd: join(process.cwd(), 'examples', 'rogue-write-check'),
          env: {
            ...process.env,
            DD_AGENT_HOST: '127.0.0.1',
            DD_DOGSTATSD_PORT: String(suite.listener.port),
            TRIPWIRE_NOTIFY: '@slack-auth-alerts',
            TRIPWIRE_CHECK_DB: `rogue_write_check_${process.pid}`,
          },
          timeout: 45_000,
        },
        (error, stdout, stderr) => resolve({ code: error ? 1 : 0, stdout, stderr, ms: Date.now() - started }),
      );
    });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(`sent: one rogue-write event and its counters to udp://127.0.0.1:${suite.listener.port}`);
    await suite.listener.waitFor(() => events().length === 1 && counterSum('tripwire.bypasses') === 1);
    expect(events()[0]!.title).toBe(`Rogue write: AccessToken.updateOne from check.mjs:${line}`);
    expect(events()[0]!.text.split('\n')[1]).toBe('@slack-auth-alerts');
    expect(counterSum('tripwire.bypasses', `callsite:check.mjs:${line}`)).toBe(1);
    expect(suite.listener.malformed).toEqual([]);
  });
});

let count = 0;
async function model(options: Partial<TripwireOptions> = {}) {
  const reports: BypassReport[] = [];
  const schema = tokenSchema() as mongoose.Schema;
  schema.plugin(tripwire, {
    approved: ['auth/**'],
    root: fixtureDir as string,
    statsd: { host: '127.0.0.1', port: suite.listener.port },
    onBypass: (report) => void reports.push(report),
    ...options,
  });
  const T = suite.connection.model(`DeliveryToken${++count}`, schema) as unknown as Model;
  await T.init();
  return { T, reports };
}
const ctx = () => ({ token: () => `tok_${Math.random()}`, opts: {} });
const rogueCreate = legacyWrites['Model.create(single)'] as Write;
const rogueUpdate = legacyWrites['Model.updateMany'] as Write;

describe('flush() and close()', () => {
  it('flush() resolves after onBypass ran for every completed rogue write and its event and counters were sent', async () => {
    const { T, reports } = await model({ rateLimit: false });
    await rogueCreate(T, ctx());
    await rogueUpdate(T, ctx());
    expect(reports.length).toBeLessThan(2); // the last one is delivered off the write's path...
    await flush();
    expect(reports).toHaveLength(2); // ...and flush() did not wait for a later tick
    // Handed to the socket: it arrives without any timer having to fire (the buffer interval is 1 s).
    await suite.listener.waitFor(() => events().length === 2 && counterSum('tripwire.bypasses') === 2, 500);
  });

  it('close() delivers the last write of a burst, then closes the client it owns', async () => {
    const { T, reports } = await model({ rateLimit: false });
    await Promise.all([rogueCreate(T, ctx()), rogueCreate(T, ctx()), rogueUpdate(T, ctx())]);
    await close();
    expect(reports).toHaveLength(3);
    await suite.listener.waitFor(
      () => events().length === 3 && counterSum('tripwire.bypasses') === 3 && counterSum('tripwire.writes') === 3,
      500,
    );
  });

  it('flush() with nothing pending resolves at once, and twice in a row sends each counter once', async () => {
    const { T } = await model();
    await flush();
    await rogueCreate(T, ctx());
    await Promise.all([flush(), flush()]);
    await flush();
    await suite.listener.waitFor(() => counterSum('tripwire.bypasses') === 1, 500);
    await settle(50); // and no second one
    expect(counterSum('tripwire.bypasses')).toBe(1);
    expect(counterSum('tripwire.writes')).toBe(1);
  });
});
