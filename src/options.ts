/**
 * Public options of the plugin, in one place, and their validation.
 *
 * Every option is checked when the plugin is registered: a wrong option is a clear error at boot,
 * never a silent no-op that leaves the detector quietly off.
 */
import { isAbsolute, resolve } from 'node:path';
import type { ClientOptions, StatsD } from 'hot-shots';
import { BaselineError, TripwireConfigError } from './errors.js';
import { loadBaseline } from './ratchet/baseline.js';
import { RECORD_ENV } from './ratchet/recorder.js';
import { LONGEST_METRIC_NAME, MAX_METRIC_NAME_CHARS } from './report/datadog-sink.js';
import type { ApprovedPattern, LoadedBaseline, RateLimitOptions, RateWindow, ResolvedOptions, TripwireOptions } from './types.js';
import { clip } from './util/text.js';

export const DEFAULT_RATE_LIMIT: Required<RateLimitOptions> = Object.freeze({
  // One Slack message per call site per 10 minutes: enough to notice, never a storm.
  perCallSite: Object.freeze({ events: 1, intervalMs: 600_000 }),
  // A cap across call sites, for a release that suddenly adds many rogue paths at once.
  global: Object.freeze({ events: 30, intervalMs: 60_000 }),
  maxCallSites: 10_000,
});

const KNOWN_KEYS: ReadonlySet<string> = new Set<keyof TripwireOptions>([
  'approved',
  'passThrough',
  'root',
  'onBypass',
  'mode',
  'models',
  'collections',
  'onError',
  'statsd',
  'notify',
  'rateLimit',
  'tags',
  'metricPrefix',
  'maxFrames',
  'maxDocumentIds',
  'documentIds',
  'idHashKey',
  'enabled',
  'heartbeatMs',
  'operations',
  'maxCallSiteTags',
  'baseline',
]);

function fail(message: string): never {
  throw new TripwireConfigError(`mongoose-tripwire: ${clip(message)}`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function positiveInteger(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    fail(`option "${name}" must be a positive integer, got ${describe(value)}`);
  }
  return value;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return clip(JSON.stringify(value), 200);
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof RegExp) return clip(String(value), 200);
  return typeof value === 'object' ? 'an object' : clip(`${typeof value} ${String(value)}`, 200);
}

/** Longest delay a Node timer holds (a signed 32-bit number of ms): above it, Node fires after 1 ms instead, in a loop. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** Shortest heartbeat: one gauge per watched model per beat; faster is a flood, not a fresher signal. */
export const MIN_HEARTBEAT_MS = 1_000;

function integerBetween(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(`option "${name}" must be an integer from ${min} to ${max}, got ${describe(value)}`);
  }
  return value;
}

function resolveApproved(value: unknown): ApprovedPattern[] {
  if (value === undefined)
    fail('option "approved" is required: list the files or folders that may write (e.g. approved: [\'src/auth/**\'])');
  if (!Array.isArray(value) || value.length === 0) {
    fail(`option "approved" must be a non-empty array of globs, absolute paths, RegExps or functions, got ${describe(value)}`);
  }
  return resolvePatterns('approved', value);
}

function resolvePatterns(name: 'approved' | 'passThrough', value: unknown): ApprovedPattern[] {
  if (!Array.isArray(value))
    fail(`option "${name}" must be an array of globs, absolute paths, RegExps or functions, got ${describe(value)}`);
  return value.map((pattern: unknown, index): ApprovedPattern => {
    if (typeof pattern === 'string') {
      if (pattern.trim() === '') fail(`option "${name}[${index}]" is an empty string`);
      return pattern;
    }
    if (pattern instanceof RegExp || typeof pattern === 'function') return pattern as ApprovedPattern;
    return fail(`option "${name}[${index}]" must be a string, RegExp or function, got ${describe(pattern)}`);
  });
}

function resolveRateWindow(value: unknown, name: string, fallback: RateWindow): RateWindow {
  if (value === undefined) return fallback;
  if (!isPlainObject(value)) fail(`option "${name}" must be { events, intervalMs }, got ${describe(value)}`);
  for (const key of Object.keys(value)) {
    if (key !== 'events' && key !== 'intervalMs') fail(`option "${name}" has an unknown key "${key}" (known: events, intervalMs)`);
  }
  return {
    events: positiveInteger(value.events, `${name}.events`, fallback.events),
    intervalMs: positiveInteger(value.intervalMs, `${name}.intervalMs`, fallback.intervalMs),
  };
}

