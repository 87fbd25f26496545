/**
 * The trace a rogue write was made in: the caller's active span, from dd-trace or OpenTelemetry,
 * whichever the process runs. Neither package is imported (the plugin depends on neither): both
 * publish a process-wide handle, and only that is read. Called synchronously in the write's wrapper,
 * so the active span is the caller's; only for a rogue write (an approved write never gets here).
 * Never throws: a tracer we cannot read means no trace in the report, nothing else.
 */
import type { ActiveTrace, TraceContext } from '../types.js';

/** dd-trace's tracer, as its bootstrap publishes it (dd-trace 5/6 packages/dd-trace/src/bootstrap.js: `global._ddtrace`). */
interface DatadogTracer {
  scope?: () => { active?: () => DatadogSpan | null | undefined } | undefined;
}

interface DatadogSpan {
  context?: () => DatadogSpanContext | undefined;
}

interface DatadogSpanContext {
  toTraceId?: (full?: boolean) => unknown;
  toSpanId?: () => unknown;
  getTag?: (name: string) => unknown;
  _tags?: Record<string, unknown>;
  _trace?: { started?: unknown[] };
  _parentId?: unknown;
}

/** What `@opentelemetry/api` 1.x registers under its global key (api 1.9 build/src/internal/global-utils.js). */
interface OpenTelemetryGlobal {
  context?: { active?: () => OpenTelemetryContext | undefined };
}

interface OpenTelemetryContext {
  getValue?: (key: symbol) => unknown;
}

interface OpenTelemetrySpan {
  spanContext?: () => { traceId?: unknown; spanId?: unknown } | undefined;
}

// Keys are `Symbol.for` so that every copy of the API agrees (api 1.9 build/src/context/context.js createContextKey).
const OTEL_API = Symbol.for('opentelemetry.js.api.1');
const OTEL_SPAN = Symbol.for('OpenTelemetry Context Key SPAN');
// Set per request by @opentelemetry/instrumentation-http; `route` by the framework's instrumentation when
// the route matched (@opentelemetry/core 2.x build/src/trace/rpc-metadata.js, RPC_METADATA_KEY).
const OTEL_RPC_METADATA = Symbol.for('OpenTelemetry SDK Context Key RPC_METADATA');

const NO_REQUEST: Pick<TraceContext, 'resource' | 'route'> = Object.freeze({});

/** The caller's active span, or undefined when no tracer runs or no span is active. */
export function activeTrace(): ActiveTrace | undefined {
  try {
    return fromDatadog() ?? fromOpenTelemetry();
  } catch {
    return undefined;
  }
}

/** The report's `trace`: the ids read when the write was called, the route and resource known now. */
export function traceContextOf(trace: ActiveTrace): TraceContext {
  let request = NO_REQUEST;
  try {
    request = trace.request();
  } catch {
    /* a tracer whose internals changed: the ids are still right */
  }
  return { traceId: trace.traceId, spanId: trace.spanId, source: trace.source, ...request };
}

function fromDatadog(): ActiveTrace | undefined {
  const tracer = (globalThis as { _ddtrace?: DatadogTracer })._ddtrace;
  if (typeof tracer !== 'object' || tracer === null || typeof tracer.scope !== 'function') return undefined;
  const span = tracer.scope()?.active?.();
  const context = span?.context?.();
  if (!context || typeof context.toTraceId !== 'function' || typeof context.toSpanId !== 'function') return undefined;
  // Decimal, the low 64 bits: what Datadog's trace view and `trace_id:` search use, and what the
  // trace's URL takes. dd-trace 5/6 make 128-bit ids by default; `toTraceId(true)` is their 32 hex
  // digits, but Datadog matches a trace by its low 64 bits (docs: "trace and span ID formats").
  const traceId = String(context.toTraceId());
  const spanId = String(context.toSpanId());
  if (!/^\d+$/.test(traceId) || traceId === '0') return undefined;
  // The request's span is taken now, while dd-trace still lists it; its tags are read when the report is built.
  const root = context._trace?.started?.[0] as DatadogSpan | undefined;
  return { traceId, spanId, source: 'datadog', request: () => datadogRequest(root) };
}

/**
 * The request's resource and route, from the local root span (the request's server span). dd-trace
 * has no public API for it: every span context of a trace shares `_trace.started`, whose first span
 * is the first one started in this process (dd-trace 6.21 packages/dd-trace/src/opentracing/span.js,
 * `_trace.started.push(this)`; emptied once the trace is flushed, span_processor.js `_erase`; tags
 * through span_context.js `getTag`). Its Express integration names `http.route` and `resource.name`
 * when the response ends (packages/dd-trace/src/plugins/util/web.js), hence read as late as possible.
 */
function datadogRequest(root: DatadogSpan | undefined): Pick<TraceContext, 'resource' | 'route'> {
  const rootContext = typeof root?.context === 'function' ? root.context() : undefined;
  if (!rootContext) return NO_REQUEST;
  const tag = (name: string): string | undefined => {
    const value = typeof rootContext.getTag === 'function' ? rootContext.getTag(name) : rootContext._tags?.[name];
    return typeof value === 'string' && value !== '' ? value : undefined;
  };
  // After a partial flush `started` holds only the spans still open: the first is then no root, and
  // its resource (a middleware's name) says nothing of the request. A root has no parent here, or is
  // the server span of a request continued from another service (`span.type` `web`).
  if (rootContext._parentId != null && tag('span.type') !== 'web') return NO_REQUEST;
  const resource = tag('resource.name');
  const route = tag('http.route');
  return { ...(resource ? { resource } : {}), ...(route ? { route } : {}) };
}

function fromOpenTelemetry(): ActiveTrace | undefined {
  const api = (globalThis as Record<symbol, OpenTelemetryGlobal | undefined>)[OTEL_API];
  if (typeof api !== 'object' || api === null || typeof api.context?.active !== 'function') return undefined;
  const context = api.context.active();
  if (typeof context?.getValue !== 'function') return undefined;
  const span = context.getValue(OTEL_SPAN) as OpenTelemetrySpan | undefined;
  const ids = typeof span?.spanContext === 'function' ? span.spanContext() : undefined;
  const traceId = ids?.traceId;
  const spanId = ids?.spanId;
  // An invalid (all-zero) context is OpenTelemetry's "no span" (api 1.9 build/src/trace/invalid-span-constants.js).
  if (typeof traceId !== 'string' || !/^[0-9a-f]{32}$/.test(traceId) || /^0+$/.test(traceId)) return undefined;
  if (typeof spanId !== 'string' || !/^[0-9a-f]{16}$/.test(spanId)) return undefined;
  const metadata = context.getValue(OTEL_RPC_METADATA) as { route?: unknown } | undefined;
  return { traceId, spanId, source: 'opentelemetry', request: () => openTelemetryRequest(metadata) };
}

function openTelemetryRequest(metadata: { route?: unknown } | undefined): Pick<TraceContext, 'resource' | 'route'> {
  const route = typeof metadata === 'object' && metadata !== null ? metadata.route : undefined;
  return typeof route === 'string' && route !== '' ? { route } : NO_REQUEST;
}
