/**
 * What happens to a write once it is judged: every listener counts it; a rogue one is rate limited,
 * recorded, checked against the baseline and reported — off the write's path (its report is built
 * after the app got its result), or in throw mode as the error that refuses it.
 */
import { isAbsolute } from 'node:path';
import { traceContextOf } from '../attribution/trace-context.js';
import { RogueWriteError } from '../errors.js';
import { type BaselineMatcher, DEFAULT_RECORD_FILE } from '../ratchet/baseline.js';
import { RECORD_ENV, type Recorder } from '../ratchet/recorder.js';
import { describeKey, type SiteKey, siteOf } from '../ratchet/site-key.js';
import { buildReport, fingerprintOf, locationOf } from '../report/bypass-report.js';
import type { EventRateLimiter } from '../report/rate-limit.js';
import { hasRogueWriteSubscribers, publishRogueWrite } from '../report/rogue-write-channel.js';
import type {
  BypassReport,
  BypassSite,
  Capture,
  FaultReporter,
  Frame,
  ResolvedOptions,
  RogueCapture,
  UnattributedRoute,
  WriteEvent,
  WriteListener,
} from '../types.js';
import { displayPath } from '../util/paths.js';
import { rogueWriteCompleted } from './lifecycle.js';
import type { Verdicts } from './verdicts.js';

/** `file` as the working directory reaches it: relative inside it, absolute (as the option gave it, if so) outside. */
function fromWorkingDirectory(file: string, given: string): string {
  return isAbsolute(given) ? given : displayPath(file, process.cwd());
}

/** A path as one shell word: as is when it has only safe characters, single-quoted otherwise. */
function shellArgument(path: string): string {
  return /^[\w@%+=:,./-]+$/.test(path) ? path : `'${path.replaceAll("'", "'\\''")}'`;
}

interface PendingDelivery {
  event: WriteEvent;
  capture: RogueCapture;
  at: Date;
}

export interface DeliveryParts {
  options: ResolvedOptions;
  listeners: readonly WriteListener[];
  limiter: EventRateLimiter;
  verdicts: Verdicts;
  reportFault: FaultReporter;
  baseline: BaselineMatcher | undefined;
  recorder: Recorder | undefined;
}

export class Delivery {
  /** Rogue writes that completed and are not delivered yet. */
  private readonly pending: PendingDelivery[] = [];
  private deliveryScheduled = false;
  private readonly options: ResolvedOptions;
  private readonly listeners: readonly WriteListener[];
  private readonly limiter: EventRateLimiter;
  private readonly verdicts: Verdicts;
  private readonly reportFault: FaultReporter;
  private readonly baseline: BaselineMatcher | undefined;
  private readonly recorder: Recorder | undefined;

  constructor(parts: DeliveryParts) {
    ({
      options: this.options,
      listeners: this.listeners,
      limiter: this.limiter,
      verdicts: this.verdicts,
      reportFault: this.reportFault,
      baseline: this.baseline,
      recorder: this.recorder,
    } = parts);
  }

  /** When the write's promise settled: count it and, if rogue, report it (delivered shortly after, or by flush/close). */
  completed(event: WriteEvent, entry: Function): void {
    if (!this.options.operations.has(event.kind)) return;
    try {
      const capture = event.capture ?? this.verdicts.late(event, entry);
      for (const listener of this.listeners) listener.write(event.model, event.operation, event.kind, capture.approved);
      if (capture.approved) return;
      rogueWriteCompleted();
      // Delivered off the write's path, or sooner by flush(), close() or the end of the process.
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
      const capture: Capture = event.capture ?? this.verdicts.late(event, entry);
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

  unattributed(collection: string, command: string, route: UnattributedRoute): void {
    for (const listener of this.listeners) listener.unattributed?.(collection, command, route);
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
      // The span was read when the write was called; the request's route is read now (often named only by then).
      trace: capture.trace && traceContextOf(capture.trace),
    });
  }

