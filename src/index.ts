export { tripwire } from './plugin.js';
export { flush, close } from './core/lifecycle.js';
export { RogueWriteError, TripwireConfigError, TripwireFault } from './errors.js';
export type {
  ApprovedPattern, BypassReport, FaultReason, Frame, RateLimitOptions, RateWindow, TripwireOptions, WriteKind, WriteOperation, WriteOutcome,
} from './types.js';
export { verify } from './verify.js';
export type { VerifyResult, RegistrationCheck, ModelCheck } from './verify.js';
