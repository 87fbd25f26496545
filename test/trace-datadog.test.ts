/**
 * A rogue write made in a request of an Express app that runs a real dd-trace (its agent
 * unreachable): the report names the trace Datadog shows for that request, and the event links it.
 * dd-trace must be initialised before express and mongoose are required, so the app is a child process
 * on the built package (test/fixtures/trace/datadog-express.cjs).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BypassReport } from '../src/types.js';

const FIXTURE = join(process.cwd(), 'test', 'fixtures', 'trace', 'datadog-express.cjs');
const DIST = join(process.cwd(), 'dist', 'index.js');

interface Seen {
  traceId: string;
  spanId: string;
  traceIdHex: string;
}
interface Output {
  status: number;
  seen: Seen[];
  reports: BypassReport[];
  events: string[];
}

function runApp(env: Record<string, string>): Promise<Output> {
  const uri = process.env.MONGODB_URI!;
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [FIXTURE, DIST, uri, `trace_dd_${process.pid}_${Date.now()}`],
      {
        env: {
          ...process.env,
          // Nothing listens there: traces are dropped, the app does not notice.
          DD_TRACE_AGENT_URL: 'http://127.0.0.1:9',
          DD_TRACE_STARTUP_LOGS: 'false',
          DD_INSTRUMENTATION_TELEMETRY_ENABLED: 'false',
          DD_REMOTE_CONFIGURATION_ENABLED: 'false',
          DD_RUNTIME_METRICS_ENABLED: 'false',
          DD_AGENT_HOST: '127.0.0.1',
          ...env,
        },
        timeout: 25_000,
      },
      (error, stdout, stderr) => {
        if (error) return reject(new Error(`${error.message}\n${stderr}`));
        const line = stdout.trim().split('\n').at(-1) ?? '';
        resolve(JSON.parse(line) as Output);
      },
    );
  });
}

describe('a rogue write inside a dd-trace request (Express, real dd-trace)', () => {
  it('carries the active span of the handler: trace id as Datadog shows it (decimal), span id, source', async () => {
    const run = await runApp({ DD_SITE: 'datadoghq.eu' });
    expect(run.status).toBe(200);
    expect(run.seen).toHaveLength(2);
    expect(run.reports).toHaveLength(2);
    const [seen] = run.seen;
    const trace = run.reports[0]!.trace!;
    expect(trace).toMatchObject({ traceId: seen!.traceId, spanId: seen!.spanId, source: 'datadog' });
    expect(trace.traceId).toMatch(/^\d+$/);
    // dd-trace generates 128-bit ids: the decimal id is their low 64 bits, the half Datadog keys a trace by.
    expect(BigInt(`0x${seen!.traceIdHex.slice(16)}`).toString()).toBe(trace.traceId);
    // Express's route is named by dd-trace only when the response ends: when named, it is the template.
    if (trace.route !== undefined) expect(trace.route).toBe('/tokens/:id/revoke');
    expect(JSON.stringify(trace)).not.toContain('qwxy'); // never the URL (its path may hold a token)
  }, 30_000);

  it("names the request's route and resource once dd-trace has (the response ended before the report was built)", async () => {
    const run = await runApp({ DD_SITE: 'us5.datadoghq.com' });
    const [, seen] = run.seen;
    const trace = run.reports[1]!.trace!;
    expect(trace).toEqual({
      traceId: seen!.traceId,
      spanId: seen!.spanId,
      source: 'datadog',
      route: '/sessions/:id/close',
      resource: 'POST /sessions/:id/close',
    });
    const event = run.events[1]!;
    expect(event).toContain('- request: route `/sessions/:id/close`, resource `POST /sessions/:id/close`');
    expect(event).toContain(`[open in APM](https://us5.datadoghq.com/apm/trace/${seen!.traceId})`);
    expect(event).not.toContain('zkvq'); // the request's path (its id) is never read
  }, 30_000);

  it('shows the trace id in the event text with a link to the trace on the DD_SITE, and never as a tag', async () => {
    const run = await runApp({ DD_SITE: 'datadoghq.eu' });
    const traceId = run.seen[0]!.traceId;
    expect(run.events).toHaveLength(2);
    const [event] = run.events;
    expect(event).toContain(`- trace: \`${traceId}\` (dd-trace, span \`${run.seen[0]!.spanId}\`)`);
    expect(event).toContain(`[open in APM](https://app.datadoghq.eu/apm/trace/${traceId})`);
    const tags = event!.slice(event!.lastIndexOf('|#') + 2);
    expect(tags).not.toContain(traceId);
  }, 30_000);

  it('without DD_SITE: the trace id, no link', async () => {
    const run = await runApp({ DD_SITE: '' });
    const [event] = run.events;
    expect(event).toContain(`- trace: \`${run.seen[0]!.traceId}\``);
    expect(event).not.toContain('/apm/trace/');
  }, 30_000);
});
