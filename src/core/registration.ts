/**
 * One registration of the plugin at run time (one options object): what the hooks call
 * (`WriteJudge`), composed of its scope, its verdicts and its delivery, and tracked for the end of
 * the process. Its listeners (the Datadog sink) are built by the plugin, which composes the options.
 */

import { performance } from 'node:perf_hooks';
import { type Approval, BROAD_MIN_FILES, compileApproval, countApprovedFiles } from '../attribution/approval.js';
import { applicationFilesIn, ownedFiles, unjudgedBuilds } from '../attribution/builds.js';
import { callerStack } from '../attribution/typescript-sources.js';
import { BaselineMatcher } from '../ratchet/baseline.js';
import { RECORD_ENV, type Recorder } from '../ratchet/recorder.js';
import { EventRateLimiter } from '../report/rate-limit.js';
import type {
  Capture,
  FaultReporter,
  ResolvedOptions,
  UnattributedRoute,
  WriteEvent,
  WriteJudge,
  WriteKind,
  WriteListener,
} from '../types.js';
import { firstOf } from '../util/list.js';
import { BUNDLED_INTO } from '../util/paths.js';
import { Delivery } from './delivery.js';
import { type Deliverable, track, untrack } from './lifecycle.js';
import { WatchScope } from './scope.js';
import { Verdicts } from './verdicts.js';

export interface RegistrationParts {
  options: ResolvedOptions;
  reportFault: FaultReporter;
  /** Receive every write, report and fault (the Datadog sink is one). */
  listeners: readonly WriteListener[];
  /** Where events and metrics go, for people (`verify()`, the boot notice), or undefined with `statsd: false`. */
  statsdTarget: string | undefined;
  recorder: Recorder | undefined;
}

/** Every registration in this process, for `verify()`. */
export const registrations = new Set<Registration>();

export class Registration implements WriteJudge, Deliverable {
  readonly options: ResolvedOptions;
  readonly reportFault: FaultReporter;
  readonly statsdTarget: string | undefined;
  readonly approval: Approval;
  readonly scope: WatchScope;
  readonly baseline: BaselineMatcher | undefined;
  /** `approved` patterns and how many files under `root` each matched at registration (`null`: a function). */
  readonly approvedFiles: ReadonlyArray<{ pattern: string; files: number | null }>;
  /** How each route to a watched collection that skips Mongoose is covered, per collection, for `verify()`. */
  readonly driverRoutes = { driverCalls: new Map<string, boolean>(), rawCommands: new Map<string, boolean>() };
  readonly operations: ReadonlySet<WriteKind>;
  readonly refusesRogueWrites: boolean;
  private readonly listeners: readonly WriteListener[];
  private readonly verdicts: Verdicts;
  readonly capture: (entry: Function) => Capture;
  readonly captureUnlessMongoose: (entry: Function) => Capture | undefined;
  private readonly delivery: Delivery;

  constructor({ options, reportFault, listeners, statsdTarget, recorder }: RegistrationParts) {
    this.options = options;
    this.reportFault = reportFault;
    this.listeners = listeners;
    this.statsdTarget = statsdTarget;
    this.operations = options.operations;
    this.refusesRogueWrites = options.mode === 'throw';
    this.approval = compileApproval({
      approved: options.approved,
      passThrough: options.passThrough,
      root: options.root,
      // A pattern function that throws says "no" for that frame; the write is still judged.
      onPatternError: (option, error) =>
        reportFault(
          'pattern_threw',
          `an ${option} function threw, so that frame was taken as not ${option === 'approved' ? 'approved' : 'pass-through'}`,
          error,
        ),
    });
    this.scope = new WatchScope(options.models, options.collections);
    const limiter = new EventRateLimiter(options.rateLimit);
    this.baseline = options.baseline ? new BaselineMatcher(options.baseline) : undefined;
    this.verdicts = new Verdicts(this.approval, options, limiter, reportFault);
    // Not delegating methods: a frame between a wrapper and its stack read costs (call-site.ts).
    this.capture = this.verdicts.capture;
    this.captureUnlessMongoose = this.verdicts.captureUnlessMongoose;
    this.delivery = new Delivery({ options, listeners, limiter, verdicts: this.verdicts, reportFault, baseline: this.baseline, recorder });
    this.approvedFiles = options.approved.map((pattern) => ({
      pattern: String(pattern),
      files: countApprovedFiles(pattern, options.root),
    }));
    registrations.add(this);
    track(this);
    this.bootChecks();
  }

  /**
   * `approved` approves more than half of the application's files under root (at least
   * BROAD_MIN_FILES of them): a sentence for the boot notice and `verify()`, or undefined.
   */
  tooBroad(): string | undefined {
    const { files, approved, truncated } = this.approval.breadth;
    if (files < BROAD_MIN_FILES || approved * 2 <= files) return undefined;
    const patterns = firstOf(this.approvedFiles.map((entry) => entry.pattern));
    return (
      `approved (${patterns}) approves ${approved} of the ${files} application files under root ${this.options.root}` +
      `${truncated ? ' (of those scanned)' : ''}: more than half, so most rogue writes would go unseen; name the auth module's files`
    );
  }

