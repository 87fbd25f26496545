/**
 * The Datadog side: exact counters for every write, and one event per admitted rogue write, sent
 * through a hot-shots client (its transports, buffering, errorHandler and global tags) as datagrams
 * we format ourselves: hot-shots 17 writes UTF-16 lengths into the event header, so any non-ASCII
 * path would make the agent reject the event (see dogstatsd.ts).
 */

import type { ClientOptions } from 'hot-shots';
import StatsDClient from 'hot-shots';
import { DatagramError } from '../errors.js';
import type {
  BypassReport,
  BypassSite,
  FaultReporter,
  ResolvedOptions,
  UnattributedRoute,
  WriteKind,
  WriteListener,
  WriteOperation,
} from '../types.js';
import { alertTitle, datadogAppHost, renderAlert } from './alert.js';
import { withoutColumn } from './bypass-report.js';
import { type EventFields, fitTag, formatCount, formatEvent, formatGauge, MAX_TAG_CHARS, sanitizeTag, utf8Bytes } from './dogstatsd.js';

/** The agent's default read buffer (`dogstatsd_buffer_size`): a larger datagram is dropped whole. */
export const MAX_DATAGRAM_BYTES = 8192;

// Datadog keeps metric names up to 200 characters; the longest name the plugin sends after its prefix.
export const MAX_METRIC_NAME_CHARS = 200;
export const LONGEST_METRIC_NAME = 'unattributed_writes';
// Counters are summed in memory and sent this often (and on close): exact, and no syscall per write.
const COUNTER_FLUSH_MS = 2_000;

interface Counter {
  name: string;
  tags: string[];
  value: number;
}
/** One counter series: its key in `counters`, its name and tags. */
interface Series {
  key: string;
  name: string;
  tags: string[];
}
interface SeriesTree {
  series?: Series;
  next?: Map<string, SeriesTree>;
}
const MAX_CACHED_SERIES = 10_000;

/** Title prefix of the event of a known (baselined) rogue call site. */
export const KNOWN_TITLE_PREFIX = '[known] ';

/** The parts of a hot-shots client we use; both a client we own and one the app passed in have them. */
interface Client {
  /** Sends a pre-built message with the client's tags and transport (hot-shots' own, untyped in its .d.ts). */
  send(message: string, tags: readonly string[], callback: (error?: Error | null) => void): void;
  close(callback: (error?: Error | null) => void): void;
  /** hot-shots ≥ 17: sends the buffer now; the callback runs once it was handed to the socket and sends in flight drained. */
  flush?(callback?: (error?: Error | null) => void): void;
  globalTags?: string[];
  getDatadogExtensionFields?: () => string[];
  host?: string;
  port?: number;
  /** hot-shots' transport after it read its options and `DD_DOGSTATSD_URL` / `DD_DOGSTATSD_SOCKET`: `udp`, `tcp`, `uds`, `stream`. */
  protocol?: string;
  path?: string;
}

/**
 * Where a client we created really sends, read back from it (hot-shots resolved its options and the
 * `DD_AGENT_HOST`, `DD_DOGSTATSD_PORT`, `DD_DOGSTATSD_URL`, `DD_DOGSTATSD_SOCKET` environment).
 */
export function describeTarget(client: Pick<Client, 'host' | 'port' | 'protocol' | 'path'>): string {
  const protocol = client.protocol ?? 'udp';
  if (protocol === 'uds') return `unix://${client.path ?? ''}`;
  if (protocol === 'stream') return 'a stream passed in the statsd option';
  // hot-shots leaves an unset host undefined and lets the socket default it to the loopback address.
  return `${protocol}://${client.host ?? '127.0.0.1'}:${client.port ?? 8125}`;
}

export interface StatsdTarget {
  /** Where datagrams go, e.g. `udp://127.0.0.1:8125`, or `app-provided client`. */
  description: string;
  owned: boolean;
}

export class DatadogSink implements WriteListener {
  private readonly counters = new Map<string, Counter>();
  private seriesTree: SeriesTree = {};
  private seriesCount = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly heartbeatTimer: NodeJS.Timeout;
  private readonly environment: string[];
  /** Where a trace is linked (`DD_SITE`); no link without it. */
  private readonly appHost = datadogAppHost(process.env.DD_SITE);
  private closed = false;
  /** Datagrams handed to a client we own since its buffer was last flushed. */
  private buffered = false;
  /** `callsite` tag values `tripwire.bypasses` has used: each is a billed series, so they are bounded. */
  private readonly callSiteTags = new Set<string>();
  private callSitesCapped = false;
  readonly target: StatsdTarget;

