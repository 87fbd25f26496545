/**
 * Knowing who called Mongoose, at the moment it was called.
 *
 * Writes are asynchronous: by the time a post hook runs, the caller's frames are usually gone
 * (measured: query pre hooks never see the caller; `.then()` callers are invisible everywhere).
 * So the wrappers in hooks/ call the registration's `capture` (`callSiteJudge()`) synchronously, and
 * the verdict travels with the query (or stays in the wrapper's closure) until the write's promise
 * settles.
 *
 * Who decides is the innermost application frame (approval.ts says what each file is). Cost: V8
 * CallSites are read directly (no stack string is formatted or parsed) and only as deep as needed:
 * a shallow look first, the full depth only when nothing decided within it, or for a rogue trace.
 */
import { findSourceMap } from 'node:module';
import { createContext, runInContext, runInThisContext, constants as vmConstants } from 'node:vm';
import { parse as parseStackString } from 'stacktrace-parser';
import type { ActiveTrace, ApprovedCapture, Capture, Frame, RogueCapture } from '../types.js';
import { type Approval, type FileKind, isMongooseFile, NODE_MODULES, toFilePath } from './approval.js';
import { activeTrace } from './trace-context.js';

/** A rogue verdict as the rate-limit check sees it, which may note the location it computed. */
export interface UnreadRogue {
  readonly entry: Function;
  readonly callSite: Frame | undefined;
  location?: string;
}

/**
 * Asked about a rogue write before its stack is read in full: true when the rate limit will hold its
 * event back in any case (core/verdicts.ts), so the full read can be skipped.
 */
export type SpentCheck = (rogue: UnreadRogue) => boolean;

export const APPROVED: ApprovedCapture = Object.freeze({ approved: true });

// The approved caller is usually within a few frames of the write (the auth module calls Mongoose);
// 8 frames cost about what a bare Error.captureStackTrace at its default limit of 10 does.
const SHALLOW_DEPTH = 8;
// Each frame read costs about 1 us, and one wrapper is nearly always called from the same few shapes
// (the auth module calling Mongoose, directly or through a helper: 1 to 3 frames up). So from its third
// call on, the first read of a wrapper goes as deep as its past calls needed to decide: `need`, the most
// frames any call of it needed (undecided: its whole stack, when shorter than SHALLOW_DEPTH, plus one).
// A call needing more than that pays a second read once, and raises it (never above SHALLOW_DEPTH).
// Measured (Node 20): a read of 3 frames ~8 us, of 8 ~13 us; about 5 us of any read is fixed.
const MIN_FIRST_DEPTH = 2;
const LEARN_AFTER = 2;
interface FirstDepth {
  need: number;
  seen: number;
}
const firstDepths = new WeakMap<Function, FirstDepth>();

function firstDepthOf(learned: FirstDepth | undefined): number {
  return learned === undefined || learned.seen < LEARN_AFTER ? SHALLOW_DEPTH : learned.need;
}

/** Index of the site `decideSites` decided at (approved or rogue): set by each call of it. */
let decidedAt = -1;

function learnDepth(entry: Function, learned: FirstDepth | undefined, need: number): void {
  const frames = Math.min(SHALLOW_DEPTH, Math.max(MIN_FIRST_DEPTH, need));
  if (learned === undefined) firstDepths.set(entry, { need: frames, seen: 1 });
  else {
    if (frames > learned.need) learned.need = frames;
    learned.seen++;
  }
}
// A rogue write reads further, once, to find approved frames deep in the stack (and async frames).
const FULL_DEPTH = 200;

type StackFormatter = (error: Error, sites: NodeJS.CallSite[]) => unknown;
type CallSiteReader = (entry: Function, depth: number) => unknown;

