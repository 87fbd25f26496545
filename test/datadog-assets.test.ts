/**
 * datadog/dashboard.json and datadog/monitors.json may only query what the plugin really sends.
 * Real Mongoose writes (approved, rogue, rate limited, with a failing onBypass) go through the
 * plugin to a local DogStatsD socket; the metric names, their tag keys, the event tag keys and the
 * event source received there are the only ones the assets may reference.
 */
import { readFileSync } from 'node:fs';
import type mongoose from 'mongoose';
import type { Connection } from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Listener, startListener } from '../src/cli/listen.js';
import { BOOT_NOTICES } from '../src/core/faults.js';
import { close, flush } from '../src/index.js';
import { tripwire } from '../src/plugin.js';
import type { ParsedDatagram } from '../src/report/dogstatsd.js';
// @ts-expect-error plain ESM fixtures without types
import { writes as approvedWrites } from './fixtures/app/auth/writes.mjs';
// @ts-expect-error plain ESM fixtures without types
import { writes as rogueWrites } from './fixtures/app/legacy/writes.mjs';
// @ts-expect-error plain ESM fixtures without types
import { fixtureDir } from './fixtures/app/matrix.mjs';
// @ts-expect-error plain ESM fixtures without types
import { tokenSchema } from './fixtures/app/models.mjs';
import { connect } from './support/connect.js';
import { settle, waitFor } from './support/wait.js';

type Model = mongoose.Model<Record<string, unknown>>;
type Write = (T: Model, c: { token(): string; opts: Record<string, unknown> }) => Promise<unknown>;
type EventDatagram = Extract<ParsedDatagram, { type: 'event' }>;
type MetricDatagram = Extract<ParsedDatagram, { type: 'metric' }>;

const readJson = (relative: string): unknown => JSON.parse(readFileSync(new URL(relative, new URL('../', import.meta.url)), 'utf8'));
const assetText = (relative: string): string => readFileSync(new URL(relative, new URL('../', import.meta.url)), 'utf8');

const EXPECTED_METRICS = ['tripwire.writes', 'tripwire.bypasses', 'tripwire.events_suppressed', 'tripwire.errors', 'tripwire.watching'];

/** What really arrived at the socket. */
interface Emitted {
  /** Metric name -> every tag key seen on it. */
  metrics: Map<string, Set<string>>;
  eventTagKeys: Set<string>;
  eventSources: Set<string>;
  eventTitles: string[];
}

let connection: Connection;
let listener: Listener;
let emitted: Emitted;

const tagKey = (tag: string): string => (tag.includes(':') ? tag.slice(0, tag.indexOf(':')) : tag);

beforeAll(async () => {
  connection = await connect('datadog_assets');
  listener = await startListener({ port: 0 });
  const schema = tokenSchema() as mongoose.Schema;
  let bypasses = 0;
  schema.plugin(tripwire, {
    approved: ['auth/**'],
    root: fixtureDir as string,
    statsd: { host: '127.0.0.1', port: listener.port },
    heartbeatMs: 1_000,
    notify: '@slack-auth-alerts',
    onBypass: () => {
      bypasses += 1;
      throw new Error('x'); // counted as tripwire.errors{reason:onBypass_threw}
    },
    onError: () => undefined, // keep the run quiet; the fault is still counted
  });
  const T = connection.model('AssetsToken', schema) as unknown as Model;
  await T.init();

  let n = 0;
  const c = { token: () => `tok_assets_${process.pid}_${++n}`, opts: {} };
  const approved = (approvedWrites as Record<string, Write>)['Model.create']!;
  const rogue = (rogueWrites as Record<string, Write>)['Model.create']!;
  await approved(T, c);
  await approved(T, c);
  // One call site three times: one event (default limit: 1 per call site per 10 min), two suppressed.
  for (let i = 0; i < 3; i++) await rogue(T, c);
  await waitFor(() => bypasses >= 3, 'onBypass called 3 times');
  flush();

  const metric = (name: string) => (all: readonly ParsedDatagram[]) => all.some((d) => d.type === 'metric' && d.name === name);
  await listener.waitFor((all) => EXPECTED_METRICS.every((name) => metric(name)(all)) && all.some((d) => d.type === 'event'), 10_000);
  await close();
  await settle(50); // what close() flushed lands too: every metric name and tag key sent is collected

  const metrics = new Map<string, Set<string>>();
  for (const d of listener.datagrams.filter((x): x is MetricDatagram => x.type === 'metric')) {
    const keys = metrics.get(d.name) ?? new Set<string>();
    for (const tag of d.tags) keys.add(tagKey(tag));
    metrics.set(d.name, keys);
  }
  const events = listener.datagrams.filter((x): x is EventDatagram => x.type === 'event');
  emitted = {
    metrics,
    eventTagKeys: new Set(events.flatMap((e) => e.tags.map(tagKey))),
    eventSources: new Set(events.map((e) => e.sourceTypeName ?? '')),
    eventTitles: events.map((e) => e.title),
  };
}, 60_000);