  constructor(
    private readonly client: Client,
    owned: boolean,
    private readonly options: ResolvedOptions,
    private readonly reportFault: FaultReporter,
    private readonly watchedModels: () => string[],
  ) {
    this.target = {
      owned,
      description: owned ? describeTarget(client) : 'a hot-shots client passed by the app',
    };
    this.environment = (['DD_ENV', 'DD_SERVICE', 'DD_VERSION'] as const)
      .filter((name) => process.env[name])
      .map((name) => `${name.slice(3).toLowerCase()}: ${process.env[name]}`);
    this.timer = setInterval(() => this.flushCounters(), COUNTER_FLUSH_MS);
    this.timer.unref(); // the plugin never keeps a process alive on its own
    this.heartbeatTimer = setInterval(() => this.heartbeat(), options.heartbeatMs);
    this.heartbeatTimer.unref();
  }

  modelWatched(): void {
    this.heartbeat();
  }

  /** `tripwire.watching` = 1 per watched model: a Datadog "no data" monitor sees a detector that stopped. */
  heartbeat(): void {
    if (this.closed) return;
    for (const model of this.watchedModels()) {
      this.sendMetric(formatGauge(`${this.options.metricPrefix}watching`, 1), this.allTags([`model:${model}`]));
    }
  }

  write(model: string, operation: WriteOperation, kind: WriteKind, approved: boolean): void {
    // Reads (opt-in) get their own metric so `tripwire.writes` stays a count of writes.
    const name = kind === 'read' ? 'reads' : 'writes';
    this.countSeries(
      this.seriesOf([name, model, operation, kind, approved ? 'true' : 'false'], () => ({
        name,
        tags: [`model:${model}`, `operation:${operation}`, `kind:${kind}`, `approved:${approved}`],
      })),
    );
  }

  unattributed(collection: string, command: string, route: UnattributedRoute): void {
    this.count('unattributed_writes', [`collection:${collection}`, `command:${command}`, `route:${route}`]);
  }

  bypass(site: BypassSite, report: BypassReport | undefined): void {
    const base = () => [`model:${site.model}`, `operation:${site.operation}`, `kind:${site.kind}`];
    const baselined = site.baselined ?? false;
    // `baselined` before `callsite`: monitors page on `baselined:false`, so it is kept longer if tags must go.
    // (A call site keeps the `callsite` tag it got first: the set of kept tags only grows.)
    this.countSeries(
      this.seriesOf(['bypasses', site.model, site.operation, site.kind, baselined ? 'true' : 'false', site.location], () => ({
        name: 'bypasses',
        tags: [...base(), `baselined:${baselined}`, this.callSiteTag(site.location)],
      })),
    );
    if (!report) {
      this.countSeries(
        this.seriesOf(['events_suppressed', site.model, site.operation, site.kind], () => ({ name: 'events_suppressed', tags: base() })),
      );
      return;
    }
    this.sendEvent(report);
  }

  /**
   * Every write is counted: its series (the counter's key, name and tags) is found by its parts
   * without building strings, and built once (measured: building tags and key per write cost more
   * than the rest of a held-back rogue write's bookkeeping).
   */
  private seriesOf(parts: readonly string[], build: () => { name: string; tags: string[] }): Series {
    let node = this.seriesTree;
    for (const part of parts) {
      node.next ??= new Map();
      let child = node.next.get(part);
      if (!child) node.next.set(part, (child = {}));
      node = child;
    }
    if (node.series) return node.series;
    const { name, tags } = build();
    const series: Series = { key: `${name}|${tags.join(',')}`, name, tags };
    if (++this.seriesCount > MAX_CACHED_SERIES) {
      this.seriesTree = {};
      this.seriesCount = 0;
    } else {
      node.series = series;
    }
    return series;
  }

  private countSeries(series: Series): void {
    const counter = this.counters.get(series.key);
    if (counter) counter.value++;
    else this.counters.set(series.key, { name: series.name, tags: series.tags, value: 1 });
  }

  fault(reason: string): void {
    this.count('errors', [`reason:${reason}`]);
  }

  private count(name: string, tags: string[]): void {
    this.countSeries({ key: `${name}|${tags.join(',')}`, name, tags });
  }

