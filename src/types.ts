/**
 * The vocabulary every part of the plugin speaks: frames and verdicts (attribution), writes and
 * reports (hooks and reporting), options, and the narrow interface the hooks call. Types only,
 * plus two frozen constants; it imports nothing of ours, so any module may depend on it.
 */
import type { ClientOptions, StatsD } from 'hot-shots';

/** One stack frame, as shown in reports. */
export interface Frame {
  /** Absolute file path (`file://` URLs converted), or `<anonymous>` for eval / `new Function` code. */
  file: string;
  line: number;
  column: number;
  function?: string;
  /** True for `at async fn` frames: an awaiting caller, not a synchronous one. */
  async?: boolean;
}

/** The verdict on one write call. Approved writes carry nothing, so they allocate nothing. */
export type Capture = ApprovedCapture | RogueCapture;

export interface ApprovedCapture {
  readonly approved: true;
}

export interface RogueCapture {
  readonly approved: false;
  /** Application frames, innermost first, pass-through frames included. */
  readonly frames: readonly Frame[];
  /** Frames beyond `maxFrames` that were not kept. */
  readonly framesOmitted: number;
  /** The deciding frame: the innermost application frame (neither internal nor pass-through). */
  readonly callSite?: Frame | undefined;
  /** True when no application frame was on the stack at all (the call came from Mongoose or a package). */
  readonly undecided?: boolean;
  /** Why the stack could not be read in full, when it could not. */
  readonly degraded?: string;
  /**
   * True when the rate limit had already spent this call site's events when the write was called:
   * its event is held back whatever happens, so the stack was not read in full for a trace no event
   * will carry (`frames` then hold only the first frames read). Never set when a report must be built
   * for every rogue write (`onBypass`, throw mode).
   */
  readonly heldBack?: boolean;
  /**
   * The wrapper that captured the call: with the call site, what tells the call site's rate-limit key before the write's model and
   * operation are known.
   */
  readonly entry?: Function;
  /** `callSite` as a location relative to root, when the rate-limit check already computed it. */
  readonly location?: string;
  /** The trace active when the write was called (dd-trace or OpenTelemetry), read only for a rogue write a report may be built for. */
  readonly trace?: ActiveTrace | undefined;
}

/**
 * The active span of a rogue write's caller, as read when the write was called: its ids, and where
 * the route and resource of the request are read from when the report is built (they are often
 * named only once the route resolved, after the write was called).
 */
export interface ActiveTrace {
  readonly traceId: string;
  readonly spanId: string;
  readonly source: TraceContext['source'];
  /** The route and resource known by now; called when the report is built, never throws. */
  readonly request: () => Pick<TraceContext, 'resource' | 'route'>;
}

/** The trace a rogue write was made in (`BypassReport.trace`). */
export interface TraceContext {
  /**
   * dd-trace: the trace id as Datadog shows it and searches it (`trace_id:`), in decimal: the low 64
   * bits of a 128-bit id, which Datadog matches to the whole trace. OpenTelemetry: the 32 hex digits.
   */
  traceId: string;
  /** The caller's active span: decimal for dd-trace, 16 hex digits for OpenTelemetry. */
  spanId: string;
  /** Which tracer the process runs. */
  source: 'datadog' | 'opentelemetry';
  /** The request's resource, e.g. `GET /tokens/:id` (dd-trace: the local root span's `resource.name`), when named. */
  resource?: string;
  /** The request's route, e.g. `/tokens/:id` (`http.route`), when the framework named it. */
  route?: string;
}

/** What a write did; `read` only with `operations: [..., 'read']`. */
export type WriteKind = 'create' | 'update' | 'delete' | 'read';

/** Methods of `Model.collection` (the driver collection), which skip Mongoose middleware. */
export type CollectionMethod =
  | 'insertOne'
  | 'insertMany'
  | 'updateOne'
  | 'updateMany'
  | 'replaceOne'
  | 'deleteOne'
  | 'deleteMany'
  | 'findOneAndUpdate'
  | 'findOneAndReplace'
  | 'findOneAndDelete'
  | 'bulkWrite'
  | 'find'
  | 'findOne'
  | 'countDocuments'
  | 'estimatedDocumentCount'
  | 'distinct'
  | 'aggregate';

