/**
 * Every error the plugin makes public, in one place. Each message starts with `mongoose-tripwire:`
 * (or names the file it is about) so that it can be told apart in an app's logs.
 */
import { type BypassReport, type FaultReason, type Frame, UNKNOWN_FRAME } from './types.js';

/** Thrown at registration when the options are wrong. */
export class TripwireConfigError extends Error {
  override name = 'TripwireConfigError';
}

/** The error a rogue write rejects with in `mode: 'throw'`. */
export class RogueWriteError extends Error {
  override name = 'RogueWriteError';
  /** `advice`: what to do about it (with a baseline: how to accept it), appended to the message. */
  constructor(
    readonly report: BypassReport,
    advice?: string,
  ) {
    super(
      `mongoose-tripwire: rogue write refused: ${report.model}.${report.operation} from ${report.location} is not approved ` +
        `code${advice ? `. ${advice}` : ''}`,
    );
    // The stack a test runner shows and links: the user's code from the deciding frame outward, not
    // this library's frames (nor Mongoose's microtask, where a refused query's exec runs).
    const stack = userStack(report);
    if (stack.length > 0) this.stack = `${this.name}: ${this.message}\n${stack.map(stackLine).join('\n')}`;
  }
}

function sameFrame(a: Frame, b: Frame): boolean {
  return a.file === b.file && a.line === b.line && a.column === b.column;
}

/** The deciding frame first, then the frames outward from it (pass-through frames above it left out). */
function userStack(report: BypassReport): Frame[] {
  if (report.callSite.file === UNKNOWN_FRAME.file) return report.stack;
  const at = report.stack.findIndex((frame) => sameFrame(frame, report.callSite));
  return at >= 0 ? report.stack.slice(at) : [report.callSite, ...report.stack];
}

/** One V8-style stack line (`    at fn (file:line:column)`), which runners and parsers read. */
function stackLine(frame: Frame): string {
  const where = `${frame.file}:${frame.line}:${frame.column}`;
  const fn = frame.function ? `${frame.async ? 'async ' : ''}${frame.function}` : frame.async ? 'async <anonymous>' : '';
  return fn ? `    at ${fn} (${where})` : `    at ${where}`;
}

/** A plugin-side fault, with a stable reason (used as the `reason` tag of `tripwire.errors`). */
export class TripwireFault extends Error {
  override name = 'TripwireFault';
  constructor(
    readonly reason: FaultReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`mongoose-tripwire: ${message}`, options);
  }
}

/** A bad baseline or record file. Its message names the file and the problem. */
export class BaselineError extends Error {
  override name = 'BaselineError';
}

/** A DogStatsD datagram that breaks the format (thrown by the strict parser and by the formatters). */
export class DatagramError extends Error {
  override name = 'DatagramError';
}
