/**
 * A rogue write made inside a span of a real OpenTelemetry `NodeTracerProvider` (async-hooks context
 * manager): the report names that span's trace, in hex as OpenTelemetry writes it, found through the
 * API's global registration (the plugin imports no OpenTelemetry package). And the event text for it.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { RPCType, setRPCMetadata } from '@opentelemetry/core';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flush } from '../src/index.js';
import { tripwire } from '../src/plugin.js';
import { datadogAppHost, datadogTraceUrl, renderAlert } from '../src/report/alert.js';
import type { BypassReport } from '../src/types.js';
// @ts-expect-error plain ESM fixture without types
import { ownerWrite } from './fixtures/trace/approved/owner.mjs';
import { connect } from './support/connect.js';

type Model = mongoose.Model<Record<string, unknown>>;

const ROOT = join(process.cwd(), 'test', 'fixtures', 'trace');
const reports: BypassReport[] = [];
const provider = new NodeTracerProvider();
const tracer = trace.getTracer('trace-opentelemetry.test');
let connection: mongoose.Connection;
let Token: Model;

beforeAll(async () => {
  provider.register({ contextManager: new AsyncLocalStorageContextManager() });
  connection = await connect('trace_otel');
  const schema = new mongoose.Schema({ token: String });
  schema.plugin(tripwire, { approved: ['approved/**'], root: ROOT, statsd: false, onBypass: (report) => void reports.push(report) });
  Token = connection.model('Token', schema) as unknown as Model;
});

afterAll(async () => {
  await connection?.close();
  await provider.shutdown();
  trace.disable();
  context.disable();
});

async function reportsOf(run: () => Promise<unknown>): Promise<BypassReport[]> {
  reports.length = 0;
  await run();
  await flush();
  return reports.splice(0);
}

describe('a rogue write inside an OpenTelemetry span', () => {
  it("carries the active span's trace id (32 hex digits) and span id, read when the write was called", async () => {
    let ids: { traceId: string; spanId: string } | undefined;
    const [report] = await reportsOf(() =>
      tracer.startActiveSpan('POST /tokens/:id/revoke', async (span) => {
        ids = span.spanContext();
        await sleep(1); // the active span follows the async call chain
        await Token.updateOne({ token: 'a' }, { $set: { token: 'b' } });
        span.end();
      }),
    );
    expect(ids!.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(report!.trace).toEqual({ traceId: ids!.traceId, spanId: ids!.spanId, source: 'opentelemetry' });
  });

  it('is the innermost active span (a child span of the request)', async () => {
    let child: { traceId: string; spanId: string } | undefined;
    let parentSpanId: string | undefined;
    const [report] = await reportsOf(() =>
      tracer.startActiveSpan('request', async (parent) => {
        parentSpanId = parent.spanContext().spanId;
        await tracer.startActiveSpan('legacy handler', async (span) => {
          child = span.spanContext();
          await Token.deleteOne({ token: 'c' });
          span.end();
        });
        parent.end();
      }),
    );
    expect(report!.trace).toMatchObject({ traceId: child!.traceId, spanId: child!.spanId });
    expect(report!.trace!.spanId).not.toBe(parentSpanId);
  });

  it("names the request's route where the HTTP instrumentation's RPC metadata has one", async () => {
    const [report] = await reportsOf(() =>
      tracer.startActiveSpan('POST', async (span) => {
        // What @opentelemetry/instrumentation-http sets per request, and a framework's instrumentation fills in.
        const withRoute = setRPCMetadata(context.active(), { type: RPCType.HTTP, span, route: '/tokens/:id/revoke' });
        await context.with(withRoute, () => Token.updateOne({ token: 'd' }, { $set: { token: 'e' } }));
        span.end();
      }),
    );
    expect(report!.trace).toMatchObject({ source: 'opentelemetry', route: '/tokens/:id/revoke' });
  });

  it('has no trace outside any span, and an approved write in a span is not reported', async () => {
    const outside = await reportsOf(() => Token.updateOne({ token: 'f' }, { $set: { token: 'g' } }));
    expect(outside).toHaveLength(1);
    expect(outside[0]).not.toHaveProperty('trace');
    const approved = await reportsOf(() =>
      tracer.startActiveSpan('job', async (span) => {
        await ownerWrite(Token, 'h');
        span.end();
      }),
    );
    expect(approved).toEqual([]);
  });
});

describe('the trace in the event text', () => {
  const base: BypassReport = {
    model: 'AccessToken',
    operation: 'updateOne',
    kind: 'update',
    callSite: { file: '/app/src/legacy.ts', line: 10, column: 33 },
    stack: [],
    framesOmitted: 0,
    fingerprint: '0123456789abcdef',
    documentIds: [],
    documentIdsOmitted: 0,
    outcome: {},
    at: new Date(0),
    suppressed: 0,
    blocked: false,
    location: 'src/legacy.ts:10:33',
    bypassedMiddleware: false,
    baselined: false,
  };
  const text = (report: BypassReport, site?: string) =>
    renderAlert(report, { root: '/app', notify: [], environment: [], appHost: datadogAppHost(site) }).head;

  it('links an OpenTelemetry trace by the low 64 bits of its id, in decimal (the id Datadog keeps for it)', () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const head = text({ ...base, trace: { traceId, spanId: '00f067aa0ba902b7', source: 'opentelemetry' } }, 'datadoghq.com');
    expect(head).toContain(`- trace: \`${traceId}\` (OpenTelemetry, span \`00f067aa0ba902b7\`)`);
    expect(head).toContain(`[open in APM](https://app.datadoghq.com/apm/trace/${BigInt('0xa3ce929d0e0e4736').toString()})`);
  });

  it("knows each Datadog site's app host, and links nothing for a site that is not a host name", () => {
    expect(datadogAppHost('datadoghq.com')).toBe('app.datadoghq.com');
    expect(datadogAppHost('datadoghq.eu')).toBe('app.datadoghq.eu');
    expect(datadogAppHost('us3.datadoghq.com')).toBe('us3.datadoghq.com');
    expect(datadogAppHost('us5.datadoghq.com')).toBe('us5.datadoghq.com');
    expect(datadogAppHost('ap1.datadoghq.com')).toBe('ap1.datadoghq.com');
    expect(datadogAppHost('ddog-gov.com')).toBe('app.ddog-gov.com');
    expect(datadogAppHost(' https://app.datadoghq.com/ ')).toBe('app.datadoghq.com');
    for (const wrong of [undefined, '', 'localhost', 'evil.com/x?y', 'a.com](javascript:x)', 'ex ample.com']) {
      expect(datadogAppHost(wrong), String(wrong)).toBeUndefined();
    }
    expect(datadogTraceUrl({ traceId: '123', source: 'datadog' }, 'app.datadoghq.com')).toBe('https://app.datadoghq.com/apm/trace/123');
    expect(datadogTraceUrl({ traceId: '12a', source: 'datadog' }, 'app.datadoghq.com')).toBeUndefined();
    expect(datadogTraceUrl({ traceId: '0'.repeat(32), source: 'opentelemetry' }, 'app.datadoghq.com')).toBeUndefined();
  });

  it('makes the route, resource and ids inert, like every other value', () => {
    const head = text(
      {
        ...base,
        trace: { traceId: '1`2', spanId: '@here', source: 'datadog', route: '/x`](https://evil.example)\n%%%', resource: 'GET <!channel>' },
      },
      'datadoghq.com',
    );
    expect(head).not.toContain('](https://evil');
    expect(head).not.toContain('<!channel>');
    expect(head).not.toContain('\n%%%');
    expect(head).not.toContain('/apm/trace/'); // not a decimal id: no link
    // call site, request, trace, host, fingerprint: no line added
    expect(head.split('\n').filter((line) => line.startsWith('- '))).toHaveLength(5);
  });
});
