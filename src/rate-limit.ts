/**
 * Event rate limits, per call site and overall, so a rogue path in a hot loop can never become an
 * alert storm that only a deploy could stop. Counters are never limited: only events are.
 *
 * Token buckets (capacity `events`, refilled at `events / intervalMs`): a burst up to the cap, then
 * a steady trickle. Call sites live in a bounded least-recently-seen map, so memory stays flat
 * however many distinct call sites appear.
 */
import type { RateLimitOptions, RateWindow } from './options.js';

export interface Admission {
  /** Send the event now. */
  send: boolean;
  /** Events held back for this call site since the last one sent (set when `send` is true). */
  suppressed: number;
}

class Bucket {
  private tokens: number;
  private updatedAt: number;
  constructor(private readonly window: RateWindow, now: number) {
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
    let site = this.sites.get(key);
    if (site) {
      this.sites.delete(key); // re-inserted below: Map order is recency order
    } else {
      site = { bucket: new Bucket(this.limits.perCallSite, now), suppressed: 0 };
      if (this.sites.size >= this.limits.maxCallSites) {
        const oldest = this.sites.keys().next();
        if (!oldest.done) this.sites.delete(oldest.value);
      }
    }
    this.sites.set(key, site);
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

  /** Call sites currently remembered (bounded by `maxCallSites`). */
  get trackedCallSites(): number {
    return this.sites.size;
  }
}
