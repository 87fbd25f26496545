/**
 * Event rate limits, per call site and overall, so a rogue path in a hot loop can never become an
 * alert storm that only a deploy could stop. Counters are never limited: only events are.
 *
 * Token buckets (capacity `events`, refilled at `events / intervalMs`): a burst up to the cap, then
 * a steady trickle. Call sites live in a bounded least-recently-seen map, so memory stays flat
 * however many distinct call sites appear.
 */
import type { RateLimitOptions, RateWindow } from '../types.js';

export interface Admission {
  /** Send the event now. */
  send: boolean;
  /** Events held back for this call site since the last one sent (set when `send` is true). */
  suppressed: number;
}

class Bucket {
  private tokens: number;
  private updatedAt: number;
  constructor(
    private readonly window: RateWindow,
    now: number,
  ) {
    this.tokens = window.events;
    this.updatedAt = now;
  }
  available(now: number): boolean {
    const elapsed = now - this.updatedAt;
    if (elapsed > 0) {
      this.tokens = Math.min(this.window.events, this.tokens + (elapsed * this.window.events) / this.window.intervalMs);
      this.updatedAt = now;
    }
    return this.tokens >= 1;
  }
  take(): void {
    this.tokens -= 1;
  }
}

interface CallSiteState {
  bucket: Bucket;
  suppressed: number;
}

const ALWAYS: Admission = Object.freeze({ send: true, suppressed: 0 });

export class EventRateLimiter {
  private readonly sites = new Map<string, CallSiteState>();
  private readonly global: Bucket | undefined;

  constructor(
    private readonly limits: Required<RateLimitOptions> | false,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.global = limits ? new Bucket(limits.global, now()) : undefined;
  }

  /** Decides for one event of call site `key`. */
  admit(key: string): Admission {
    if (!this.limits || !this.global) return ALWAYS;
    const now = this.now();
    const site = this.touch(key, this.limits, now);
    // Both limits must allow; neither is spent on an event the other holds back.
    if (site.bucket.available(now) && this.global.available(now)) {
      site.bucket.take();
      this.global.take();
      const suppressed = site.suppressed;
      site.suppressed = 0;
      return { send: true, suppressed };
    }
    site.suppressed += 1;
    return { send: false, suppressed: site.suppressed };
  }

  /**
   * Would an event of call site `key` be held back right now? Only for a call site already seen
   * (a new one has a full bucket). Nothing is spent or counted, and the site's recency is unchanged.
   */
  spent(key: string): boolean {
    if (!this.limits || !this.global) return false;
    const site = this.sites.get(key);
    if (!site) return false;
    const now = this.now();
    return !(site.bucket.available(now) && this.global.available(now));
  }

  /**
   * Holds back one event of call site `key` without asking the buckets: a write whose call site was
   * `spent()` when it was called, so no trace was read for it. Counted as `admit` counts a refusal;
   * a token that came back meanwhile stays for the call site's next write.
   */
  holdBack(key: string): Admission {
    if (!this.limits) return { send: false, suppressed: 0 };
    const site = this.touch(key, this.limits, this.now());
    site.suppressed += 1;
    return { send: false, suppressed: site.suppressed };
  }

  /** The state of call site `key`, made most recent (created, evicting the least recent, if new). */
  private touch(key: string, limits: Required<RateLimitOptions>, now: number): CallSiteState {
    let site = this.sites.get(key);
    if (site) {
      this.sites.delete(key); // re-inserted below: Map order is recency order
    } else {
      site = { bucket: new Bucket(limits.perCallSite, now), suppressed: 0 };
      if (this.sites.size >= limits.maxCallSites) {
        const oldest = this.sites.keys().next();
        if (!oldest.done) this.sites.delete(oldest.value);
      }
    }
    this.sites.set(key, site);
    return site;
  }

  /** Call sites currently remembered (bounded by `maxCallSites`). */
  get trackedCallSites(): number {
    return this.sites.size;
  }
}