function resolveRateLimit(value: unknown): Required<RateLimitOptions> | false {
  if (value === false) return false;
  if (value === undefined) return DEFAULT_RATE_LIMIT;
  if (!isPlainObject(value)) fail(`option "rateLimit" must be an object or false, got ${describe(value)}`);
  for (const key of Object.keys(value)) {
    if (key !== 'perCallSite' && key !== 'global' && key !== 'maxCallSites') {
      fail(`option "rateLimit" has an unknown key "${key}" (known: perCallSite, global, maxCallSites)`);
    }
  }
  return {
    perCallSite: resolveRateWindow(value.perCallSite, 'rateLimit.perCallSite', DEFAULT_RATE_LIMIT.perCallSite),
    global: resolveRateWindow(value.global, 'rateLimit.global', DEFAULT_RATE_LIMIT.global),
    maxCallSites: positiveInteger(value.maxCallSites, 'rateLimit.maxCallSites', DEFAULT_RATE_LIMIT.maxCallSites),
  };
}

const TAG_KEY = /^[A-Za-z][\w.\-/]*$/;

function resolveTags(value: unknown): string[] {
  if (value === undefined) return [];
  const entries: string[] = [];
  if (Array.isArray(value)) {
    for (const [index, tag] of value.entries()) {
      if (typeof tag !== 'string' || tag === '')
        fail(`option "tags[${index}]" must be a non-empty "key:value" string, got ${describe(tag)}`);
      entries.push(tag);
    }
  } else if (isPlainObject(value)) {
    for (const [key, tagValue] of Object.entries(value)) {
      if (!TAG_KEY.test(key))
        fail(`option "tags" has an invalid key ${JSON.stringify(key)} (letters, digits, _ - . / only, starting with a letter)`);
      if (typeof tagValue !== 'string') fail(`option "tags.${key}" must be a string, got ${describe(tagValue)}`);
      entries.push(`${key}:${tagValue}`);
    }
  } else {
    fail(`option "tags" must be an object or an array of "key:value" strings, got ${describe(value)}`);
  }
  return entries;
}

// Datadog handles are @ followed by a name; anything else in an event would be user text with an @ in it.
const HANDLE = /^@[\w.-]+$/;

function resolveNotify(value: unknown): string[] {
  if (value === undefined) return [];
  const handles = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(handles)) fail(`option "notify" must be a handle or an array of handles, got ${describe(value)}`);
  return handles.map((handle: unknown, index) => {
    if (typeof handle !== 'string' || !HANDLE.test(handle)) {
      fail(`option "notify[${index}]" must look like "@slack-channel-name", got ${describe(handle)}`);
    }
    return handle;
  });
}

// hot-shots 17's client options (node_modules/hot-shots/types.d.ts, lib/statsd.js): any other key is
// ignored by it, so a typo would silently leave the default in place.
const STATSD_KEYS: ReadonlySet<string> = new Set([
  'bufferFlushInterval',
  'bufferHolder',
  'cacheDns',
  'cacheDnsTtl',
  'errorHandler',
  'globalTags',
  'global_tags',
  'includeDataDogTags',
  'datadog',
  'originDetection',
  'containerID',
  'cardinality',
  'globalize',
  'host',
  'isChild',
  'maxBufferSize',
  'mock',
  'path',
  'port',
  'prefix',
  'protocol',
  'sampleRate',
  'socket',
  'stream',
  'suffix',
  'telegraf',
  'useDefaultRoute',
  'tagPrefix',
  'tagSeparator',
  'tcpGracefulErrorHandling',
  'tcpGracefulRestartRateLimit',
  'udsGracefulErrorHandling',
  'udsGracefulRestartRateLimit',
  'closingFlushInterval',
  'udpSocketOptions',
  'udsRetryOptions',
  'includeDatadogTelemetry',
  'telemetryFlushInterval',
  'aggregation',
]);
const STATSD_PROTOCOLS = ['udp', 'tcp', 'uds', 'stream'] as const;

/**
 * hot-shots client options, checked where hot-shots 17 would fall back to a default with a
 * console.error (lib/statsd.js: a port that is not an integer 1-65535, a sampleRate outside (0, 1],
 * a bad interval) or ignore them (an unknown key, an unknown protocol, a host or path the protocol
 * does not use). The port is a number: hot-shots refuses a numeric string, so it is refused here too.
 */