/**
 * CallSites are read in a private realm (a `vm` context of our own) whose `Error` only we use:
 * V8 stacks span realms, so its `captureStackTrace` sees the app's frames, while the app's own
 * `Error` is never written to. Whatever the app did to it (froze it, as SES lockdown and
 * `--frozen-intrinsics` do; set `stackTraceLimit = 0`; installed a throwing, read-only or
 * accessor `prepareStackTrace`; replaced `captureStackTrace`) changes nothing here, and nothing has
 * to be restored. Measured: about 0.3 µs a read more than swapping and restoring the app's settings
 * would cost (Node 20 and 24), which writes to the app's `Error`.
 *
 * The realm is created without contextifying its global where Node can (`vm.constants.DONT_CONTEXTIFY`,
 * Node >= 20.18 and 22.8): Node's stack formatting looks up the realm's `Error.prepareStackTrace` on
 * each read, and a contextified global answers every lookup through an interceptor (measured: a
 * 2-frame read 0.7 µs cheaper without it, Node 20 and 24).
 *
 * `judgeAbove` is what a wrapper calls (bound to a `RealmJudge`, so with no frame of its own): V8
 * walks every frame between the read and `entry`, so the read is made right there, one frame above
 * the wrapper, and the verdict is worked out after it (`RealmJudge.judge`).
 */
interface RealmJudge {
  /** How many frames the first read of `entry` takes. */
  depthOf(entry: Function): number;
  /** The verdict from what the read gave (`failed`: it threw `read`). */
  judge(entry: Function, depth: number, read: unknown, failed: boolean): Capture | undefined;
}
interface RealmReaders {
  callSitesAbove: CallSiteReader;
  judgeAbove: (judge: RealmJudge, entry: Function) => Capture | undefined;
}

function privateRealm(): object {
  // Undefined before Node 20.18 and 22.8 (a contextified global then).
  const plainGlobal: typeof vmConstants.DONT_CONTEXTIFY | undefined = vmConstants?.DONT_CONTEXTIFY;
  return createContext(plainGlobal ?? {});
}

const realmReaders: RealmReaders | undefined = (() => {
  try {
    const readers = runInContext(
      `(function () {
        Error.prepareStackTrace = function (_error, sites) { return sites; };
        function callSitesAbove(entry, depth) {
          Error.stackTraceLimit = depth;
          const holder = {};
          Error.captureStackTrace(holder, entry);
          return holder.stack;
        }
        function judgeAbove(judge, entry) {
          let depth = 0;
          let read;
          let failed = false;
          try {
            depth = judge.depthOf(entry);
            Error.stackTraceLimit = depth;
            const holder = {};
            Error.captureStackTrace(holder, entry);
            read = holder.stack;
          } catch (error) {
            read = error;
            failed = true;
          }
          return judge.judge(entry, depth, read, failed);
        }
        return { callSitesAbove, judgeAbove };
      })()`,
      privateRealm(),
      { filename: 'mongoose-tripwire:call-sites' },
    ) as Partial<RealmReaders> | undefined;
    return typeof readers?.callSitesAbove === 'function' && typeof readers.judgeAbove === 'function'
      ? (readers as RealmReaders)
      : undefined;
  } catch {
    return undefined;
  }
})();
const readInRealm: CallSiteReader | undefined = realmReaders?.callSitesAbove;

/**
 * How many times the stack was read in this process (CallSites or the string fallback): what the
 * bench and the tests count to show what a write pays ("one stack read per approved write").
 */
let stackReads = 0;
export function stackReadCount(): number {
  return stackReads;
}

/** How many CallSites those reads returned: a read costs by the frame (test/read-depth.test.ts). */
let framesRead = 0;
export function stackFramesRead(): number {
  return framesRead;
}

/** Why CallSites could not be read, for the warning: the real cause, not a guess. */
let unreadableBecause = readInRealm ? '' : 'no private realm could be created for reading stacks';

/** The CallSites above `entry`, at most `depth`; undefined if none can be read (then the stack string is parsed). */
export function readCallSites(depth: number, entry: Function): NodeJS.CallSite[] | undefined {
  stackReads++;
  if (!readInRealm) return undefined;
  try {
    return sitesOf(readInRealm(entry, depth));
  } catch (error) {
    return unreadable(error);
  }
}

function sitesOf(read: unknown): NodeJS.CallSite[] | undefined {
  if (Array.isArray(read)) {
    framesRead += read.length;
    return read as NodeJS.CallSite[];
  }
  unreadableBecause = 'the private realm returned no CallSites';
  return undefined;
}

