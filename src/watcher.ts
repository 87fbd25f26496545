/**
 * One registration of the plugin at run time: it classifies each write when it is called and turns
 * each rogue write into a report, delivered after the write completed.
 */
import { compileApproval, countApprovedFiles, type Approval } from './approval.js';
import { APPROVED, captureCallSite, type Capture, type RogueCapture, type SpentCheck } from './capture.js';
import { createFaultReporter, type FaultReporter } from './faults.js';
import type { ResolvedOptions } from './options.js';
import { EventRateLimiter } from './rate-limit.js';
import { createSink, type DatadogSink } from './datadog-sink.js';
import { buildReport, fingerprintOf, locationOf, RogueWriteError, type BypassReport, type WriteKind, type WriteOperation, type WriteOutcome } from './report.js';
import { BaselineMatcher, DEFAULT_RECORD_FILE, describeKey, siteOf, type SiteKey } from './baseline.js';
import { createRecorder, RECORD_ENV, type Recorder } from './record.js';
import type { Frame } from './capture.js';

/** A write that completed (or, in throw mode, is about to be refused). */
export interface WriteEvent {
  model: string;
  operation: WriteOperation;
  kind: WriteKind;
  /** Undefined when the call was never seen by a wrapper (a query built by hand): it is then captured late, when the write runs. */
  capture: Capture | undefined;
  ids: () => readonly unknown[];
  outcome: () => WriteOutcome;
  /** A `Model.collection.*` call: no Mongoose middleware ran. */
  bypassedMiddleware?: boolean;
}

/** Receives every write and every report; the Datadog sink is one. */
export interface WriteListener {
  write(model: string, operation: WriteOperation, kind: WriteKind, approved: boolean): void;
  /**
   * A rogue write. `report` is the full report when an event is to be sent, undefined when the rate
   * limit holds it back (then only the call site is known, which is all counters need).
   */
  bypass(site: BypassSite, report: BypassReport | undefined): void;
  fault(reason: string): void;
  /**
   * A write to a watched collection whose call site cannot be known: seen at the driver with no
   * application frame on the stack (`route` `driver`, `command` the driver method), or only as a
   * command on the wire (`command_monitoring`, `command` the server command).
   */
  unattributed?(collection: string, command: string, route: UnattributedRoute): void;
}

export type UnattributedRoute = 'driver' | 'command_monitoring';

/** What every rogue write is counted by, cheap to know: no frames are built for it. */
export interface BypassSite {
  model: string;
  operation: WriteOperation;
  kind: WriteKind;
  /** `path:line:column` relative to root. */
  location: string;
  fingerprint: string;
  /** In the `baseline`: a known rogue call site (absent or false without a baseline). */
  baselined?: boolean;
}

interface ModelName { modelName?: string; baseModelName?: string }

/** Every registration in this process, for `flush()`, `close()` and `verify()`. */
export const activeWatchers = new Set<Watcher>();

/**
 * Delivery at the end of a process, without any call from the app. Neither hook keeps a process
 * alive: `beforeExit` is emitted only once the event loop is already empty.
 *   - `beforeExit` (the script ended naturally): deliver what is pending and flush the sockets the
 *     plugin owns; the sends are new work, so Node runs them and emits `beforeExit` again, when
 *     nothing is pending any more and the process exits. At most two rounds per burst of writes
 *     (the second carries faults of the first, such as `send_failed`), so a dead agent cannot make
 *     a loop of it.
 *   - `exit` (`process.exit()`, or after the above): no more asynchronous work can run, so do what
 *     can be done synchronously: build the pending reports, call `onBypass`, and hand every datagram
 *     to the socket. With an IP address as agent host the datagrams leave synchronously; a host name
 *     needs a DNS lookup that `process.exit()` does not wait for (README: "Delivery").
 */
let exitRounds = 0;
const MAX_EXIT_ROUNDS = 2;
function beforeExit(): void {
  if (exitRounds >= MAX_EXIT_ROUNDS) return;
  const unsent = [...activeWatchers].filter((watcher) => watcher.hasUnsent());
  if (unsent.length === 0) return;
  exitRounds += 1;
  for (const watcher of unsent) void watcher.flush();
}
function onExit(): void {
  for (const watcher of activeWatchers) if (watcher.hasUnsent()) watcher.flushSync();
}
function track(watcher: Watcher): void {
  if (activeWatchers.size === 0) {
    process.on('beforeExit', beforeExit);
    process.on('exit', onExit);
  }
  activeWatchers.add(watcher);
}
function untrack(watcher: Watcher): void {
  activeWatchers.delete(watcher);
  if (activeWatchers.size === 0) {
    process.off('beforeExit', beforeExit);
    process.off('exit', onExit);
  }
}