afterAll(async () => {
  await close();
  await listener?.close();
  await connection?.close();
});

// ---- Reading the assets ----

interface MetricUse {
  metric: string;
  tagKeys: string[];
  groupBy: string[];
  query: string;
}
interface EventQuery {
  search: string;
  groupBy: string[];
  query: string;
}

/** Every `{...}` in a metric query belongs to a metric scope or its `by {...}`; each is parsed, none is skipped. */
function parseMetricQuery(query: string, templateVars: Map<string, string>): MetricUse[] {
  const uses: MetricUse[] = [];
  const scope = /([A-Za-z][\w.]*)\{([^}]*)\}(?:\s*by\s*\{([^}]*)\})?/g;
  let consumed = 0;
  for (const match of query.matchAll(scope)) {
    const [, metric = '', filter = '', by] = match;
    consumed += by === undefined ? 1 : 2;
    const tagKeys: string[] = [];
    for (const raw of filter
      .split(',')
      .map((part) => part.trim())
      .filter(Boolean)) {
      if (raw === '*') continue;
      const item = raw.replace(/^!/, '');
      if (item.startsWith('$')) {
        const prefix = templateVars.get(item.slice(1));
        if (prefix === undefined) throw new Error(`unknown template variable ${item} in ${query}`);
        tagKeys.push(prefix);
      } else {
        tagKeys.push(tagKey(item));
      }
    }
    const groupBy =
      by === undefined
        ? []
        : by
            .split(',')
            .map((part) => part.trim())
            .filter(Boolean);
    uses.push({ metric, tagKeys, groupBy, query });
  }
  const braces = query.match(/\{[^}]*\}/g) ?? [];
  if (braces.length !== consumed) throw new Error(`could not read every scope of ${query}`);
  return uses;
}

/** Walks a JSON value, calling `visit` on every object. */
function walk(value: unknown, visit: (node: Record<string, unknown>) => void): void {
  if (Array.isArray(value)) for (const item of value) walk(item, visit);
  else if (value !== null && typeof value === 'object') {
    visit(value as Record<string, unknown>);
    for (const child of Object.values(value)) walk(child, visit);
  }
}

interface Dashboard {
  title: string;
  layout_type: string;
  widgets: Array<{ definition: { type: string; title?: string } }>;
  template_variables?: Array<{ name: string; prefix: string }>;
}
interface Monitor {
  name: string;
  type: string;
  query: string;
  message: string;
  options: Record<string, unknown>;
}

const dashboard = readJson('datadog/dashboard.json') as Dashboard;
const monitors = readJson('datadog/monitors.json') as Monitor[];
const templateVars = new Map((dashboard.template_variables ?? []).map((v) => [v.name, v.prefix]));

function dashboardQueries(): { metricUses: MetricUse[]; eventQueries: EventQuery[] } {
  const metricUses: MetricUse[] = [];
  const eventQueries: EventQuery[] = [];
  walk(dashboard, (node) => {
    if (node.data_source === 'metrics' && typeof node.query === 'string') metricUses.push(...parseMetricQuery(node.query, templateVars));
    if (typeof node.q === 'string') metricUses.push(...parseMetricQuery(node.q, templateVars));
    if (node.data_source === 'event_stream' && typeof node.query_string === 'string')
      eventQueries.push({ search: node.query_string, groupBy: [], query: node.query_string });
  });
  return { metricUses, eventQueries };
}

function monitorQueries(): { metricUses: MetricUse[]; eventQueries: EventQuery[] } {
  const metricUses: MetricUse[] = [];
  const eventQueries: EventQuery[] = [];
  for (const monitor of monitors) {
    if (monitor.type.startsWith('event')) {
      const search = /^events\("((?:[^"\\]|\\.)*)"\)/.exec(monitor.query)?.[1];
      if (search === undefined) throw new Error(`cannot read the event query ${monitor.query}`);
      const groupBy = [...monitor.query.matchAll(/\.by\("([^"]+)"\)/g)].flatMap((m) => (m[1] ?? '').split(',').map((k) => k.trim()));
      eventQueries.push({ search, groupBy, query: monitor.query });
    } else {
      // The monitor form `aggregation(last_5m):metric_query > threshold`.
      metricUses.push(...parseMetricQuery(monitor.query.replace(/^\w+\(last_\w+\):/, ''), new Map()));
    }
  }
  return { metricUses, eventQueries };
}

