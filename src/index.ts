export { tripwire, flush, close } from './plugin.js';
export { RogueWriteError } from './report.js';
export type { BypassReport, WriteKind, WriteOperation, WriteOutcome } from './report.js';
export { TripwireConfigError } from './options.js';
export type { TripwireOptions, ApprovedPattern, RateLimitOptions, RateWindow } from './options.js';
export { TripwireFault } from './faults.js';
export type { Frame } from './capture.js';
export { verify } from './verify.js';
export type { VerifyResult, RegistrationCheck, ModelCheck } from './verify.js';