interface PendingDelivery { event: WriteEvent; capture: RogueCapture; at: Date }

const LOST_CALL_SITE: RogueCapture = Object.freeze({ approved: false, frames: Object.freeze([]), framesOmitted: 0, degraded: 'call site not captured' });

export class Watcher {
  readonly approval: Approval;
  readonly reportFault: FaultReporter;
  readonly limiter: EventRateLimiter;
  readonly sink: DatadogSink | undefined;
  /** Models compiled from an instrumented schema, by name (weakly: a model may be dropped). */
  readonly compiledModels = new Map<string, WeakRef<object>>();
  /** `approved` patterns and how many files under `root` each matched at registration (`null`: a function). */
  readonly approvedFiles: ReadonlyArray<{ pattern: string; files: number | null }>;
  /** Per watched collection: are raw write commands that no collection method made counted (driver command monitoring on)? */
  readonly driverMonitoring = new Map<string, boolean>();
  /** Per watched collection: are calls to the driver's own collection methods watched (Mongoose named its driver)? */
  readonly driverCalls = new Map<string, boolean>();
  private readonly listeners: WriteListener[] = [];
  /** Rogue writes that completed and are not delivered yet (their report is built off the write's path). */
  private readonly pending: PendingDelivery[] = [];
  private deliveryScheduled = false;
  /** The `baseline` option, matched in this process. */
  readonly baseline: BaselineMatcher | undefined;
  /** `TRIPWIRE_RECORD`: every rogue write appended to a file. */
  readonly recorder: Recorder | undefined;

  constructor(readonly options: ResolvedOptions) {
    this.reportFault = createFaultReporter(options.onError, (fault) => {
      for (const listener of this.listeners) listener.fault(fault.reason);
    });
    this.approval = compileApproval({
      approved: options.approved,
      passThrough: options.passThrough,
      root: options.root,
      // A pattern function that throws says "no" for that frame; the write is still judged.
      onPatternError: (option, error) => this.reportFault('pattern_threw', `an ${option} function threw, so that frame was taken as not ${option === 'approved' ? 'approved' : 'pass-through'}`, error),
    });
    this.limiter = new EventRateLimiter(options.rateLimit);
    this.sink = createSink(options, this.reportFault, () => [...this.compiledModels.keys()]);
    if (this.sink) this.listeners.push(this.sink);
    track(this);
    this.approvedFiles = options.approved.map((pattern) => ({ pattern: String(pattern), files: countApprovedFiles(pattern, options.root) }));
    this.baseline = options.baseline ? new BaselineMatcher(options.baseline) : undefined;
    this.recorder = createRecorder(process.env[RECORD_ENV], options.root, this.reportFault);
    this.bootChecks();
  }

  /** What can be wrong at boot without being an error: each is a warning, once. */
  private bootChecks(): void {
    for (const { pattern, files } of this.approvedFiles) {
      if (files === 0) {
        this.reportFault('approved_matches_nothing', `approved pattern ${pattern} matches no file under root ${this.options.root}: a typo, a moved folder or a wrong root? Every write would be reported as rogue`);
      }
    }
    if (this.sink && this.options.statsd === undefined && !process.env.DD_AGENT_HOST && !process.env.DD_DOGSTATSD_URL && !process.env.DD_DOGSTATSD_SOCKET) {
      // A boot notice (faults.ts): warned once, not counted in tripwire.errors.
      this.reportFault('statsd_default_target', `no statsd option and no DD_AGENT_HOST: events go to ${this.sink.target.description}, and whether an agent listens there is unknown (UDP never says)`);
    }
    const missing = this.baseline?.missingFiles(this.options.root) ?? [];
    if (missing.length > 0) {
      this.reportFault('baseline_stale', `baseline ${this.baseline!.baseline.path} has entries for files that do not exist under root ${this.options.root}: ${missing.join(', ')} (moved or deleted code? rebuild it with \`npx mongoose-tripwire baseline <records> --prune\`)`);
    }
  }

