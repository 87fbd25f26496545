/**
 * The package's entry. A process can load two copies of it: the ES module and the CommonJS copy
 * (dist/cjs, for jest's CommonJS mode and other loaders with a `require` of their own), or two installs
 * of one version. Two copies must be one plugin: one wrapper per Mongoose method, one set of
 * registrations, counters and exit handlers. The first copy loaded offers its API under a process-wide
 * symbol, keyed by version; any other copy of that version exports that API instead of its own. The
 * same file evaluated again (a runner's fresh module registry) is a new instance of the same copy and
 * keeps its own, as the runner intends.
 */
import * as own from './api.js';
import type {
  TripwireConfigError as ConfigErrorClass,
  TripwireFault as FaultClass,
  RogueWriteError as RogueWriteErrorClass,
} from './errors.js';
import { VERSION } from './version.js';

export type {
  ApprovedPattern,
  BypassReport,
  FaultReason,
  Frame,
  ModelCheck,
  RateLimitOptions,
  RateWindow,
  RegistrationCheck,
  TraceContext,
  TripwireOptions,
  VerifyResult,
  WriteKind,
  WriteOperation,
  WriteOutcome,
} from './api.js';

interface Offered {
  readonly file: string;
  readonly api: typeof own;
}

const SHARED = Symbol.for(`mongoose-tripwire@${VERSION}`);

function sharedApi(file: string): typeof own {
  const registry = globalThis as { [SHARED]?: Offered };
  const offered = registry[SHARED];
  if (offered && offered.file !== file) return offered.api;
  try {
    // Not enumerable: global-leak checks of test runners list enumerable globals.
    Object.defineProperty(globalThis, SHARED, { value: { file, api: own } satisfies Offered, configurable: true, writable: true });
  } catch {
    /* a frozen global: this copy answers for itself */
  }
  return own;
}

const api = sharedApi(import.meta.url);

export const { close, flush, tripwire, verify, RogueWriteError, TripwireConfigError, TripwireFault } = api;
// A name, the same in every copy.
export { ROGUE_WRITE_CHANNEL } from './report/rogue-write-channel.js';
export type RogueWriteError = RogueWriteErrorClass;
export type TripwireConfigError = ConfigErrorClass;
export type TripwireFault = FaultClass;