export type WriteOperation =
  | 'save'
  | 'create'
  | 'insertOne'
  | 'insertMany'
  | 'bulkWrite'
  | 'bulkSave'
  | 'updateOne'
  | 'updateMany'
  | 'replaceOne'
  | 'findOneAndUpdate'
  | 'findOneAndReplace'
  | 'findOneAndDelete'
  | 'deleteOne'
  | 'deleteMany'
  | 'find'
  | 'findOne'
  | 'countDocuments'
  | 'estimatedDocumentCount'
  | 'distinct'
  | 'aggregate'
  | `collection.${CollectionMethod}`
  | `driver.${CollectionMethod}`
  | 'driver.initializeOrderedBulkOp'
  | 'driver.initializeUnorderedBulkOp'
  | 'client.bulkWrite'
  | 'connection.bulkWrite'
  /** An aggregation whose final stage replaces (`$out`) or merges into (`$merge`) the watched collection. */
  | 'aggregate.$out'
  | 'aggregate.$merge'
  /** Whole-collection writes of the driver's `Db`/`Collection`: a rename onto or away from it, a drop. */
  | 'renameCollection'
  | 'drop'
  | 'dropCollection'
  | 'dropDatabase';

/** Counts the server reported, when the operation reports them. */
export interface WriteOutcome {
  inserted?: number;
  matched?: number;
  modified?: number;
  deleted?: number;
  upserted?: number;
}

export interface BypassReport {
  /** Model name, e.g. `AccessToken`. */
  model: string;
  operation: WriteOperation;
  kind: WriteKind;
  /** The application frame that called Mongoose (`file` absolute). `<unknown>` when no stack could be read. */
  callSite: Frame;
  /** Application frames, innermost first, starting at the call site; Mongoose, driver, Node and plugin frames left out. */
  stack: Frame[];
  /** Frames beyond `maxFrames` not kept in `stack`. */
  framesOmitted: number;
  /** Stable for the same model, operation and call site (path relative to `root`), across processes and machines. */
  fingerprint: string;
  /**
   * The `_id`s written, at most `maxDocumentIds`: an ObjectId as its 24 hex digits; any other `_id`
   * (string, number, date, binary, compound) only as `hmac:` + 32 hex digits of an HMAC-SHA256 keyed
   * by `idHashKey` (default: a random key of this process). Empty with `documentIds: false`.
   */
  documentIds: string[];
  /** `_id`s written beyond those listed (with `documentIds: false`, all of them: they are counted, never shown). */
  documentIdsOmitted: number;
  outcome: WriteOutcome;
  at: Date;
  /** Events for this call site held back by the rate limit since the last one sent. */
  suppressed: number;
  /** True in throw mode: the write was refused before it reached MongoDB. */
  blocked: boolean;
  /** The call site relative to `root`, `/`-separated, e.g. `src/legacy/tokens.ts:42:7`. */
  location: string;
  /**
   * True when no middleware of the model ran for the write: `Model.collection.*` and driver calls,
   * client-level bulk writes, a query built by hand from Mongoose's base `Query` class.
   */
  bypassedMiddleware: boolean;
  /** True when the call site is in the `baseline` (a known rogue write, let through in throw mode); false without a baseline. */
  baselined: boolean;
  /**
   * The trace the write was made in, when the process runs dd-trace or OpenTelemetry and a span was
   * active when the write was called. Never a tag (one value per request).
   */
  trace?: TraceContext;
}

export const UNKNOWN_FRAME: Frame = Object.freeze({ file: '<unknown>', line: 0, column: 0 });

/** One entry of `approved`: which code may write to the model. */
export type ApprovedPattern =
  /** A glob relative to `root` (`'src/auth/**'`, `'node_modules/@acme/auth/**'`), or an absolute file or directory. */
  | string
  /** Tested against the absolute, `/`-separated file path of each frame. */
  | RegExp
  /** Called with each frame; return true when it is approved code. */
  | ((frame: Frame) => boolean);

