/**
 * The rate limiter's two ways of holding an event back: `admit` when the write completed, and
 * `spent` + `holdBack` for a write whose call site was already spent when it was called.
 */
import { describe, expect, it } from 'vitest';
import { EventRateLimiter } from '../src/report/rate-limit.js';

const limits = (perCallSite: number, global: number, maxCallSites = 10) => ({
  perCallSite: { events: perCallSite, intervalMs: 1000 },
  global: { events: global, intervalMs: 1000 },
  maxCallSites,
});

describe('EventRateLimiter', () => {
  it('says a call site is spent only once it is known and out of events (or the global limit is)', () => {
    let now = 0;
    const limiter = new EventRateLimiter(limits(1, 2), () => now);
    expect(limiter.spent('a')).toBe(false); // never seen: a full bucket
    expect(limiter.admit('a')).toEqual({ send: true, suppressed: 0 });
    expect(limiter.spent('a')).toBe(true);
    expect(limiter.spent('a')).toBe(true); // asking spends and counts nothing
    expect(limiter.admit('b')).toEqual({ send: true, suppressed: 0 });
    expect(limiter.admit('c')).toEqual({ send: false, suppressed: 1 }); // global spent
    expect(limiter.spent('c')).toBe(true);
    now = 1000;
    expect(limiter.spent('a')).toBe(false);
  });

  it('holds back without spending: a token that came back stays for the next write, which reports the count', () => {
    let now = 0;
    const limiter = new EventRateLimiter(limits(1, 100), () => now);
    limiter.admit('a');
    expect(limiter.holdBack('a')).toEqual({ send: false, suppressed: 1 });
    now = 1000; // the token is back before the held-back write's twin completes
    expect(limiter.holdBack('a')).toEqual({ send: false, suppressed: 2 });
    expect(limiter.spent('a')).toBe(false);
    expect(limiter.admit('a')).toEqual({ send: true, suppressed: 2 });
    expect(limiter.admit('a')).toEqual({ send: false, suppressed: 1 });
  });

  it('never says spent without limits, and keeps holdBack within maxCallSites', () => {
    const unlimited = new EventRateLimiter(false);
    unlimited.admit('a');
    expect(unlimited.spent('a')).toBe(false);
    const limiter = new EventRateLimiter(limits(1, 100, 2), () => 0);
    for (const key of ['a', 'b', 'c', 'd']) limiter.holdBack(key);
    expect(limiter.trackedCallSites).toBe(2);
  });
});