  /**
   * Rate limits, counts and reports one rogue write. The full report (frames, ids, text) is built
   * only when something will read it: an event to send, `onBypass`, throw mode's error, or a
   * subscriber of the rogue-write channel (which, like `onBypass`, gets every rogue write, rate
   * limited or not).
   */
  private deliver(event: WriteEvent, capture: RogueCapture, at: Date, blocked: boolean): BypassReport | undefined {
    try {
      const frame = capture.callSite ?? capture.frames[0];
      const location = (capture.callSite && capture.location) || locationOf(frame, this.options.root);
      const baselined = !blocked && this.isBaselined(event, frame);
      const site: BypassSite = {
        model: event.model,
        operation: event.operation,
        kind: event.kind,
        location,
        fingerprint: fingerprintOf(event.model, event.operation, location),
        baselined,
      };
      this.recorder?.record({ model: event.model, operation: event.operation, kind: event.kind, frame, location, baselined, blocked, at });
      if (capture.entry && frame && !blocked) this.verdicts.rememberKey(capture.entry, location, site.fingerprint);
      // Held back when called (Verdicts' spent check): its call site was spent then, and no trace was read.
      const admission = capture.heldBack ? this.limiter.holdBack(site.fingerprint) : this.limiter.admit(site.fingerprint);
      const onBypass = this.options.onBypass;
      const subscribed = hasRogueWriteSubscribers();
      const report = admission.send || onBypass || blocked || subscribed ? this.report(event, capture, at, blocked) : undefined;
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
      if (subscribed && report) {
        publishRogueWrite(report, (error) =>
          this.reportFault('subscriber_threw', 'a subscriber of the mongoose-tripwire:rogue-write diagnostics channel threw', error),
        );
      }
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
    const why =
      allowed === 0
        ? `${describeKey(key)} is not in the baseline ${path}`
        : `the baseline ${path} knows ${allowed} call site${allowed === 1 ? '' : 's'} for ${describeKey(key)} and this is one more`;
    const record = this.recorder?.path;
    // The command runs where the tests run: --out is relative to the working directory, the option to root.
    const out = shellArgument(fromWorkingDirectory(this.baseline.baseline.file, path));
    const accept = record
      ? `it was recorded in ${record}: run \`npx mongoose-tripwire baseline ${shellArgument(record)} --out ${out}\` once this run is over`
      : `run the tests with ${RECORD_ENV}=${DEFAULT_RECORD_FILE}, then \`npx mongoose-tripwire baseline ${DEFAULT_RECORD_FILE} --out ` +
        `${out}\``;
    return `New rogue call site: ${why}. Route this write through approved code, or accept it into the baseline: ${accept}`;
  }

  private callOnBypass(onBypass: (report: BypassReport) => void | Promise<void>, report: BypassReport): void {
    try {
      const result = onBypass(report);
      if (result && typeof (result as Promise<void>).then === 'function') {
        (result as Promise<void>).then(undefined, (error: unknown) =>
          this.reportFault('onBypass_rejected', 'the onBypass option rejected', error),
        );
      }
    } catch (error) {
      this.reportFault('onBypass_threw', 'the onBypass option threw', error);
    }
  }

  /** Delivers now, in order, every rogue write that completed and is still pending. */
  deliverPending(): void {
    while (this.pending.length > 0) {
      for (const { event, capture, at } of this.pending.splice(0)) this.deliver(event, capture, at, false);
    }
  }

  hasUnsent(): boolean {
    return this.pending.length > 0 || this.listeners.some((listener) => listener.hasUnsent?.() === true);
  }

  async flush(): Promise<void> {
    this.deliverPending();
    await Promise.all(this.listeners.map((listener) => listener.flush?.()));
  }

  flushSync(): void {
    this.deliverPending();
    for (const listener of this.listeners) listener.flushSync?.();
  }

  async close(): Promise<void> {
    this.deliverPending();
    await Promise.all(this.listeners.map((listener) => listener.close?.()));
  }
}