  /** What can be wrong at boot without being an error: each is a warning, once. */
  private bootChecks(): void {
    const { root, statsd } = this.options;
    const broad = this.tooBroad();
    if (broad) this.reportFault('approved_too_broad', broad);
    for (const { pattern, files } of this.approvedFiles) {
      if (files === 0) {
        this.reportFault(
          'approved_matches_nothing',
          `approved pattern ${pattern} matches no file under root ${root}: a typo, a moved folder or a wrong root? Every write would be ` +
            `reported as rogue`,
        );
      }
    }
    if (
      this.statsdTarget !== undefined &&
      statsd === undefined &&
      !process.env.DD_AGENT_HOST &&
      !process.env.DD_DOGSTATSD_URL &&
      !process.env.DD_DOGSTATSD_SOCKET
    ) {
      this.reportFault(
        'statsd_default_target',
        `no statsd option and no DD_AGENT_HOST: events go to ${this.statsdTarget}, and whether an agent listens there is unknown (UDP ` +
          `never says)`,
      );
    }
    // The app's files registering the plugin: a bundle of approved code run without source maps is judged as one file.
    const owned = ownedFiles([...this.options.approved, ...this.options.passThrough], root);
    for (const problem of unjudgedBuilds(applicationFilesIn(callerStack()), owned, root)) this.reportFault('verify', problem);
    if (BUNDLED_INTO) {
      this.reportFault(
        'verify',
        `mongoose-tripwire is bundled into ${BUNDLED_INTO}: its own frames cannot be told from the app's; keep mongoose and ` +
          'mongoose-tripwire external (esbuild --packages=external, webpack externals), and run with source maps',
      );
    }
    const baseline = this.options.baseline;
    if (this.baseline && baseline) {
      if (baseline.missing) {
        this.reportFault(
          'baseline_missing',
          `baseline ${baseline.path} does not exist under root ${root}: taken as empty because ${RECORD_ENV} is set (a first recording ` +
            `run); write it with \`npx mongoose-tripwire baseline ${process.env[RECORD_ENV]} --out ${baseline.path}\` after the run`,
        );
      }
      const started = performance.now();
      const missing = this.baseline.missingFiles(root);
      const loadMs = baseline.loadMs + performance.now() - started;
      if (missing.length > 0) {
        this.reportFault(
          'baseline_stale',
          `baseline ${baseline.path} has entries for ${missing.length} file(s) that do not exist under root ${root}: ${firstOf(missing)} ` +
            `(moved or deleted code? rebuild it with \`npx mongoose-tripwire baseline <records> --prune\`)`,
        );
      }
      if (loadMs > 1_000) {
        this.reportFault(
          'baseline_slow',
          `baseline ${baseline.path} took ${Math.round(loadMs)} ms to load and check (${baseline.entries.length} entries), blocking ` +
            `the registration: a baseline should shrink; prune it with \`npx mongoose-tripwire baseline <records> --prune\``,
        );
      }
    }
  }

  watches(modelName: string | undefined, baseModelName?: string): boolean {
    return this.scope.watches(modelName, baseModelName);
  }

  watchesModel(modelName: string | undefined, baseModelName: string | undefined, collectionName: string | undefined): boolean {
    return this.scope.watchesModel(modelName, baseModelName, collectionName);
  }

  watchSharingModel(modelName: string | undefined): void {
    this.scope.watchSharingModel(modelName);
  }

  modelCompiled(model: object & { modelName?: string }): void {
    if (this.scope.compiled(model)) for (const listener of this.listeners) listener.modelWatched?.(model.modelName!);
  }

  driverRoute(collection: string, route: 'driverCalls' | 'rawCommands', covered: boolean): void {
    this.driverRoutes[route].set(collection, covered);
  }

  completed(event: WriteEvent, entry: Function): void {
    this.delivery.completed(event, entry);
  }

  refusal(event: WriteEvent, entry: Function): Error | undefined {
    return this.delivery.refusal(event, entry);
  }

  unattributed(collection: string, command: string, route: UnattributedRoute): void {
    this.delivery.unattributed(collection, command, route);
  }

  hasUnsent(): boolean {
    return this.delivery.hasUnsent();
  }

  /**
   * Every rogue write that already completed is delivered (counted, `onBypass` called, its event
   * handed to the client), the counters are sent, and a client the plugin owns has flushed its
   * buffer to the socket. Never rejects.
   */
  flush(): Promise<void> {
    return this.delivery.flush();
  }

  flushSync(): void {
    this.delivery.flushSync();
  }

  async close(): Promise<void> {
    registrations.delete(this);
    untrack(this);
    await this.delivery.close();
  }
}