  /** A watched model was compiled from an instrumented schema (Mongoose emits `init` on the schema). */
  modelCompiled(model: object & ModelName): void {
    if (model.modelName) {
      this.compiledModels.set(model.modelName, new WeakRef(model));
      this.sink?.heartbeat();
    }
  }

  /** Models watched because they map to a watched collection (the `collections` option), by name. */
  private readonly watchedByCollection = new Set<string>();

  watches(modelName: string | undefined, baseModelName?: string): boolean {
    const { models, collections } = this.options;
    if (!models && !collections) return true;
    const named = (name: string | undefined) => name !== undefined && (models?.has(name) === true || this.watchedByCollection.has(name));
    return named(modelName) || named(baseModelName);
  }

  /** A model that writes through the collection object of a watched model is watched too. */
  watchSharingModel(modelName: string | undefined): void {
    if (modelName !== undefined && (this.options.models || this.options.collections)) this.watchedByCollection.add(modelName);
  }

  /** At compile time: is this model watched, by its name or by the collection it writes to? */
  watchesModel(modelName: string | undefined, baseModelName: string | undefined, collectionName: string | undefined): boolean {
    if (this.watches(modelName, baseModelName)) return true;
    if (modelName === undefined || collectionName === undefined || this.options.collections?.has(collectionName) !== true) return false;
    this.watchedByCollection.add(modelName);
    return true;
  }

  /** Called synchronously by the wrapper the app called. Never throws: a fault lets the write through, visibly. */
  capture(entry: Function): Capture {
    return this.captureGuarded(entry, false)!;
  }

  /** As `capture`, but undefined (and one stack read only) when Mongoose itself made the call. */
  captureUnlessMongoose(entry: Function): Capture | undefined {
    return this.captureGuarded(entry, true);
  }

  private captureGuarded(entry: Function, unlessMongoose: boolean): Capture | undefined {
    try {
      return captureCallSite(entry, this.approval, this.options.maxFrames, unlessMongoose, this.spentCheck());
    } catch (error) {
      // Pattern functions are guarded where they run (pattern_threw): this is a fault of our own.
      this.reportFault('capture_failed', 'could not read the call site of a write', error);
      return { ...LOST_CALL_SITE, degraded: 'call site capture failed' };
    }
  }

  /** When the write's promise settled: count it and, if rogue, report it (delivered shortly after, or by flush/close). */
  completed(event: WriteEvent, entry: Function): void {
    if (!this.options.operations.has(event.kind)) return;
    try {
      const capture = event.capture ?? this.lostCapture(event, entry);
      for (const listener of this.listeners) listener.write(event.model, event.operation, event.kind, capture.approved);
      if (capture.approved) return;
      exitRounds = 0;
      // Delivered off the write's path (the report is built after the app got its result), or
      // sooner by flush(), close() or the end of the process: whichever comes first.
      this.pending.push({ event, capture, at: new Date() });
      if (!this.deliveryScheduled) {
        this.deliveryScheduled = true;
        setImmediate(() => {
          this.deliveryScheduled = false;
          this.deliverPending();
        });
      }
    } catch (error) {
      this.reportFault('report_failed', `could not report a write to ${event.model}`, error);
    }
  }

  /** Throw mode, from the wrapper before the write is made: the error to refuse a rogue write with, or undefined to let it through. */
  refusal(event: WriteEvent, entry: Function): RogueWriteError | undefined {
    if (!this.options.operations.has(event.kind)) return undefined;
    try {
      const capture = event.capture ?? this.lostCapture(event, entry);
      if (capture.approved) return undefined;
      // A known call site goes through: it is counted and reported when it completed, as in report mode.
      if (this.baseline && this.isBaselined(event, capture.callSite ?? capture.frames[0])) return undefined;
      for (const listener of this.listeners) listener.write(event.model, event.operation, event.kind, false);
      const report = this.deliver(event, capture, new Date(), true);
      return report ? new RogueWriteError(report, this.acceptAdvice(event, capture.callSite ?? capture.frames[0])) : undefined;
    } catch (error) {
      this.reportFault('report_failed', `could not check a write to ${event.model}`, error);
      return undefined;
    }
  }

  /** A write that landed in a watched collection and that no call site accounts for. */
  unattributed(collection: string, command: string, route: UnattributedRoute): void {
    for (const listener of this.listeners) listener.unattributed?.(collection, command, route);
  }