function unreadable(error: unknown): undefined {
  unreadableBecause = `reading the stack threw (${error instanceof Error ? error.message : String(error)})`;
  return undefined;
}

/**
 * The realm Node itself runs in. Under jest this module runs in a `vm` context of the test file, and
 * jest installs its source-mapping formatter on the main realm's `Error` only: Node formats an error of
 * any realm with its own realm's `prepareStackTrace`, else the main realm's (node 20-24
 * lib/internal/errors.js, maybeOverridePrepareStackTrace). `runInThisContext` runs there.
 */
const mainRealmError: ErrorConstructor | undefined = (() => {
  try {
    const found: unknown = runInThisContext('Error', { filename: 'mongoose-tripwire:main-realm' });
    return typeof found === 'function' && found !== Error ? (found as ErrorConstructor) : undefined;
  } catch {
    return undefined;
  }
})();

/**
 * The formatter Node would use for the app's errors, read defensively: the app realm's
 * `Error.prepareStackTrace` (vitest, source-map-support install one), else the main realm's (jest).
 */
function appFormatter(): StackFormatter | undefined {
  return formatterOf(Error) ?? (mainRealmError && formatterOf(mainRealmError));
}

function formatterOf(realmError: ErrorConstructor): StackFormatter | undefined {
  try {
    const format: unknown = realmError.prepareStackTrace;
    return typeof format === 'function' ? (format as StackFormatter) : undefined;
  } catch {
    return undefined; // a throwing getter: raw positions, then
  }
}

/**
 * A frame's position as the app's own stack formatter reports it: test runners and source-map-support
 * run transformed code and map positions back in `prepareStackTrace`; raw CallSites would name the
 * transformed line. Only for the frames of a rogue write (rare): one formatter call per frame.
 */
function positionedByApp(frame: Frame, site: NodeJS.CallSite, format: StackFormatter): Frame | undefined {
  const position = appPosition(site, format);
  return position ? { ...frame, ...position } : undefined;
}

type Position = Pick<Frame, 'file' | 'line' | 'column'>;

/**
 * The app's formatter maps a position of a script to the same place every time (a source map is
 * per script), but formatting and parsing one frame costs more than reading the stack (measured
 * about 10 us a frame): positions are remembered per formatter, script (its hash: a module reloaded
 * with other code is another script) and position. `null`: the formatter gave nothing usable.
 */
const appPositions = new WeakMap<StackFormatter, Map<string, Map<string, Map<number, Position | null>>>>();
const MAX_APP_POSITIONS = 10_000;
let appPositionCount = 0;

function appPosition(site: NodeJS.CallSite, format: StackFormatter): Position | undefined {
  let byScript: Map<number, Position | null> | undefined;
  let at = 0;
  try {
    // Script hash, then file name (two copies of one file are two scripts with one hash), then position.
    const hash = typeof site.getScriptHash === 'function' ? site.getScriptHash() : '';
    const fileName = site.getFileName() ?? '';
    at = (site.getLineNumber() ?? 0) * 0x1000000 + (site.getColumnNumber() ?? 0);
    let byFormat = appPositions.get(format);
    if (!byFormat) appPositions.set(format, (byFormat = new Map()));
    let byHash = byFormat.get(hash);
    if (!byHash) byFormat.set(hash, (byHash = new Map()));
    byScript = byHash.get(fileName);
    if (!byScript) byHash.set(fileName, (byScript = new Map()));
    const cached = byScript.get(at);
    if (cached !== undefined) return cached ?? undefined;
  } catch {
    /* unreadable: not remembered */
  }
  const position = formattedPosition(site, format);
  if (byScript) {
    if (++appPositionCount > MAX_APP_POSITIONS) {
      appPositions.delete(format);
      appPositionCount = 0;
    } else {
      byScript.set(at, position ?? null);
    }
  }
  return position;
}

/**
 * The app's formatter's word for one position, believed only when it reads as a V8 stack frame of a
 * real place: an absolute path or a `file://` URL, a line and a column that are positive integers.
 * Anything else (an array, an object, `custom:1`, an empty string, a relative name, a throw) leaves the
 * raw position.
 */