/** Asserts a metric use only names a metric and tag keys really sent together. */
function expectEmitted(use: MetricUse): void {
  const keys = emitted.metrics.get(use.metric);
  expect(keys, `${use.metric} (in ${use.query}) is never sent; sent: ${[...emitted.metrics.keys()].join(', ')}`).toBeDefined();
  for (const key of [...use.tagKeys, ...use.groupBy]) {
    expect(keys!.has(key), `tag key "${key}" on ${use.metric} (in ${use.query}); sent: ${[...keys!].join(', ')}`).toBe(true);
  }
}

/** Event search terms: `source:` must be the source type name we send, other keys real event tags. */
function expectEventQuery(query: EventQuery): void {
  const terms = query.search.split(/\s+/).filter(Boolean);
  expect(
    terms.some((term) => term.startsWith('source:')),
    `${query.query} selects the plugin's events by source`,
  ).toBe(true);
  for (const term of terms) {
    if (term.startsWith('$')) {
      const prefix = templateVars.get(term.slice(1));
      expect(prefix, `template variable ${term}`).toBeDefined();
      expect(emitted.eventTagKeys.has(prefix!), `template variable ${term} (tag ${prefix}) on events`).toBe(true);
      continue;
    }
    const [key, value] = [tagKey(term), term.slice(term.indexOf(':') + 1)];
    if (key === 'source') expect(emitted.eventSources, query.query).toEqual(new Set([value]));
    else expect(emitted.eventTagKeys.has(key), `event tag key "${key}" in ${query.query}`).toBe(true);
  }
  for (const key of query.groupBy) expect(emitted.eventTagKeys.has(key), `event group-by "${key}" in ${query.query}`).toBe(true);
}

describe('what the plugin really sent', () => {
  it('received every metric, with the documented tag keys, and one rate-limited event', () => {
    expect([...emitted.metrics.keys()].sort()).toEqual([...EXPECTED_METRICS].sort());
    expect([...emitted.metrics.get('tripwire.writes')!].sort()).toEqual(['approved', 'kind', 'model', 'operation']);
    expect([...emitted.metrics.get('tripwire.bypasses')!].sort()).toEqual(['baselined', 'callsite', 'kind', 'model', 'operation']);
    expect([...emitted.metrics.get('tripwire.events_suppressed')!].sort()).toEqual(['kind', 'model', 'operation']);
    expect([...emitted.metrics.get('tripwire.errors')!].sort()).toEqual(['reason']);
    expect([...emitted.metrics.get('tripwire.watching')!].sort()).toEqual(['model']);
    expect([...emitted.eventTagKeys].sort()).toEqual(['baselined', 'callsite', 'fingerprint', 'kind', 'model', 'operation']);
    expect(emitted.eventSources).toEqual(new Set(['mongoose-tripwire']));
    expect(emitted.eventTitles).toHaveLength(1);
    expect(emitted.eventTitles[0]).toMatch(/^Rogue write: AssetsToken\.create from legacy\/writes\.mjs:\d+$/);
    expect(listener.malformed).toEqual([]);
  });
});

describe('datadog/dashboard.json', () => {
  const { metricUses, eventQueries } = dashboardQueries();

  it('is a dashboard definition with the expected widgets', () => {
    expect(dashboard.title).toMatch(/tripwire/);
    expect(dashboard.layout_type).toBe('ordered');
    expect(metricUses.length).toBeGreaterThanOrEqual(10);
    const types = dashboard.widgets.map((w) => w.definition.type);
    expect(types).toEqual(expect.arrayContaining(['timeseries', 'query_value', 'toplist', 'list_stream']));
    // Every metric the plugin sends by default is on the dashboard.
    expect(new Set(metricUses.map((u) => u.metric))).toEqual(new Set(EXPECTED_METRICS));
    const groups = (metric: string) => metricUses.filter((u) => u.metric === metric).flatMap((u) => u.groupBy);
    expect(groups('tripwire.bypasses')).toEqual(expect.arrayContaining(['callsite', 'operation', 'baselined']));
    // Known vs new: new call sites on their own, by call site.
    expect(
      metricUses.some((u) => u.metric === 'tripwire.bypasses' && u.query.includes('baselined:false') && u.groupBy.includes('callsite')),
    ).toBe(true);
    expect(eventQueries.some((q) => q.search.split(/\s+/).includes('baselined:false'))).toBe(true);
    expect(groups('tripwire.watching')).toContain('model');
    expect(groups('tripwire.errors')).toContain('reason');
    expect(metricUses.some((u) => u.metric === 'tripwire.writes' && u.tagKeys.includes('approved'))).toBe(true);
    expect(eventQueries.length).toBeGreaterThanOrEqual(1);
  });

  it('queries only metrics and tag keys the plugin sends, together', () => {
    for (const use of metricUses) expectEmitted(use);
    for (const query of eventQueries) expectEventQuery(query);
  });

  it('mentions no other tripwire.* name anywhere', () => {
    for (const name of assetText('datadog/dashboard.json').match(/\btripwire\.\w+/g) ?? []) {
      expect(emitted.metrics.has(name), name).toBe(true);
    }
  });
});