  /**
   * The `callsite` tag of `tripwire.bypasses`: the first `maxCallSiteTags` distinct values are kept,
   * later ones become `callsite:other` (one warning), so the series stay bounded and totals exact.
   */
  private callSiteTag(location: string): string {
    const tag = fitTag(sanitizeTag(`callsite:${withoutColumn(location)}`), MAX_TAG_CHARS, 'end');
    if (this.callSiteTags.has(tag)) return tag;
    if (this.callSiteTags.size < this.options.maxCallSiteTags) {
      this.callSiteTags.add(tag);
      return tag;
    }
    if (!this.callSitesCapped) {
      this.callSitesCapped = true;
      this.reportFault(
        'callsite_tags_capped',
        `rogue writes came from more than ${this.options.maxCallSiteTags} call sites (option maxCallSiteTags): tripwire.bypasses counts ` +
          `the others under callsite:other; their events still name them`,
      );
    }
    return 'callsite:other';
  }

  /** Our tags, then the app's, each sanitized and at most 200 characters (a call site keeps its file name and line). */
  private allTags(tags: readonly string[]): string[] {
    return [...tags, ...this.options.tags].map((raw) => {
      const tag = sanitizeTag(raw);
      return fitTag(tag, MAX_TAG_CHARS, tag.startsWith('callsite:') ? 'end' : 'start');
    });
  }

  /** Bytes hot-shots appends after our message: `|#` and the tags (ours, then its global tags), and DogStatsD extension fields. */
  private appendedBytes(ownTags: readonly string[]): number {
    const global = this.client.globalTags ?? [];
    const tags = [...ownTags, ...global];
    const tagBytes = tags.length > 0 ? 2 + utf8Bytes(tags.join(',')) : 0;
    const extensions = this.client.getDatadogExtensionFields?.() ?? [];
    return tagBytes + extensions.reduce((sum, field) => sum + 1 + utf8Bytes(field), 0);
  }

  /**
   * The longest prefix of `tags` (ours come first) with which a datagram of `messageBytes` stays
   * within MAX_DATAGRAM_BYTES once hot-shots appended them, its global tags and extension fields;
   * undefined when not even the message without any of our tags fits.
   */
  private tagsThatFit(messageBytes: number, tags: readonly string[]): string[] | undefined {
    const global = this.client.globalTags ?? [];
    let used = messageBytes + this.appendedBytes([]);
    if (used > MAX_DATAGRAM_BYTES) return undefined;
    let count = 0;
    for (const tag of tags) {
      // ',' before it, or '|#' for the very first tag of the datagram.
      const cost = utf8Bytes(tag) + (count + global.length > 0 ? 1 : 2);
      if (used + cost > MAX_DATAGRAM_BYTES) break;
      used += cost;
      count += 1;
    }
    if (count < tags.length) {
      this.reportFault(
        'tags_dropped',
        `tags that did not fit in one ${MAX_DATAGRAM_BYTES}-byte datagram were left off (the plugin's own come first and are kept ` +
          `longest); fewer or shorter tags (option tags, the client's globalTags) avoid it`,
      );
    }
    return tags.slice(0, count);
  }

  /** A metric with as many of its tags as fit in one datagram: the count is sent either way. */
  private sendMetric(message: string, tags: string[]): void {
    const kept = this.tagsThatFit(utf8Bytes(message), tags);
    if (kept === undefined) {
      this.reportFault(
        'datagram_too_large',
        `${message} cannot fit in one ${MAX_DATAGRAM_BYTES}-byte datagram even without its tags: the client's global tags are too long`,
      );
      return;
    }
    this.send(message, kept);
  }

  private send(message: string, tags: string[]): void {
    if (this.target.owned) this.buffered = true;
    try {
      this.client.send(message, tags, (error) => {
        if (error) this.reportFault('send_failed', 'could not send to DogStatsD', error);
      });
    } catch (error) {
      this.reportFault('send_failed', 'could not send to DogStatsD', error);
    }
  }

  private sendEvent(report: BypassReport): void {
    // A known (baselined) call site is marked as such and notifies nobody: only new ones page.
    const known = report.baselined;
    const alert = renderAlert(report, {
      root: this.options.root,
      notify: known ? [] : this.options.notify,
      environment: this.environment,
      appHost: this.appHost,
    });
    if (known && alert.head.startsWith('%%%\n'))
      alert.head = `%%%\n_Known call site, in the baseline: counted and let through, not paged._\n${alert.head.slice(4)}`;
    const tags = this.allTags([...alert.tags, `baselined:${known}`]);
    const fields: EventFields = {
      title: known ? `${KNOWN_TITLE_PREFIX}${alertTitle(report, 100 - KNOWN_TITLE_PREFIX.length)}` : alert.title,
      text: { head: alert.head, trace: alert.trace, tail: alert.tail },
      dateHappened: report.at,
      aggregationKey: report.fingerprint,
      alertType: known ? 'info' : 'warning',
      sourceTypeName: 'mongoose-tripwire',
    };
    // No event is dropped for its tags: the trace is cut first (down to `… N more frames`), then
    // tags are left off from the last, and only then would the head be cut.
    const traceCut = alert.trace.length > 0 ? [`… ${alert.trace.length} more frames`] : [];
    const smallest = formatEvent(
      { ...fields, text: { head: alert.head, trace: traceCut, tail: alert.tail } },
      { maxDatagramBytes: Infinity },
    );
    let kept = this.tagsThatFit(utf8Bytes(smallest), tags) ?? [];
    for (;;) {
      try {
        this.send(formatEvent(fields, { maxDatagramBytes: MAX_DATAGRAM_BYTES - this.appendedBytes(kept) }), kept);
        return;
      } catch (error) {
        if (!(error instanceof DatagramError) || kept.length === 0) throw error;
        kept = kept.slice(0, -1);
      }
    }
  }