/** How many events may pass in a window. */
export interface RateWindow {
  /** Events allowed per window (≥ 1). */
  events: number;
  /** Window length in milliseconds (≥ 1). */
  intervalMs: number;
}

/** Event rate limits; counters are never rate limited. */
export interface RateLimitOptions {
  /** Per call site (fingerprint). Default: 1 event per 10 minutes. */
  perCallSite?: RateWindow;
  /** Across all call sites of this registration. Default: 30 events per minute. */
  global?: RateWindow;
  /** Distinct call sites remembered at once (least recently seen forgotten first). Default 10 000. */
  maxCallSites?: number;
}

/** Options of `schema.plugin(tripwire, options)` and `mongoose.plugin(tripwire, options)`. */
export interface TripwireOptions {
  /**
   * Code that may write to the model. Required and non-empty. A write is approved when the innermost
   * application frame of its stack (the first frame that is not Node, Mongoose, the driver, this
   * plugin or pass-through code) is in approved code.
   */
  approved: readonly ApprovedPattern[];
  /**
   * Generic code that writes for whoever calls it (a repository layer, model statics, a retry
   * helper): its frames are skipped and its caller decides. Same forms as `approved`. Packages in
   * node_modules are pass-through unless approved. Must not overlap `approved`. Default: none.
   */
  passThrough?: readonly ApprovedPattern[];
  /** Base for relative patterns and for paths shown to people. Default: `process.cwd()` at registration. */
  root?: string;
  /** Called once for each rogue write, after it completed (in throw mode: when it was refused). */
  onBypass?: (report: BypassReport) => void | Promise<void>;
  /** `'report'` (default): report and let the write happen. `'throw'`: refuse the write with a `RogueWriteError` (test suites, CI). */
  mode?: 'report' | 'throw';
  /**
   * Only these model names are watched. Meant for `mongoose.plugin(tripwire, ...)`; without it every model compiled from the schema is
   * watched.
   */
  models?: readonly string[];
  /**
   * Collections watched whatever the model is called: with `mongoose.plugin(tripwire, ...)`, every
   * model compiled onto one of these collections (a `LegacyToken` on `accesstokens`, a model on
   * another connection or `useDb`) is watched. Combines with `models` (either one watches a model).
   */
  collections?: readonly string[];
  /** Called for every fault inside the plugin (never thrown into the app). Default: `process.emitWarning`, once per distinct problem. */
  onError?: (error: Error) => void;
  /**
   * Datadog: a hot-shots client the app owns, hot-shots `ClientOptions` for one we own, or `false` for none. Default: a client from
   * `DD_*` environment variables.
   */
  statsd?: StatsD | ClientOptions | false;
  /** Datadog @-handles put on the first line of each event, e.g. `'@slack-auth-alerts'`. */
  notify?: string | readonly string[];
  /** Event rate limits, or `false` for none. */
  rateLimit?: RateLimitOptions | false;
  /** Extra tags on every event and metric: `{ team: 'auth' }` or `['team:auth']`. */
  tags?: Readonly<Record<string, string>> | readonly string[];
  /** Prefix of every metric name. Default `'tripwire.'`. */
  metricPrefix?: string;
  /** Most frames kept in a rogue write's trace. Default 50. */
  maxFrames?: number;
  /** Most `_id`s kept in a report. Default 20. */
  maxDocumentIds?: number;
  /**
   * `false`: no `_id` in any event or report (they are only counted). Default `true`: ObjectIds as
   * they are, any other `_id` only as an `hmac:` hash.
   */
  documentIds?: boolean;
  /**
   * The HMAC-SHA256 key non-ObjectId `_id`s are hashed with, at least 16 bytes (a string counts its
   * UTF-8 bytes): pass the same secret to every process so one `_id` hashes the same everywhere.
   * Default: a random key made once per process (hashes match within that process only).
   */
  idHashKey?: string | Uint8Array;
  /** `false` registers nothing (say, outside the environments you watch); the plugin says so once. Default `true`. */
  enabled?: boolean;
  /**
   * Which kinds of access are checked. Default `['create', 'update', 'delete']`; add `'read'` to report reads outside approved code too.
   */
  operations?: ReadonlyArray<'create' | 'update' | 'delete' | 'read'>;
  /** How often the `tripwire.watching` gauge is sent per watched model, for a "no data" monitor. Default 60 000. */
  heartbeatMs?: number;
  /**
   * Most distinct `callsite` tag values on `tripwire.bypasses` (each is a billed custom-metric
   * series); further call sites are counted under `callsite:other`, with one warning. Default 1 000.
   */
  maxCallSiteTags?: number;
  /**
   * A baseline of known rogue call sites (JSON, written by `npx mongoose-tripwire baseline`),
   * relative to `root`. Rogue writes it covers are still counted and reported, with
   * `baselined: true`, and are let through in throw mode; new ones are refused there. Read once at
   * registration: a missing or malformed file is a `TripwireConfigError`.
   */
  baseline?: string;
}

