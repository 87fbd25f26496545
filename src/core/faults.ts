/**
 * Faults inside the plugin are made visible, once each, and never thrown into the app's write.
 */
import { TripwireFault } from '../errors.js';
import type { FaultReason, FaultReporter } from '../types.js';
import { clip } from '../util/text.js';

export type FaultListener = (fault: TripwireFault) => void;

/**
 * Boot notices: what checking the configuration finds, at registration or in `verify()`. Each is a
 * warning once (and, where it matters, a `verify()` problem), never a `tripwire.errors` count: it is
 * a property of the deployment, so counting it would add to `tripwire.errors` at every boot although
 * nothing went wrong during the run, and the checklist's "tripwire.errors is flat" would never hold.
 * `tripwire.errors` counts faults that happen while writes are watched.
 */
export const BOOT_NOTICES: ReadonlySet<FaultReason> = new Set<FaultReason>([
  'statsd_default_target',
  'approved_matches_nothing',
  'approved_too_broad',
  'verify',
  'baseline_missing',
  'baseline_slow',
  'baseline_stale',
]);

/** Distinct problems surfaced at most once each, up to this many: a dead agent must not become a log flood. */
const MAX_DISTINCT_WARNINGS = 1_000;

/**
 * Routes faults to the user's `onError`, or by default to `process.emitWarning`.
 */
export function createFaultReporter(onError: ((error: Error) => void) | undefined, onFault?: FaultListener): FaultReporter {
  const warned = new Set<string>();
  return function reportFault(reason: FaultReason, message: string, cause?: unknown): void {
    // Bounded whatever the cause says: lists are cut where they are made (util/list.ts), this is the net under them.
    const fault = new TripwireFault(reason, clip(cause instanceof Error ? `${message}: ${cause.message}` : message), { cause });
    if (!BOOT_NOTICES.has(reason)) {
      try {
        onFault?.(fault);
      } catch {
        /* counting a fault must not raise another */
      }
    }
    // Counted every time (tripwire.errors), surfaced once per distinct problem.
    const key = `${reason}\0${fault.message}`;
    if (warned.has(key) || warned.size >= MAX_DISTINCT_WARNINGS) return;
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