function formattedPosition(site: NodeJS.CallSite, format: StackFormatter): Position | undefined {
  try {
    const text = format(new Error(''), [site]);
    if (typeof text !== 'string') return undefined;
    const parsed = parseStackString(text)[0];
    if (!parsed?.file || !isPlace(parsed.file) || !isPosition(parsed.lineNumber)) return undefined;
    const column = isPosition(parsed.column) ? parsed.column : (site.getColumnNumber() ?? 0);
    return { file: toFilePath(parsed.file), line: parsed.lineNumber, column };
  } catch {
    return undefined;
  }
}

const ABSOLUTE_PLACE = /^(?:\/|file:\/\/|[A-Za-z]:[\\/])/;
const isPlace = (file: string): boolean => ABSOLUTE_PLACE.test(file);
const isPosition = (value: number | null | undefined): value is number => Number.isInteger(value) && (value as number) > 0;

/**
 * Is the code that called `entry` Mongoose itself (its own write through the collection, an internal
 * `$save` of `Model.create`)? Frames of other packages (a test spy wrapping the method) and Node's
 * are looked through. A few frames are read; `undefined` when no stack can be read at all.
 */
export function calledByMongoose(entry: Function): boolean | undefined {
  // Mongoose calls the collection's methods itself, so its frame is the first one: one frame is read
  // (a stack read costs per frame), and the few more only when that one is a package's or Node's.
  const first = readCallSites(1, entry);
  if (first) {
    const verdict = mongooseCalled(first.map((site) => site.getFileName()));
    if (verdict !== undefined || first.length === 0) return verdict ?? false;
    const sites = readCallSites(CALLER_DEPTH, entry);
    if (sites) return mongooseCalled(sites.map((site) => site.getFileName())) ?? false;
  }
  const parsed = parsedStack(entry);
  return parsed ? (mongooseCalled(parsed.slice(0, CALLER_DEPTH).map((frame) => frame.file)) ?? false) : undefined;
}

const CALLER_DEPTH = 6;

/** True when Mongoose called, false when something else did, undefined when the frames ran out before it was known. */
function mongooseCalled(fileNames: ReadonlyArray<string | null | undefined>): boolean | undefined {
  for (const fileName of fileNames) {
    if (!fileName) return false;
    const path = toFilePath(fileName);
    if (isMongooseFile(path)) return true;
    if (!path.startsWith('node:') && !NODE_MODULES.test(path)) return false;
  }
  return undefined;
}

/**
 * The rule of who decides: from the call outward, skip internal and pass-through frames; the first
 * frame left decides. Returns `approved`, or the index of the deciding (rogue) site, or -1 when no
 * site decides (then the caller reads deeper, or the write is undecided).
 */
function decideSites(sites: readonly NodeJS.CallSite[], from: number, approval: Approval): 'approved' | number {
  for (let i = from; i < sites.length; i++) {
    const site = sites[i]!;
    if (site.isPromiseAll()) continue;
    const fileName = site.getFileName();
    let kind: FileKind | 'byPosition';
    if (fileName) kind = approval.kindOf(fileName);
    else if (site.isEval())
      kind = 'application'; // eval / new Function code is the app's
    else continue; // a builtin (Array#map, Promise.all): it calls back, it does not decide
    if (kind === 'byPosition') kind = approval.kindAt(fileName!, site.getLineNumber() ?? 0, site.getColumnNumber() ?? 0);
    if (kind === 'internal' || kind === 'passThrough') continue;
    if (kind === 'application' && approval.needsFrames) {
      const frame = siteToFrame(site);
      if (frame) kind = approval.frameKind(sourceMapped(frame, approval));
      if (kind === 'passThrough') continue;
    }
    decidedAt = i;
    return kind === 'approved' ? 'approved' : i;
  }
  decidedAt = -1;
  return -1;
}

