/** Everything the package exports, as this copy of it implements it (index.ts decides which copy answers). */
export { close, flush } from './core/lifecycle.js';
export { RogueWriteError, TripwireConfigError, TripwireFault } from './errors.js';
export { tripwire } from './plugin.js';
export { ROGUE_WRITE_CHANNEL } from './report/rogue-write-channel.js';
export type {
  ApprovedPattern,
  BypassReport,
  FaultReason,
  Frame,
  RateLimitOptions,
  RateWindow,
  TraceContext,
  TripwireOptions,
  WriteKind,
  WriteOperation,
  WriteOutcome,
} from './types.js';
export type { ModelCheck, RegistrationCheck, VerifyResult } from './verify.js';
export { verify } from './verify.js';
