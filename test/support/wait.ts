/**
 * Waiting in tests: for a condition, with a bound, never for a guessed delay. A loaded machine makes
 * a report, a datagram or a child's output arrive late, not never: `waitFor` polls until it is there
 * (fast when the machine is idle) and fails with what it was waiting for when the bound is reached.
 * `settle` is only for the other question, "did nothing (more) arrive?": a short pause before an
 * assertion that something is absent or exact, after the positive wait.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface WaitOptions {
  /** Give up after this long (default 15 s: generous, since a passing wait returns as soon as it can). */
  timeoutMs?: number;
  /** Poll every this many ms (default 5). */
  intervalMs?: number;
}

/** Resolves once `check()` is true (it may be async); rejects with `timed out after N ms waiting for <what>`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  { timeoutMs = 15_000, intervalMs = 5 }: WaitOptions = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** A short pause before asserting that nothing (more) arrived. Not a way to wait for something to arrive: use `waitFor`. */
export const settle = (ms = 20): Promise<void> => sleep(ms).then(() => undefined);