function siteToFrame(site: NodeJS.CallSite): Frame | undefined {
  const fileName = site.getFileName();
  if (site.isPromiseAll()) return undefined;
  const fn = site.getFunctionName() ?? undefined;
  const isAsync = site.isAsync();
  if (!fileName) {
    if (site.isNative()) return undefined;
    return {
      file: '<anonymous>',
      line: site.getLineNumber() ?? 0,
      column: site.getColumnNumber() ?? 0,
      ...(fn ? { function: fn } : {}),
      ...(isAsync ? { async: true } : {}),
    };
  }
  const frame: Frame = {
    file: toFilePath(fileName),
    line: site.getLineNumber() ?? 0,
    column: site.getColumnNumber() ?? 0,
  };
  if (fn) frame.function = typeName(site, fn);
  if (isAsync) frame.async = true;
  return frame;
}

function typeName(site: NodeJS.CallSite, fn: string): string {
  if (site.isToplevel() || site.isConstructor()) return fn;
  let type: string | null = null;
  try {
    type = site.getTypeName();
  } catch {
    /* some receivers throw on inspection */
  }
  return type && type !== 'Object' && !fn.startsWith(`${type}.`) ? `${type}.${fn}` : fn;
}

/** Maps a generated position back to the original source when the app runs with source maps. */
// Marks a frame whose position the app's own formatter already mapped: Node's source maps must not map it again.
// (A WeakSet, not a marker property: a symbol-keyed property, and taking it off again, cost more than the rest of a frame.)
const MAPPED = new WeakSet<Frame>();

function sourceMapped(frame: Frame, approval: Approval): Frame {
  if (MAPPED.has(frame)) return frame;
  if (!process.sourceMapsEnabled || frame.file === '<anonymous>') return frame;
  try {
    const map = findSourceMap(frame.file);
    const entry = map?.findEntry(frame.line - 1, frame.column - 1) as
      | { originalSource?: string; originalLine?: number; originalColumn?: number }
      | undefined;
    if (!entry?.originalSource || entry.originalLine === undefined || entry.originalColumn === undefined) return frame;
    return { ...frame, file: approval.sourcePath(entry.originalSource), line: entry.originalLine + 1, column: entry.originalColumn + 1 };
  } catch {
    return frame;
  }
}

function applicationFrames(
  frames: Iterable<Frame | undefined>,
  approval: Approval,
  maxFrames: number,
): { frames: Frame[]; omitted: number } {
  const kept: Frame[] = [];
  let omitted = 0;
  for (const frame of frames) {
    if (!frame) continue;
    // Mapped first: in a bundle, Mongoose's and this plugin's frames are known by their sources.
    const mapped = sourceMapped(frame, approval);
    if (approval.isInternalFile(mapped.file)) continue;
    if (kept.length < maxFrames) kept.push(mapped);
    else omitted++;
  }
  return { frames: kept, omitted };
}

/** The stack above `entry`, parsed from its string form; undefined when not even that can be read. */
function parsedStack(entry: Function): ReturnType<typeof parseStackString> | undefined {
  try {
    const holder: { stack?: unknown } = {};
    try {
      Error.captureStackTrace(holder, entry);
    } catch {
      /* replaced by something that throws: the constructor still records a stack */
    }
    // A no-op captureStackTrace leaves nothing: `new Error()` records natively (our own frames are internal).
    const stack = typeof holder.stack === 'string' ? holder.stack : new Error('').stack;
    return typeof stack === 'string' ? parseStackString(stack) : undefined;
  } catch {
    return undefined;
  }
}

/** When `Error` is frozen we cannot ask for CallSites: parse whatever stack string the app's settings give. */
function captureFromStackString(entry: Function, approval: Approval, maxFrames: number): Capture {
  const parsed = (parsedStack(entry) ?? []).map((f): Frame | undefined => {
    if (!f.file) return undefined;
    const isAsync = f.methodName.startsWith('async ');
    const fn = isAsync ? f.methodName.slice(6) : f.methodName;
    return {
      file: toFilePath(f.file),
      line: f.lineNumber ?? 0,
      column: f.column ?? 0,
      ...(fn && fn !== '<unknown>' ? { function: fn } : {}),
      ...(isAsync ? { async: true } : {}),
    };
  });
  let deciding: Frame | undefined;
  for (const frame of parsed) {
    if (!frame) continue;
    let kind = frame.file === '<anonymous>' ? 'application' : approval.kindOf(frame.file);
    if (kind === 'byPosition') kind = approval.kindAt(frame.file, frame.line, frame.column);
    if (kind === 'internal' || kind === 'passThrough') continue;
    if (kind === 'application' && approval.needsFrames) kind = approval.frameKind(frame);
    if (kind === 'passThrough') continue;
    if (kind === 'approved') return APPROVED;
    deciding = frame;
    break;
  }
  const { frames, omitted } = applicationFrames(parsed, approval, maxFrames);
  return {
    approved: false,
    frames,
    framesOmitted: omitted,
    callSite: deciding && sourceMapped(deciding, approval),
    undecided: deciding === undefined,
    trace: activeTrace(),
    degraded:
      frames.length === 0
        ? `${unreadableBecause || 'no structured stack'} and the stack string is empty (Error.stackTraceLimit = 0?): no call site`
        : `${unreadableBecause || 'no structured stack'}: call site read from the stack string`,
  };
}

