/**
 * The verdict on each write, given when it is called: a guarded stack read (a fault lets the write
 * through, visibly), and what lets a rogue write whose events are spent skip the full read.
 */
import type { Approval } from '../attribution/approval.js';
import { APPROVED, callSiteJudge, type SpentCheck } from '../attribution/call-site.js';
import { activeTrace } from '../attribution/trace-context.js';
import { locationOf } from '../report/bypass-report.js';
import type { EventRateLimiter } from '../report/rate-limit.js';
import { hasRogueWriteSubscribers } from '../report/rogue-write-channel.js';
import type { Capture, FaultReporter, ResolvedOptions, RogueCapture, WriteEvent } from '../types.js';

const LOST_CALL_SITE: RogueCapture = Object.freeze({
  approved: false,
  frames: Object.freeze([]),
  framesOmitted: 0,
  degraded: 'call site not captured',
});

export class Verdicts {
  /**
   * Which rate-limit keys (fingerprints) were seen for a call site reached through a wrapper: the
   * wrapper the app called and the call site's location are known when the write is called, its
   * model and operation (the rest of the key) only when it completed. Usually one key each.
   */
  private seenKeys = new WeakMap<Function, Map<string, string[]>>();
  private seenKeyCount = 0;
  private readonly spentCheck: SpentCheck | undefined;

  constructor(
    approval: Approval,
    private readonly options: ResolvedOptions,
    private readonly limiter: EventRateLimiter,
    private readonly reportFault: FaultReporter,
  ) {
    this.spentCheck = this.createSpentCheck();
    const lost = (error: unknown) => this.lost(error);
    this.capture = callSiteJudge(approval, options.maxFrames, false, this.spentCheck, lost);
    this.captureUnlessMongoose = callSiteJudge(approval, options.maxFrames, true, this.spentCheck, lost);
  }

  /**
   * The verdict on the write being called through `entry`, the wrapper the app called: functions the
   * wrappers call directly, whose stack read is made right above them (call-site.ts, `callSiteJudge`).
   * A fault of our own lets the write through as rogue, visibly (`capture_failed`).
   */
  readonly capture: (entry: Function) => Capture;
  /** As `capture`, but undefined when Mongoose itself made the call. */
  readonly captureUnlessMongoose: (entry: Function) => Capture | undefined;

  private lost(error: unknown): Capture {
    // Pattern functions are guarded where they run (pattern_threw): this is a fault of our own.
    this.reportFault('capture_failed', 'could not read the call site of a write', error);
    return { ...LOST_CALL_SITE, degraded: 'call site capture failed', trace: activeTrace() };
  }

  /**
   * A write's event is held back when the write is called if every key seen for its wrapper and
   * call site is spent at that moment: no trace is read for it. Not when every rogue write needs its
   * full report anyway (`onBypass`, throw mode, a channel subscriber), nor without a rate limit.
   */
  private createSpentCheck(): SpentCheck | undefined {
    const { rateLimit, onBypass, mode, root } = this.options;
    if (rateLimit === false || onBypass !== undefined || mode !== 'report') return undefined;
    return (rogue) => {
      // A subscriber of the rogue-write channel gets every report, as `onBypass` does.
      if (hasRogueWriteSubscribers()) return false;
      const byLocation = this.seenKeys.get(rogue.entry);
      if (byLocation === undefined || rogue.callSite === undefined) return false;
      const location = (rogue.location = locationOf(rogue.callSite, root));
      const keys = byLocation.get(location);
      if (keys === undefined) return false;
      for (const key of keys) if (!this.limiter.spent(key)) return false;
      return true;
    };
  }

  /** A rogue write of this wrapper and location was delivered under this rate-limit key. */
  rememberKey(entry: Function, location: string, fingerprint: string): void {
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

  /** The verdict of a write whose call no wrapper saw (a query built by hand, a Mongoose path we do not know). */
  late(event: WriteEvent, entry: Function): Capture {
    // The stack here rarely holds the caller, so say so rather than guess quietly.
    this.reportFault('call_site_lost', `${event.model}.${event.operation} was not seen when it was called; its call site may be wrong`);
    const late = this.capture(entry);
    if (late.approved) return APPROVED;
    // Delegating getters: the frames of a capture are built lazily, and a spread would drop them.
    return {
      approved: false,
      get frames() {
        return late.frames;
      },
      get framesOmitted() {
        return late.framesOmitted;
      },
      get callSite() {
        return late.callSite ?? late.frames[0];
      },
      get location() {
        return late.location;
      },
      get trace() {
        return late.trace;
      },
      degraded: 'call site captured late, when the write ran',
      ...(late.heldBack ? { heldBack: true } : {}),
      ...(late.entry ? { entry: late.entry } : {}),
    };
  }
}