  /**
   * Which rate-limit keys (fingerprints) were seen for a call site reached through a wrapper: the
   * wrapper the app called and the call site's location are known when the write is called, its
   * model and operation (the rest of the key) only when it completed. Usually one key each.
   */
  private seenKeys = new WeakMap<Function, Map<string, string[]>>();
  private seenKeyCount = 0;
  private spentCheckOrNone: SpentCheck | null | undefined;

  /**
   * A write's event is held back when the write is called if every key seen for its wrapper and
   * call site is spent at that moment: no trace is read for it. Not when every rogue write needs its
   * full report anyway (`onBypass`, throw mode), nor without a rate limit.
   */
  private spentCheck(): SpentCheck | undefined {
    if (this.spentCheckOrNone === undefined) {
      const { rateLimit, onBypass, mode, root } = this.options;
      this.spentCheckOrNone = rateLimit === false || onBypass !== undefined || mode !== 'report' ? null : (rogue) => {
        const byLocation = this.seenKeys.get(rogue.entry);
        if (byLocation === undefined || rogue.callSite === undefined) return false;
        const location = (rogue.location = locationOf(rogue.callSite, root));
        const keys = byLocation.get(location);
        if (keys === undefined) return false;
        for (const key of keys) if (!this.limiter.spent(key)) return false;
        return true;
      };
    }
    return this.spentCheckOrNone ?? undefined;
  }

  private rememberKey(entry: Function, location: string, fingerprint: string): void {
    let byLocation = this.seenKeys.get(entry);
    if (!byLocation) this.seenKeys.set(entry, (byLocation = new Map()));
    const keys = byLocation.get(location);
    if (keys?.includes(fingerprint)) return;
    // Bounded as the rate limiter is: past its size, start over (a forgotten key only means a full read).
    if (this.options.rateLimit && ++this.seenKeyCount > this.options.rateLimit.maxCallSites) {
      this.seenKeys = new WeakMap();
      this.seenKeyCount = 1;
      byLocation = new Map();
      this.seenKeys.set(entry, byLocation);
      byLocation.set(location, [fingerprint]);
      return;
    }
    if (keys) keys.push(fingerprint);
    else byLocation.set(location, [fingerprint]);
  }

  private lostCapture(event: WriteEvent, entry: Function): Capture {
    // A write whose call never went through a wrapper (a query built by hand, a Mongoose path we do
    // not know): the stack here rarely holds the caller, so say so rather than guess quietly.
    this.reportFault('call_site_lost', `${event.model}.${event.operation} was not seen when it was called; its call site may be wrong`);
    const late = this.capture(entry);
    if (late.approved) return APPROVED;
    // Delegating getters: the frames of a capture are built lazily, and a spread would drop them.
    return {
      approved: false,
      get frames() { return late.frames; },
      get framesOmitted() { return late.framesOmitted; },
      get callSite() { return late.callSite ?? late.frames[0]; },
      get location() { return late.location; },
      degraded: 'call site captured late, when the write ran',
      ...(late.heldBack ? { heldBack: true } : {}),
      ...(late.entry ? { entry: late.entry } : {}),
    };
  }

  private report(event: WriteEvent, capture: RogueCapture, at: Date, blocked: boolean): BypassReport {
    if (capture.degraded) this.reportFault('degraded_stack', `${event.model}.${event.operation}: ${capture.degraded}`);
    return buildReport({
      model: event.model,
      operation: event.operation,
      kind: event.kind,
      capture,
      ids: event.ids(),
      outcome: event.outcome(),
      at,
      blocked,
      root: this.options.root,
      maxDocumentIds: this.options.maxDocumentIds,
      documentIds: this.options.documentIds,
      idHashKey: this.options.idHashKey,
      bypassedMiddleware: event.bypassedMiddleware ?? false,
    });
  }