/**
 * The function a wrapper calls as `capture(wrapper)`: it classifies the write being called right now.
 * `entry` is the wrapper the app called (directly or through Mongoose), so the plugin's own frames
 * never appear and never count as approved. The stack is read in the private realm right above the
 * wrapper, then judged. With `unlessMongoose`, undefined when Mongoose itself made the call (no second
 * stack read for it); with `spent`, a rogue write whose event the rate limit holds back in any case is
 * not read in full. Whatever goes wrong is `lost(error)`'s verdict, never a throw.
 */
export function callSiteJudge(
  approval: Approval,
  maxFrames: number,
  unlessMongoose: false,
  spent: SpentCheck | undefined,
  lost: (error: unknown) => Capture,
): (entry: Function) => Capture;
export function callSiteJudge(
  approval: Approval,
  maxFrames: number,
  unlessMongoose: boolean,
  spent: SpentCheck | undefined,
  lost: (error: unknown) => Capture,
): (entry: Function) => Capture | undefined;
export function callSiteJudge(
  approval: Approval,
  maxFrames: number,
  unlessMongoose: boolean,
  spent: SpentCheck | undefined,
  lost: (error: unknown) => Capture,
): (entry: Function) => Capture | undefined {
  // `read` is what the realm's read returned, or threw (`failed`); undefined with no realm at all (the stack string is parsed).
  const verdict = (entry: Function, learned: FirstDepth | undefined, depth: number, read: unknown, failed: boolean) => {
    try {
      const shallow = !realmReaders ? undefined : failed ? unreadable(read) : sitesOf(read);
      return judgeRead(entry, learned, depth, shallow, approval, maxFrames, unlessMongoose, spent);
    } catch (error) {
      return lost(error);
    }
  };
  if (!realmReaders) {
    return (entry) => {
      const learned = firstDepths.get(entry);
      return verdict(entry, learned, firstDepthOf(learned), undefined, false);
    };
  }
  // What `depthOf` looked up, for `judge` right after the read (no code of ours runs in between).
  let reading: Function | undefined;
  let learned: FirstDepth | undefined;
  const judge: RealmJudge = {
    depthOf: (entry) => {
      reading = entry;
      learned = firstDepths.get(entry);
      return firstDepthOf(learned);
    },
    judge: (entry, depth, read, failed) => verdict(entry, reading === entry ? learned : firstDepths.get(entry), depth, read, failed),
  };
  return realmReaders.judgeAbove.bind(undefined, judge);
}