function resolveStatsdOptions(options: Record<string, unknown>): ClientOptions {
  for (const key of Object.keys(options)) {
    if (!STATSD_KEYS.has(key)) fail(`option "statsd" has a key hot-shots does not know: "${clip(key, 100)}"`);
  }
  const { host, port, protocol, path, stream, sampleRate } = options;
  if (protocol !== undefined && !STATSD_PROTOCOLS.includes(protocol as (typeof STATSD_PROTOCOLS)[number])) {
    fail(`option "statsd.protocol" must be one of ${STATSD_PROTOCOLS.map((p) => `'${p}'`).join(', ')}, got ${describe(protocol)}`);
  }
  const effective = (protocol as string | undefined) ?? 'udp';
  if (host !== undefined && (typeof host !== 'string' || host.trim() === '')) {
    fail(`option "statsd.host" must be a non-empty host name or IP address, got ${describe(host)}`);
  }
  if (port !== undefined && (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65_535)) {
    fail(`option "statsd.port" must be an integer from 1 to 65535 (a number, not a string), got ${describe(port)}`);
  }
  if (path !== undefined && (typeof path !== 'string' || path.trim() === '')) {
    fail(`option "statsd.path" must be the path of the agent's Unix socket, got ${describe(path)}`);
  }
  if (path !== undefined && effective !== 'uds') fail(`option "statsd.path" is only used with protocol 'uds' (protocol is '${effective}')`);
  if ((effective === 'uds' || effective === 'stream') && (host !== undefined || port !== undefined)) {
    fail(`option "statsd.${host !== undefined ? 'host' : 'port'}" is not used with protocol '${effective}'`);
  }
  if (
    effective === 'stream' &&
    (stream === null || typeof stream !== 'object' || typeof (stream as { write?: unknown }).write !== 'function')
  ) {
    fail(`option "statsd.stream" must be a writable stream with protocol 'stream', got ${describe(stream)}`);
  }
  if (stream !== undefined && effective !== 'stream') fail(`option "statsd.stream" is only used with protocol 'stream'`);
  if (sampleRate !== undefined && (typeof sampleRate !== 'number' || !(sampleRate > 0 && sampleRate <= 1))) {
    fail(`option "statsd.sampleRate" must be a number in (0, 1], got ${describe(sampleRate)}`);
  }
  for (const name of ['bufferFlushInterval', 'closingFlushInterval', 'telemetryFlushInterval', 'cacheDnsTtl'] as const) {
    const value = options[name];
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > MAX_TIMER_MS)) {
      fail(`option "statsd.${name}" must be a positive number of milliseconds up to ${MAX_TIMER_MS}, got ${describe(value)}`);
    }
  }
  return options as ClientOptions;
}

function resolveStatsd(value: unknown): StatsD | ClientOptions | false | undefined {
  if (value === undefined || value === false) return value;
  if (value !== null && typeof value === 'object') {
    const candidate = value as Record<string, unknown>;
    // A live client: duck-typed so two copies of hot-shots in one app still work.
    if (typeof candidate.send === 'function' && typeof candidate.increment === 'function') return value as StatsD;
    if (isPlainObject(value)) return resolveStatsdOptions(value);
  }
  return fail(`option "statsd" must be a hot-shots StatsD client, hot-shots client options, or false, got ${describe(value)}`);
}

/** Shortest `idHashKey`: 128 bits, the HMAC's whole protection for a guessable `_id`. */
export const MIN_ID_HASH_KEY_BYTES = 16;

function resolveIdHashKey(value: unknown): Buffer | undefined {
  if (value === undefined) return undefined;
  let key: Buffer;
  if (typeof value === 'string') key = Buffer.from(value, 'utf8');
  else if (value instanceof Uint8Array)
    key = Buffer.from(value); // a copy: the app may reuse its buffer
  else
    return fail(
      `option "idHashKey" must be a string or a Buffer of at least ${MIN_ID_HASH_KEY_BYTES} bytes, got ` +
        `${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`,
    );
  // Never the key itself in a message: only its length.
  if (key.length < MIN_ID_HASH_KEY_BYTES) {
    fail(
      `option "idHashKey" is ${key.length} byte${key.length === 1 ? '' : 's'} long: it must be at least ${MIN_ID_HASH_KEY_BYTES} random ` +
        `bytes (say, crypto.randomBytes(32).toString('base64')), or left out for a per-process random key`,
    );
  }
  return key;
}