  /**
   * Rate limits, counts and reports one rogue write. The full report (frames, ids, text) is built
   * only when something will read it: an event to send, `onBypass`, or throw mode's error.
   */
  private deliver(event: WriteEvent, capture: RogueCapture, at: Date, blocked: boolean): BypassReport | undefined {
    try {
      const frame = capture.callSite ?? capture.frames[0];
      const location = (capture.callSite && capture.location) || locationOf(frame, this.options.root);
      const baselined = !blocked && this.isBaselined(event, frame);
      const site: BypassSite = { model: event.model, operation: event.operation, kind: event.kind, location, fingerprint: fingerprintOf(event.model, event.operation, location), baselined };
      this.recorder?.record({ model: event.model, operation: event.operation, kind: event.kind, frame, location, baselined, blocked, at });
      if (capture.entry && frame && !blocked) this.rememberKey(capture.entry, location, site.fingerprint);
      // Held back when called (watcher.spentCheck): its call site was spent then, and no trace was read.
      const admission = capture.heldBack ? this.limiter.holdBack(site.fingerprint) : this.limiter.admit(site.fingerprint);
      const onBypass = this.options.onBypass;
      const report = admission.send || onBypass || blocked ? this.report(event, capture, at, blocked) : undefined;
      if (report && admission.send) report.suppressed = admission.suppressed;
      if (report) report.baselined = baselined;
      for (const listener of this.listeners) {
        try {
          listener.bypass(site, admission.send ? report : undefined);
        } catch (error) {
          this.reportFault('sink_failed', 'could not send a bypass event', error);
        }
      }
      if (onBypass && report) this.callOnBypass(onBypass, report);
      return report;
    } catch (error) {
      this.reportFault('report_failed', `could not report a write to ${event.model}`, error);
      return undefined;
    }
  }

  private siteKey(event: WriteEvent, frame: Frame | undefined): SiteKey {
    return { model: event.model, operation: event.operation, ...siteOf(frame, this.options.root) };
  }

  /** Is this rogue write's call site in the baseline? The same call site always gets the same answer. */
  private isBaselined(event: WriteEvent, frame: Frame | undefined): boolean {
    if (!this.baseline) return false;
    return this.baseline.check(this.siteKey(event, frame), locationOf(frame, this.options.root)).baselined;
  }

  /** Throw mode with a baseline: why this write is new, and how to accept it into the baseline. */
  private acceptAdvice(event: WriteEvent, frame: Frame | undefined): string | undefined {
    if (!this.baseline) return undefined;
    const key = this.siteKey(event, frame);
    const path = this.baseline.baseline.path;
    const { allowed } = this.baseline.check(key, locationOf(frame, this.options.root));
    const why = allowed === 0
      ? `${describeKey(key)} is not in the baseline ${path}`
      : `the baseline ${path} knows ${allowed} call site${allowed === 1 ? '' : 's'} for ${describeKey(key)} and this is one more`;
    const record = this.recorder?.path;
    const accept = record
      ? `it was recorded in ${record}: run \`npx mongoose-tripwire baseline ${record} --out ${path}\``
      : `run the tests with ${RECORD_ENV}=${DEFAULT_RECORD_FILE}, then \`npx mongoose-tripwire baseline ${DEFAULT_RECORD_FILE} --out ${path}\``;
    return `New rogue call site: ${why}. Route this write through approved code, or accept it into the baseline: ${accept}`;
  }

  private callOnBypass(onBypass: (report: BypassReport) => void | Promise<void>, report: BypassReport): void {
    try {
      const result = onBypass(report);
      if (result && typeof (result as Promise<void>).then === 'function') {
        (result as Promise<void>).then(undefined, (error: unknown) => this.reportFault('onBypass_rejected', 'the onBypass option rejected', error));
      }
    } catch (error) {
      this.reportFault('onBypass_threw', 'the onBypass option threw', error);
    }
  }

  /** Delivers now, in order, every rogue write that completed and is still pending. */
  private deliverPending(): void {
    while (this.pending.length > 0) {
      for (const { event, capture, at } of this.pending.splice(0)) this.deliver(event, capture, at, false);
    }
  }

  /** Something completed that is not yet on its way to Datadog: a pending report, a counter, a buffered datagram. */
  hasUnsent(): boolean {
    return this.pending.length > 0 || (this.sink?.hasUnsent() ?? false);
  }

  /**
   * Every rogue write that already completed is delivered (counted, `onBypass` called, its event
   * handed to the client), the counters are sent, and a client the plugin owns has flushed its
   * buffer to the socket. Never rejects.
   */
  async flush(): Promise<void> {
    this.deliverPending();
    await this.sink?.flush();
  }

  /** `flush()` as far as it can go synchronously, for `process.on('exit')`. */
  flushSync(): void {
    this.deliverPending();
    this.sink?.flushSync();
  }

  async close(): Promise<void> {
    untrack(this);
    this.deliverPending();
    await this.sink?.close();
  }
}