/** The verdict from the first read of `depth` frames above `entry` (`shallow` undefined: no CallSites could be read). */
function judgeRead(
  entry: Function,
  learned: FirstDepth | undefined,
  depth: number,
  shallow: NodeJS.CallSite[] | undefined,
  approval: Approval,
  maxFrames: number,
  unlessMongoose: boolean,
  spent: SpentCheck | undefined,
): Capture | undefined {
  stackReads++;
  if (shallow === undefined) {
    if (unlessMongoose && calledByMongoose(entry)) return undefined;
    return captureFromStackString(entry, approval, maxFrames);
  }
  if (unlessMongoose && mongooseCalled(shallow.map((site) => site.getFileName())) === true) return undefined;
  let sites = shallow;
  let decision = decideSites(shallow, 0, approval);
  if (decision === -1 && shallow.length >= depth) {
    // Nothing decided within the shallow look: read the whole stack once, and go on where it stopped.
    sites = readCallSites(FULL_DEPTH, entry) ?? shallow;
    decision = decideSites(sites, shallow.length, approval);
  }
  learnDepth(entry, learned, decision === -1 ? sites.length + 1 : decidedAt + 1);
  if (decision === 'approved') return APPROVED;
  const rogue = new LazyRogueCapture(sites, decision, approval, maxFrames, entry);
  // Rogue. The report's trace wants the whole stack: read it once more when only the shallow look was
  // read (the only extra cost a rogue write has over an approved one), unless no report will be built.
  if (spent?.(rogue)) return rogue.heldBackAtCall();
  // A stack deeper than FULL_DEPTH is cut by V8: a deciding frame above that depth is not seen (docs/attribution.md, limits).
  const whole = sites !== shallow || shallow.length < depth ? rogue : rogue.withSites(readCallSites(FULL_DEPTH, entry) ?? shallow);
  // The caller's span, now: by the time the report is built the active span is no longer the caller's.
  whole.trace = activeTrace();
  return whole;
}

/**
 * A rogue verdict whose frames are built only when a report is: most rogue writes in a storm are
 * rate limited, and for those only the call site (the fingerprint) is needed. CallSites stay valid.
 */
class LazyRogueCapture implements RogueCapture {
  readonly approved = false as const;
  private built: { frames: Frame[]; omitted: number } | undefined;
  readonly undecided: boolean;
  heldBack?: true;
  location?: string;
  trace?: ActiveTrace | undefined;
  private readonly format = appFormatter();
  /** The deciding frame, built once (undefined: not yet; null: none). */
  private deciding_: Frame | null | undefined;
  constructor(
    private readonly sites: readonly NodeJS.CallSite[],
    private readonly deciding: number,
    private readonly approval: Approval,
    private readonly maxFrames: number,
    readonly entry: Function,
  ) {
    this.undecided = deciding < 0;
  }

  /** The same verdict over the whole stack, read after the shallow look decided (same deciding index, same frame). */
  withSites(sites: readonly NodeJS.CallSite[]): LazyRogueCapture {
    const whole = new LazyRogueCapture(sites, this.deciding, this.approval, this.maxFrames, this.entry);
    if (this.deciding >= 0) {
      whole.deciding_ = this.deciding_;
      if (this.location !== undefined) whole.location = this.location;
    }
    return whole;
  }

  heldBackAtCall(): this {
    this.heldBack = true;
    return this;
  }

  private build(): { frames: Frame[]; omitted: number } {
    this.built ??= applicationFrames(
      this.sites.map((site) => this.frameOf(site)),
      this.approval,
      this.maxFrames,
    );
    return this.built;
  }

  /** A site as shown: positions as the app's own formatter gives them when it has one, else source-mapped by Node's. */
  private frameOf(site: NodeJS.CallSite): Frame | undefined {
    const frame = siteToFrame(site);
    if (!frame || !this.format || frame.file === '<anonymous>' || this.approval.isInternalFile(frame.file)) return frame;
    const positioned = positionedByApp(frame, site, this.format);
    if (!positioned) return frame;
    MAPPED.add(positioned);
    return positioned;
  }
  get frames(): readonly Frame[] {
    return this.build().frames;
  }
  get framesOmitted(): number {
    return this.build().omitted;
  }
  /** The deciding frame; with none, the innermost frame shown (a package's, say), so a report still points somewhere. */
  get callSite(): Frame | undefined {
    if (this.deciding_ === undefined) this.deciding_ = this.findCallSite() ?? null;
    return this.deciding_ ?? undefined;
  }
  private findCallSite(): Frame | undefined {
    const site = this.sites[this.deciding];
    const frame = site && this.frameOf(site);
    if (frame) return sourceMapped(frame, this.approval);
    for (const other of this.sites) {
      const shown = this.frameOf(other);
      if (shown && !this.approval.isInternalFile(shown.file)) return sourceMapped(shown, this.approval);
    }
    return undefined;
  }
}