/** Validates raw plugin options; throws `TripwireConfigError` naming the option at fault. */
export function resolveOptions(raw: unknown): ResolvedOptions {
  if (!isPlainObject(raw)) fail(`options must be an object with at least "approved", got ${describe(raw)}`);
  for (const key of Object.keys(raw)) {
    if (!KNOWN_KEYS.has(key)) fail(`unknown option "${key}" (known: ${[...KNOWN_KEYS].join(', ')})`);
  }

  const root = raw.root === undefined ? process.cwd() : raw.root;
  if (typeof root !== 'string' || root === '') fail(`option "root" must be a directory path, got ${describe(root)}`);

  const mode = raw.mode ?? 'report';
  if (mode !== 'report' && mode !== 'throw') fail(`option "mode" must be 'report' or 'throw', got ${describe(mode)}`);

  for (const name of ['onBypass', 'onError'] as const) {
    if (raw[name] !== undefined && typeof raw[name] !== 'function') fail(`option "${name}" must be a function, got ${describe(raw[name])}`);
  }

  let models: Set<string> | undefined;
  if (raw.models !== undefined) {
    if (!Array.isArray(raw.models) || raw.models.length === 0 || !raw.models.every((m) => typeof m === 'string' && m !== '')) {
      fail(`option "models" must be a non-empty array of model names, got ${describe(raw.models)}`);
    }
    models = new Set(raw.models as string[]);
  }
  let collections: Set<string> | undefined;
  if (raw.collections !== undefined) {
    if (
      !Array.isArray(raw.collections) ||
      raw.collections.length === 0 ||
      !raw.collections.every((c) => typeof c === 'string' && c !== '')
    ) {
      fail(`option "collections" must be a non-empty array of collection names, got ${describe(raw.collections)}`);
    }
    collections = new Set(raw.collections as string[]);
  }

  const metricPrefix = raw.metricPrefix ?? 'tripwire.';
  if (typeof metricPrefix !== 'string' || !/^[A-Za-z][\w.]*$/.test(metricPrefix)) {
    fail(`option "metricPrefix" must be letters, digits, _ and . starting with a letter, got ${describe(metricPrefix)}`);
  }
  const maxPrefix = MAX_METRIC_NAME_CHARS - LONGEST_METRIC_NAME.length;
  if (metricPrefix.length > maxPrefix) {
    fail(
      `option "metricPrefix" is ${metricPrefix.length} characters; at most ${maxPrefix}, so that ${LONGEST_METRIC_NAME} after it stays ` +
        `within Datadog's ${MAX_METRIC_NAME_CHARS}-character metric names`,
    );
  }

  const documentIds = raw.documentIds ?? true;
  if (typeof documentIds !== 'boolean') fail(`option "documentIds" must be true or false, got ${describe(documentIds)}`);

  const enabled = raw.enabled ?? true;
  if (typeof enabled !== 'boolean') fail(`option "enabled" must be true or false, got ${describe(enabled)}`);

  const KINDS = ['create', 'update', 'delete', 'read'];
  const operations = raw.operations ?? ['create', 'update', 'delete'];
  if (!Array.isArray(operations) || operations.length === 0 || !operations.every((kind) => KINDS.includes(kind as string))) {
    fail(`option "operations" must be a non-empty array of 'create', 'update', 'delete', 'read', got ${describe(operations)}`);
  }

  return {
    enabled,
    operations: new Set(operations as Array<'create' | 'update' | 'delete' | 'read'>),
    heartbeatMs: integerBetween(raw.heartbeatMs, 'heartbeatMs', 60_000, MIN_HEARTBEAT_MS, MAX_TIMER_MS),
    maxCallSiteTags: positiveInteger(raw.maxCallSiteTags, 'maxCallSiteTags', 1_000),
    approved: resolveApproved(raw.approved),
    passThrough: raw.passThrough === undefined ? [] : resolvePatterns('passThrough', raw.passThrough),
    root: isAbsolute(root) ? resolve(root) : resolve(process.cwd(), root),
    onBypass: raw.onBypass as ResolvedOptions['onBypass'],
    mode,
    models,
    collections,
    onError: raw.onError as ResolvedOptions['onError'],
    statsd: resolveStatsd(raw.statsd),
    notify: resolveNotify(raw.notify),
    rateLimit: resolveRateLimit(raw.rateLimit),
    tags: resolveTags(raw.tags),
    metricPrefix,
    maxFrames: positiveInteger(raw.maxFrames, 'maxFrames', 50),
    maxDocumentIds: positiveInteger(raw.maxDocumentIds, 'maxDocumentIds', 20),
    documentIds,
    idHashKey: resolveIdHashKey(raw.idHashKey),
    baseline: resolveBaseline(raw.baseline, root),
  };
}

/** The option `baseline`, read now: a bad file fails the registration, it never means "nothing known". */
function resolveBaseline(value: unknown, root: string): LoadedBaseline | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.trim() === '')
    fail(`option "baseline" must be the path of a baseline file (relative to root), got ${describe(value)}`);
  try {
    const recording = (process.env[RECORD_ENV] ?? '').trim() !== '';
    return loadBaseline(value, isAbsolute(root) ? resolve(root) : resolve(process.cwd(), root), recording);
  } catch (error) {
    if (error instanceof BaselineError) fail(`option "baseline": ${error.message}`);
    throw error;
  }
}