describe('datadog/monitors.json', () => {
  const { metricUses, eventQueries } = monitorQueries();

  it('alerts on any new (not baselined) bypass, on a silent heartbeat per model, and on the new events, each to Slack', () => {
    // Known call sites (baselined:true) never page: a migration in progress is not an incident.
    const bypass = monitors.find((m) => m.query === 'sum(last_5m):sum:tripwire.bypasses{baselined:false}.as_count() > 0');
    expect(bypass, 'the bypass monitor').toBeDefined();
    expect(bypass!.message).toContain('@slack-auth-alerts');
    expect(bypass!.options.thresholds).toEqual({ critical: 0 });

    const heartbeat = monitors.find((m) => m.query.includes('tripwire.watching'));
    expect(heartbeat, 'the heartbeat monitor').toBeDefined();
    expect(parseMetricQuery(heartbeat!.query.replace(/^\w+\(last_\w+\):/, ''), new Map())[0]!.groupBy).toEqual(['model']);
    expect(heartbeat!.options.notify_no_data).toBe(true);
    expect(heartbeat!.options.no_data_timeframe).toEqual(expect.any(Number));

    const event = monitors.find((m) => m.type === 'event-v2 alert');
    expect(event, 'the event monitor').toBeDefined();
    expect(event!.query).toMatch(/^events\("source:mongoose-tripwire baselined:false"\)\.rollup\("count"\)/);
    expect(monitors.filter((m) => /tripwire\.bypasses|events\(/.test(m.query)).every((m) => m.query.includes('baselined:false'))).toBe(
      true,
    );
    expect(event!.message).toContain('@slack-auth-alerts');
    for (const monitor of monitors) expect(monitor.message, monitor.name).toMatch(/@slack-[\w-]+/);
  });

  it('queries only metrics and tag keys the plugin sends, together', () => {
    expect(metricUses.length).toBe(3);
    for (const use of metricUses) expectEmitted(use);
    expect(eventQueries.length).toBe(1);
    for (const query of eventQueries) expectEventQuery(query);
  });

  it('alerts on tripwire.errors by reason, leaving out only the reasons that lose no count; boot notices are never counted', () => {
    // Every reason the plugin reports, read from its sources.
    const union = /export type FaultReason =([^;]+);/.exec(assetText('src/types.ts'))?.[1] ?? '';
    const reasons = new Set([...union.matchAll(/'(\w+)'/g)].map((m) => m[1]!));
    expect(reasons.size).toBeGreaterThan(10);
    const faults = monitors.find((m) => m.query.includes('tripwire.errors'));
    expect(faults, 'the fault monitor').toBeDefined();
    expect(faults!.options.thresholds).toEqual({ critical: 0 });
    const [use] = parseMetricQuery(faults!.query.replace(/^\w+\(last_\w+\):/, ''), new Map());
    expect(use!.groupBy).toEqual(['reason']);
    const excluded = [...faults!.query.matchAll(/!reason:(\w+)/g)].map((m) => m[1]!);
    expect(excluded.sort()).toEqual(['callsite_tags_capped', 'tags_dropped']);
    for (const reason of excluded) expect(reasons.has(reason), reason).toBe(true);
    // Boot notices are real reasons, warned but never counted, so a monitor need not leave them out.
    for (const notice of BOOT_NOTICES) expect(reasons.has(notice), notice).toBe(true);
    // The message names every reason: the watched ones and why the others are not.
    for (const reason of reasons) expect(faults!.message, reason).toContain(reason);
  });

  it('uses in messages only the group-by keys of its own query', () => {
    for (const monitor of monitors) {
      const groupBy = monitor.type.startsWith('event')
        ? [...monitor.query.matchAll(/\.by\("([^"]+)"\)/g)].map((m) => m[1])
        : parseMetricQuery(monitor.query.replace(/^\w+\(last_\w+\):/, ''), new Map()).flatMap((u) => u.groupBy);
      const used = [...`${monitor.name}\n${monitor.message}`.matchAll(/\{\{\s*(\w+)\.name\s*\}\}/g)].map((m) => m[1]);
      for (const key of used) expect(groupBy, `{{${key}.name}} in "${monitor.name}"`).toContain(key);
    }
  });

  it('mentions no other tripwire.* name anywhere', () => {
    for (const name of assetText('datadog/monitors.json').match(/\btripwire\.\w+/g) ?? []) {
      expect(emitted.metrics.has(name), name).toBe(true);
    }
  });
});
