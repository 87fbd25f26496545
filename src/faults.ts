/**
 * Faults inside the plugin are made visible, once each, and never thrown into the app's write.
 */

/** A plugin-side fault, with a stable reason (used as the `reason` tag of `tripwire.errors`). */
export class TripwireFault extends Error {
  override name = 'TripwireFault';
  constructor(readonly reason: string, message: string, options?: { cause?: unknown }) {
    super(`mongoose-tripwire: ${message}`, options);
  }
}

export type FaultListener = (fault: TripwireFault) => void;

/**
 * Boot notices: what checking the configuration finds, at registration or in `verify()`. Each is a
 * warning once (and, where it matters, a `verify()` problem), never a `tripwire.errors` count: it is
 * a property of the deployment, so counting it would add to `tripwire.errors` at every boot although
 * nothing went wrong during the run, and the checklist's "tripwire.errors is flat" would never hold.
 * `tripwire.errors` counts faults that happen while writes are watched.
 */
export const BOOT_NOTICES: ReadonlySet<string> = new Set(['statsd_default_target', 'approved_matches_nothing', 'verify', 'baseline_stale']);

/**
 * Routes faults to the user's `onError`, or by default to `process.emitWarning`.
 */
export function createFaultReporter(onError: ((error: Error) => void) | undefined, onFault?: FaultListener) {
  const warned = new Set<string>();
  return function reportFault(reason: string, message: string, cause?: unknown): void {
    const fault = new TripwireFault(reason, cause instanceof Error ? `${message}: ${cause.message}` : message, { cause });
    if (!BOOT_NOTICES.has(reason)) {
      try {
        onFault?.(fault);
      } catch { /* counting a fault must not raise another */ }
    }
    // Counted every time (tripwire.errors), surfaced once per distinct problem: a dead agent must be
    // noticed, but must not become a log flood.
    const key = `${reason}\0${fault.message}`;
    if (warned.has(key) || warned.size >= 1_000) return;
    warned.add(key);
    if (!onError) {
      process.emitWarning(fault.message, { type: 'TripwireWarning', code: `TRIPWIRE_${reason.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}` });
      return;
    }
    try {
      onError(fault);
    } catch (error) {
      process.emitWarning(`mongoose-tripwire: the onError option threw: ${String(error)}`, 'TripwireWarning');
    }
  };
}

export type FaultReporter = ReturnType<typeof createFaultReporter>;