  /** Sends the summed counters; the next interval starts from zero. */
  flushCounters(): void {
    if (this.counters.size === 0) return;
    const counters = [...this.counters.values()];
    this.counters.clear();
    for (const counter of counters) {
      const tags = this.allTags(counter.tags);
      this.sendMetric(formatCount(`${this.options.metricPrefix}${counter.name}`, counter.value), tags);
    }
  }

  /** Counters not sent yet, or datagrams still in the buffer of a client we own. */
  hasUnsent(): boolean {
    return !this.closed && (this.counters.size > 0 || this.buffered);
  }

  /**
   * Sends the counters and, for a client we own, its buffer: resolves once the datagrams were handed
   * to the socket (hot-shots' `flush` callback). A client the app passed in is the app's to flush.
   */
  async flush(): Promise<void> {
    if (this.closed) return;
    this.flushCounters();
    if (!this.target.owned || !this.buffered) return;
    this.buffered = false;
    const client = this.client;
    if (typeof client.flush !== 'function') return;
    await new Promise<void>((resolve) => {
      try {
        client.flush!((error) => {
          if (error) this.reportFault('send_failed', 'could not send to DogStatsD', error);
          resolve();
        });
      } catch (error) {
        this.reportFault('send_failed', 'could not send to DogStatsD', error);
        resolve();
      }
    });
  }

  /** As much of `flush()` as runs synchronously: every datagram handed to the socket (for `process.on('exit')`). */
  flushSync(): void {
    if (this.closed) return;
    this.flushCounters();
    if (!this.target.owned || !this.buffered) return;
    this.buffered = false;
    try {
      this.client.flush?.();
    } catch (error) {
      this.reportFault('send_failed', 'could not send to DogStatsD', error);
    }
  }

  /** Flushes the counters and, for a client we created, flushes and closes it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    clearInterval(this.heartbeatTimer);
    this.flushCounters();
    if (!this.target.owned) return;
    this.buffered = false;
    await new Promise<void>((resolve) => {
      try {
        this.client.close((error) => {
          if (error) this.reportFault('close_failed', 'could not close the DogStatsD client', error);
          resolve();
        });
      } catch (error) {
        this.reportFault('close_failed', 'could not close the DogStatsD client', error);
        resolve();
      }
    });
  }
}

/** The client to use: the app's own, one from its options, or one from the `DD_*` environment. */
export function createSink(options: ResolvedOptions, reportFault: FaultReporter, watchedModels: () => string[]): DatadogSink | undefined {
  const setting = options.statsd;
  if (setting === false) return undefined;
  if (setting && typeof (setting as Partial<Client>).send === 'function') {
    return new DatadogSink(setting as unknown as Client, false, options, reportFault, watchedModels);
  }
  const clientOptions: ClientOptions = {
    bufferFlushInterval: 1_000,
    ...(setting as ClientOptions | undefined),
    // hot-shots joins buffered datagrams into one packet up to this size: never more than the agent reads.
    maxBufferSize: Math.min((setting as ClientOptions | undefined)?.maxBufferSize ?? MAX_DATAGRAM_BYTES, MAX_DATAGRAM_BYTES),
    errorHandler: (error: Error) => {
      reportFault('statsd_error', 'the DogStatsD client reported an error', error);
      (setting as ClientOptions | undefined)?.errorHandler?.(error);
    },
  };
  const client = new StatsDClient(clientOptions) as unknown as Client;
  // Its global tags (the `globalTags` option, `DD_ENV`...) go on every datagram: at most 200 characters each too.
  if (Array.isArray(client.globalTags)) client.globalTags = client.globalTags.map((tag) => fitTag(tag));
  return new DatadogSink(client, true, options, reportFault, watchedModels);
}