export interface ResolvedOptions {
  approved: readonly ApprovedPattern[];
  passThrough: readonly ApprovedPattern[];
  root: string;
  onBypass: ((report: BypassReport) => void | Promise<void>) | undefined;
  mode: 'report' | 'throw';
  models: ReadonlySet<string> | undefined;
  collections: ReadonlySet<string> | undefined;
  onError: ((error: Error) => void) | undefined;
  statsd: StatsD | ClientOptions | false | undefined;
  notify: readonly string[];
  rateLimit: Required<RateLimitOptions> | false;
  tags: readonly string[];
  metricPrefix: string;
  maxFrames: number;
  maxDocumentIds: number;
  documentIds: boolean;
  /** Undefined: this process's random key. */
  idHashKey: Buffer | undefined;
  enabled: boolean;
  heartbeatMs: number;
  maxCallSiteTags: number;
  operations: ReadonlySet<'create' | 'update' | 'delete' | 'read'>;
  baseline: LoadedBaseline | undefined;
}

export interface BaselineEntry {
  model: string;
  operation: string;
  /** The deciding frame's file, relative to `root`, `/`-separated. */
  file: string;
  /** The deciding frame's enclosing function, or `<anonymous>`. */
  function: string;
  /** Distinct call sites (`path:line:column`) known for this key. */
  count: number;
}

/** A baseline as the plugin holds it after reading it at registration. */
export interface LoadedBaseline {
  /** As given in the option (relative to `root`, or absolute): what messages show. */
  path: string;
  /** Absolute. */
  file: string;
  entries: readonly BaselineEntry[];
  /** The file did not exist and `TRIPWIRE_RECORD` is set: a first recording run, with an empty baseline. */
  missing?: boolean;
  /** How long reading and parsing it took, in milliseconds. */
  loadMs: number;
}

/** A write that completed (or, in throw mode, is about to be refused). */
export interface WriteEvent {
  model: string;
  operation: WriteOperation;
  kind: WriteKind;
  /** Undefined when the call was never seen by a wrapper (a query built by hand): it is then captured late, when the write runs. */
  capture: Capture | undefined;
  ids: () => readonly unknown[];
  outcome: () => WriteOutcome;
  /** A `Model.collection.*` call: no Mongoose middleware ran. */
  bypassedMiddleware?: boolean;
}

/** Receives every write and every report; the Datadog sink is one. */
export interface WriteListener {
  write(model: string, operation: WriteOperation, kind: WriteKind, approved: boolean): void;
  /**
   * A rogue write. `report` is the full report when an event is to be sent, undefined when the rate
   * limit holds it back (then only the call site is known, which is all counters need).
   */
  bypass(site: BypassSite, report: BypassReport | undefined): void;
  fault(reason: FaultReason): void;
  /**
   * A write to a watched collection whose call site cannot be known: seen at the driver with no
   * application frame on the stack (`route` `driver`, `command` the driver method), or only as a
   * command on the wire (`command_monitoring`, `command` the server command).
   */
  unattributed?(collection: string, command: string, route: UnattributedRoute): void;
  /** A watched model was compiled. */
  modelWatched?(modelName: string): void;
  /** Something received is not on its way yet (a buffered datagram, a counter). */
  hasUnsent?(): boolean;
  /** Sends what was received; never rejects. */
  flush?(): Promise<void>;
  /** As much of `flush()` as runs synchronously, for `process.on('exit')`. */
  flushSync?(): void;
  /** Sends what was received and releases what the listener owns; never rejects. */
  close?(): Promise<void>;
}

