/**
 * What reaches Datadog, end to end: real Mongoose writes, the plugin's own hot-shots client, real
 * UDP datagrams received by a local socket and checked by the strict parser.
 */
import StatsD from 'hot-shots';
import type mongoose from 'mongoose';
import { describe, expect, it } from 'vitest';
import { close, flush } from '../src/index.js';
import { tripwire } from '../src/plugin.js';
import type { ParsedDatagram } from '../src/report/dogstatsd.js';
import type { BypassReport, TripwireOptions } from '../src/types.js';
// @ts-expect-error plain ESM fixtures without types
import * as auth from './fixtures/app/auth/writes.mjs';
// @ts-expect-error plain ESM fixtures without types
import * as nonAscii from './fixtures/app/légacy/jetons-été.mjs';
// @ts-expect-error plain ESM fixtures without types
import { fixtureDir, siteLine } from './fixtures/app/matrix.mjs';
// @ts-expect-error plain ESM fixtures without types
import { tokenSchema } from './fixtures/app/models.mjs';
import { connect } from './support/connect.js';
import { listenerSuite } from './support/listener-suite.js';
import { waitFor } from './support/wait.js';

type EventDatagram = Extract<ParsedDatagram, { type: 'event' }>;
type Model = mongoose.Model<Record<string, unknown>>;

let modelCount = 0;

const suite = listenerSuite(() => connect('datadog'));

/** A fresh AccessToken-like model with the plugin pointed at the local listener. */
async function tokenModel(
  options: Partial<TripwireOptions> = {},
  configure?: (schema: mongoose.Schema) => void,
): Promise<{ T: Model; reports: BypassReport[] }> {
  const reports: BypassReport[] = [];
  const schema = tokenSchema() as mongoose.Schema;
  configure?.(schema);
  schema.plugin(tripwire, {
    approved: ['auth/**'],
    root: fixtureDir as string,
    statsd: { host: '127.0.0.1', port: suite.listener.port },
    notify: '@slack-auth-alerts',
    onBypass: (report) => void reports.push(report),
    ...options,
  });
  const T = suite.connection.model(`DdToken${++modelCount}`, schema) as unknown as Model;
  await T.init();
  return { T, reports };
}

const events = () => suite.listener.datagrams.filter((d): d is EventDatagram => d.type === 'event');
const counterSum = (name: string, tag?: string) =>
  suite.listener.datagrams
    .filter((d) => d.type === 'metric' && d.name === name && (!tag || d.tags.includes(tag)))
    .reduce((sum, d) => sum + (d.type === 'metric' ? d.value : 0), 0);

describe('the DogStatsD event', () => {
  it('is a correct event for a non-ASCII call site, with handles, call site, trace and tags', async () => {
    const { T } = await tokenModel({ tags: { team: 'auth' } });
    await nonAscii.发放令牌(T, 'tok_secret_value_1');
    await suite.listener.waitFor(() => events().length === 1);
    expect(suite.listener.malformed).toEqual([]);
    const [event] = events();
    const line = siteLine('légacy/jetons-été.mjs', '发放令牌') as number;
    expect(event!.title).toBe(`Rogue write: ${T.modelName}.create from légacy/jetons-été.mjs:${line}`);
    const text = event!.text;
    expect(text.split('\n')[1]).toBe('@slack-auth-alerts');
    expect(text).toMatch(/^%%%\n/);
    expect(text).toMatch(/\n%%%$/);
    expect(text).toContain(`légacy/jetons-été.mjs:${line}:`);
    expect(text).toContain('发放令牌');
    expect(event).toMatchObject({ alertType: 'warning', aggregationKey: expect.stringMatching(/^[0-9a-f]{16}$/) });
    expect(event!.tags).toEqual(
      expect.arrayContaining([
        `model:${T.modelName}`,
        'operation:create',
        'kind:create',
        `callsite:légacy/jetons-été.mjs:${line}`,
        'team:auth',
      ]),
    );
    expect(JSON.stringify(suite.listener.datagrams)).not.toContain('tok_secret_value_1');
  });

  it('shows what hot-shots alone would send: its UTF-16 header is refused by a strict parser', async () => {
    const client = new StatsD({ host: '127.0.0.1', port: suite.listener.port, maxBufferSize: 0 });
    client.event('Rogue write from légacy/jetons-été.mjs', 'in 发放令牌');
    await suite.listener.waitFor(() => suite.listener.malformed.length === 1);
    expect(suite.listener.malformed[0]!.error).toMatch(/byte|length|character/i);
    await new Promise<void>((resolve) => client.close(() => resolve()));
  });

  it('never carries a hot-shots prefix into the title, and keeps a client the app passed in open', async () => {
    const client = new StatsD({ host: '127.0.0.1', port: suite.listener.port, prefix: 'myapp.', maxBufferSize: 0 });
    const { T } = await tokenModel({ statsd: client });
    await nonAscii.发放令牌(T, 'tok_prefix');
    await suite.listener.waitFor(() => events().length === 1);
    expect(events()[0]!.title).toMatch(/^Rogue write: /);
    await close();
    client.increment('still.open');
    await suite.listener.waitFor((all) => all.some((d) => d.type === 'metric' && d.name === 'myapp.still.open'));
    await new Promise<void>((resolve) => client.close(() => resolve()));
  });

  it('fits a 300-frame trace into one datagram, cutting the far end and keeping head and tail', async () => {
    const { T } = await tokenModel({ maxFrames: 400 });
    const recurse = (depth: number): Promise<unknown> =>
      depth === 0 ? nonAscii.发放令牌(T, `tok_deep_${Date.now()}`) : recurse(depth - 1);
    await recurse(300);
    await suite.listener.waitFor(() => events().length === 1);
    const text = events()[0]!.text;
    expect(text).toMatch(/… \d+ more frames/);
    expect(text).toContain('@slack-auth-alerts');
    expect(text.endsWith('```\n%%%')).toBe(true);
    expect(suite.listener.malformed).toEqual([]);
  });
});