export type UnattributedRoute = 'driver' | 'command_monitoring';

/** What every rogue write is counted by, cheap to know: no frames are built for it. */
export interface BypassSite {
  model: string;
  operation: WriteOperation;
  kind: WriteKind;
  /** `path:line:column` relative to root. */
  location: string;
  fingerprint: string;
  /** In the `baseline`: a known rogue call site (absent or false without a baseline). */
  baselined?: boolean;
}

/**
 * Why the plugin reports a fault (the `reason` tag of `tripwire.errors`, and `TripwireFault.reason`).
 * Boot notices (`BOOT_NOTICES` in core/faults.ts) are warned once and never counted.
 */
export type FaultReason =
  // boot notices: properties of the deployment, found at registration or by verify()
  | 'approved_matches_nothing'
  | 'approved_too_broad'
  | 'baseline_missing'
  | 'baseline_slow'
  | 'baseline_stale'
  | 'statsd_default_target'
  | 'verify'
  // judging a write
  | 'call_site_lost'
  | 'capture_failed'
  | 'degraded_stack'
  | 'pattern_threw'
  // reporting a rogue write
  | 'report_failed'
  | 'sink_failed'
  | 'onBypass_rejected'
  | 'onBypass_threw'
  | 'subscriber_threw'
  | 'record_failed'
  // Datadog delivery
  | 'send_failed'
  | 'statsd_error'
  | 'close_failed'
  | 'datagram_too_large'
  | 'tags_dropped'
  | 'callsite_tags_capped';

/** Reports a fault: counted (unless a boot notice) and surfaced once per distinct message. Never throws. */
export type FaultReporter = (reason: FaultReason, message: string, cause?: unknown) => void;

/**
 * What the hooks (where writes are seen) ask of a registration, and all they may ask: whether a
 * model is watched, who called (the verdict), and what happened. The hooks never know who consumes
 * the answers (Datadog, `onBypass`, a record file).
 */
export interface WriteJudge {
  /** The kinds of access checked (`operations`). */
  readonly operations: ReadonlySet<WriteKind>;
  /** `mode: 'throw'`: rogue writes are refused before they are made. */
  readonly refusesRogueWrites: boolean;
  /** Is a model of this name (or of this base model) watched? */
  watches(modelName: string | undefined, baseModelName?: string): boolean;
  /** At compile time: is this model watched, by its name or by the collection it writes to? */
  watchesModel(modelName: string | undefined, baseModelName: string | undefined, collectionName: string | undefined): boolean;
  /** A model that writes through the collection object of a watched model is watched too. */
  watchSharingModel(modelName: string | undefined): void;
  /** A watched model was compiled (its wrappers are being installed). */
  modelCompiled(model: object & { modelName?: string }): void;
  /** How a route to a watched collection is covered, for `verify()`. */
  driverRoute(collection: string, route: 'driverCalls' | 'rawCommands', covered: boolean): void;
  /** The verdict on the write being called: synchronous, never throws. */
  capture(entry: Function): Capture;
  /** As `capture`, but undefined (one frame read only) when Mongoose itself made the call. */
  captureUnlessMongoose(entry: Function): Capture | undefined;
  /** The write settled: count it and, if rogue, report it. */
  completed(event: WriteEvent, entry: Function): void;
  /** Throw mode, before the write is made: the error to refuse it with, or undefined to let it through. */
  refusal(event: WriteEvent, entry: Function): Error | undefined;
  /** A write landed in a watched collection that no call site accounts for. */
  unattributed(collection: string, command: string, route: UnattributedRoute): void;
}