describe('rate limit and counters', () => {
  it('sends one event per call site for 1 000 rogue writes from 3 sites, counts every write exactly', async () => {
    const { T, reports } = await tokenModel();
    // seeded by the approved module
    const doc = { insertedId: ((await auth.writes['Model.create(single)'](T, { token: () => 'tok_rate' })) as { _id: unknown })._id };
    await Promise.all(Array.from({ length: 1000 }, (_, i) => nonAscii.sites[i % 3](T, doc.insertedId)));
    await waitFor(() => reports.length >= 1000, '1 000 reports');
    flush();
    const name = T.modelName;
    await suite.listener.waitFor(() => counterSum('tripwire.bypasses') === 1000 && events().length === 3);
    expect(reports).toHaveLength(1000);
    expect(counterSum('tripwire.writes', 'approved:false')).toBe(1000);
    expect(counterSum('tripwire.events_suppressed')).toBe(997);
    for (const site of [0, 1, 2]) {
      const line = siteLine('légacy/jetons-été.mjs', `site${site}`) as number;
      expect(counterSum('tripwire.bypasses', `callsite:légacy/jetons-été.mjs:${line}`), `site${site}`).toBe(334 - (site === 0 ? 0 : 1));
    }
    expect(new Set(events().map((e) => e.aggregationKey)).size).toBe(3);
    // The next event sent for a site says how many were held back.
    expect(reports.filter((r) => r.suppressed > 0)).toEqual([]);
    expect(
      suite.listener.datagrams
        .filter((d) => d.type === 'metric')
        .every((d) => d.tags.includes(`model:${name}`) || d.tags.some((t) => t.startsWith('reason:'))),
    ).toBe(true);
  });

  it('reports the suppressed count on the next event a call site is allowed', async () => {
    // A 1 s window: five writes in a row fit in it even on a loaded machine.
    const { T, reports } = await tokenModel({
      rateLimit: { perCallSite: { events: 1, intervalMs: 1_000 }, global: { events: 100, intervalMs: 1000 } },
    });
    // seeded by the approved module
    const doc = { insertedId: ((await auth.writes['Model.create(single)'](T, { token: () => 'tok_next' })) as { _id: unknown })._id };
    for (let i = 0; i < 5; i++) await nonAscii.sites[0](T, doc.insertedId);
    await new Promise((resolve) => setTimeout(resolve, 1_100)); // the call site's rate-limit window passes: what is tested
    await nonAscii.sites[0](T, doc.insertedId);
    await suite.listener.waitFor(() => events().length === 2);
    expect(reports.at(-1)!.suppressed).toBe(4);
    expect(events()[1]!.text).toContain('4 more events from this call site held back');
  });

  it('holds back a write whose call site is spent when it is called (no trace read for it); the next event sent is whole', async () => {
    // Without onBypass nothing reads a held-back write's trace: the plugin skips reading its stack in
    // full when the call site's events are spent at the moment of the call. A slow write called then
    // stays held back even if its call site's token came back before it completed.
    let slow = false;
    // The second write must be called within the window (1 s: room for a loaded machine) and complete after it (1.2 s).
    const { T } = await tokenModel(
      { onBypass: undefined, rateLimit: { perCallSite: { events: 1, intervalMs: 1_000 }, global: { events: 100, intervalMs: 1000 } } },
      (schema) => {
        schema.pre('updateOne', async () => {
          if (slow) await new Promise((resolve) => setTimeout(resolve, 1_200));
        });
      },
    );
    // seeded by the approved module
    const doc = { insertedId: ((await auth.writes['Model.create(single)'](T, { token: () => 'tok_held' })) as { _id: unknown })._id };
    const nest = (depth: number): Promise<unknown> => (depth === 0 ? nonAscii.sites[0](T, doc.insertedId) : nest(depth - 1));
    for (const step of ['sent', 'called while spent, completes after the window', 'sent']) {
      slow = step.startsWith('called');
      await nest(30); // one line for all three: the same trace
      await new Promise((resolve) => setImmediate(resolve)); // delivered (and its rate-limit key known) before the next
    }
    await flush();
    await suite.listener.waitFor(() => counterSum('tripwire.bypasses') === 3 && events().length === 2);
    expect(counterSum('tripwire.events_suppressed')).toBe(1);
    const [first, second] = events();
    const heldBackLine = '\n- 1 more event from this call site held back by the rate limit since the last one';
    expect(second!.text).toContain(heldBackLine);
    // Byte for byte the first event but for the held-back count and the result (the seed's first
    // update modified it, the next ones found it as it was): the trace was read in full again.
    const withoutResult = (text: string) => text.replace(/\n- result: [^\n]*/, '');
    expect(withoutResult(second!.text.replace(heldBackLine, ''))).toBe(withoutResult(first!.text));
    expect(first!.text).toContain('\n- result: matched 1, modified 1, upserted 0');
    expect(first!.text.match(/\bnest\b/g)!.length).toBeGreaterThan(20);
    expect(suite.listener.malformed).toEqual([]);
  });

  it('holds back on call only what is known spent: another model through the same line still gets its event', async () => {
    // One registration, two models, one call site: each model's writes have their own rate-limit key.
    const schema = tokenSchema() as mongoose.Schema;
    schema.plugin(tripwire, {
      approved: ['auth/**'],
      root: fixtureDir as string,
      statsd: { host: '127.0.0.1', port: suite.listener.port },
    });
    const A = suite.connection.model(`DdShared${++modelCount}`, schema) as unknown as Model;
    const B = suite.connection.model(`DdShared${++modelCount}`, schema) as unknown as Model;
    await Promise.all([A.init(), B.init()]);
    const seed = async (M: Model, token: string) => ({
      insertedId: ((await auth.writes['Model.create(single)'](M, { token: () => token })) as { _id: unknown })._id,
    });
    const a = await seed(A, 'tok_shared_a'); // seeded by the approved module
    const b = await seed(B, 'tok_shared_b');
    for (const [M, id] of [
      [A, a.insertedId],
      [A, a.insertedId],
      [A, a.insertedId],
      [B, b.insertedId],
    ] as const) {
      await nonAscii.sites[1](M, id);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await flush();
    await suite.listener.waitFor(() => counterSum('tripwire.bypasses') === 4 && events().length === 2);
    expect(events().map((e) => e.title.split(' ')[2]!.split('.')[0])).toEqual([A.modelName, B.modelName]);
    expect(counterSum('tripwire.events_suppressed')).toBe(2);
  });

  it('counts approved writes too, for the % of writes through the auth module', async () => {
    const { T } = await tokenModel({ approved: ['légacy/**'] });
    await nonAscii.发放令牌(T, 'tok_approved');
    flush();
    await suite.listener.waitFor(() => counterSum('tripwire.writes', 'approved:true') === 1);
    expect(events()).toEqual([]);
  });
});

describe('faults are visible, never thrown', () => {
  it('a DNS failure for the agent host is reported once and the write succeeds', async () => {
    const faults: Error[] = [];
    const { T } = await tokenModel({
      statsd: { host: 'no-such-agent.invalid', port: 8125, maxBufferSize: 0 },
      onError: (e) => void faults.push(e),
    });
    const created = await nonAscii.发放令牌(T, 'tok_dns');
    expect(created).toBeTruthy();
    await expect.poll(() => faults.length, { timeout: 5_000 }).toBeGreaterThan(0);
    expect(faults[0]!.message).toMatch(/DogStatsD/);
    expect(await T.countDocuments({ token: 'tok_dns' })).toBe(1);
  });
});
