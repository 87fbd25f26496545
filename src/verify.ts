/**
 * `verify()`: is the detector really on? Reads back from what Mongoose compiled (not from our own
 * flags) whether every hook and entry point this plugin needs is in place on each model, and says
 * what it found. Never writes to the database.
 */

import { mongooseBundle } from './attribution/approval.js';
import { applicationFilesIn, ownedFiles, unjudgedBuilds } from './attribution/builds.js';
import { callerStack, sourcesNotRun, typescriptEvidence } from './attribution/typescript-sources.js';
import { registrations as allRegistrations, type Registration } from './core/registration.js';
import { ENTRY_STATICS } from './hooks/model.js';
import { QUERY_WRITE_NAMES } from './hooks/query.js';
import { isOurWrapper } from './hooks/wrap.js';
import { registrationOf } from './plugin.js';
import { firstOf } from './util/list.js';
import { BUNDLED_INTO } from './util/paths.js';

export interface ModelCheck {
  model: string;
  /** Hooks or entry points Mongoose does not have for this model: each means writes go unseen. */
  missing: string[];
}

export interface RegistrationCheck {
  mode: 'report' | 'throw';
  root: string;
  /** Each `approved` pattern and the files it matched under `root` at registration (`null`: a function). */
  approved: Array<{ pattern: string; files: number | null }>;
  /** Where events and metrics go, or `none` with `statsd: false`. */
  statsd: string;
  models: ModelCheck[];
  /** Names in the `models` option for which no model was compiled. */
  modelsNeverCompiled: string[];
  /** Names in the `collections` option that no compiled model writes to. */
  collectionsNeverCompiled: string[];
  /**
   * Per collection: how writes that bypass Mongoose are seen. `driverCalls`: calls to the driver's
   * own collection methods (`connection.db.collection(name)`, another client, bulk builders) and
   * client-level bulk writes (`client.bulkWrite`), attributed where they are called. `rawCommands`: write commands sent without any
   * collection
   * method (`db.command({ update: name, ... })`), counted as `tripwire.unattributed_writes`.
   */
  driverRoutes: Record<
    string,
    {
      driverCalls: 'attributed' | 'not watched: Mongoose does not name its driver (mongoose.mongo)';
      rawCommands: 'counted' | 'not counted: connect with { monitorCommands: true }';
    }
  >;
}

/**
 * What `verify()` found in this isolate: the plugin is per isolate, so a worker thread's
 * registrations (and a watched model compiled in a worker without the plugin) are not in it.
 */
export interface VerifyResult {
  /** True when at least one model is instrumented and nothing is missing or suspicious. */
  ok: boolean;
  /** Each problem in one sentence (also surfaced once through `onError` / `process.emitWarning`). */
  problems: string[];
  registrations: RegistrationCheck[];
}

interface CompiledModel {
  modelName?: string;
  schema?: unknown;
  collection?: Record<string, unknown>;
  prototype?: Record<string, unknown>;
  Query?: { prototype?: Record<string, unknown> };
  [name: string]: unknown;
}

/** Reads back, from the compiled model itself, every wrapper a write needs to be seen. */
function checkModel(model: CompiledModel): string[] {
  const missing: string[] = [];
  const queryProto = model.Query?.prototype;
  for (const name of [...QUERY_WRITE_NAMES, 'exec']) {
    if (!isOurWrapper(queryProto?.[name])) missing.push(`Query#${name} wrapper`);
  }
  for (const name of ENTRY_STATICS) {
    if (typeof model[name] === 'function' && !isOurWrapper(model[name])) missing.push(`Model.${name} wrapper`);
  }
  if (!isOurWrapper(model.prototype?.$save)) missing.push('Document#$save wrapper');
  if (!isOurWrapper(model.collection?.insertOne)) missing.push('Model.collection wrappers');
  return missing;
}

interface Running {
  /** Why stacks can name .ts files, if anything says so. */
  typescript: string | undefined;
  /** The application files running verify()'s caller. */
  files: string[];
}

function checkRegistration(registration: Registration, problems: string[], running: Running): RegistrationCheck {
  const models: ModelCheck[] = [];
  for (const [name, ref] of registration.scope.compiledModels) {
    const model = ref.deref() as CompiledModel | undefined;
    if (!model) continue;
    const missing =
      registrationOf(model.schema) === registration || isOurWrapper(model.prototype?.$save)
        ? checkModel(model)
        : ['the model was compiled from a schema this plugin did not instrument'];
    models.push({ model: name, missing });
    if (missing.length > 0) problems.push(`${name}: Mongoose is missing ${firstOf(missing)}; writes there go unseen`);
  }
  const configured = registration.options.models;
  const modelsNeverCompiled = configured ? [...configured].filter((name) => !registration.scope.compiledModels.has(name)) : [];
  const compiledCollections = new Set(
    [...registration.scope.compiledModels.values()].map(
      (ref) => (ref.deref() as { collection?: { collectionName?: string } } | undefined)?.collection?.collectionName,
    ),
  );
  const collectionsNeverCompiled = [...(registration.options.collections ?? [])].filter((name) => !compiledCollections.has(name));
  for (const name of collectionsNeverCompiled) {
    problems.push(
      `collection "${name}" is in the collections option but no model compiled after the plugin writes to it (a typo, or the plugin was ` +
        `registered after mongoose.model())`,
    );
  }
  for (const name of modelsNeverCompiled) {
    problems.push(
      `model "${name}" is in the models option but was never compiled from an instrumented schema (a typo, or mongoose.plugin() was ` +
        `called after mongoose.model())`,
    );
  }
  for (const { pattern, files } of registration.approvedFiles) {
    if (files === 0) problems.push(`approved pattern ${pattern} matches no file under ${registration.options.root}`);
  }
  const broad = registration.tooBroad();
  if (broad) problems.push(broad);
  for (const [name, watched] of registration.driverRoutes.driverCalls) {
    if (!watched)
      problems.push(
        `collection "${name}": calls to the driver's own collection methods are not watched (this Mongoose does not name its driver as ` +
          `mongoose.mongo)`,
      );
  }
  const { approved, passThrough, root } = registration.options;
  problems.push(...sourcesNotRun(approved, root, running.typescript));
  problems.push(...unjudgedBuilds(running.files, ownedFiles([...approved, ...passThrough], root), root));
  return {
    mode: registration.options.mode,
    root: registration.options.root,
    approved: registration.approvedFiles.map((entry) => ({ ...entry })),
    statsd: registration.statsdTarget ?? 'none (statsd: false)',
    models,
    modelsNeverCompiled,
    collectionsNeverCompiled,
    driverRoutes: Object.fromEntries(
      [...new Set([...registration.driverRoutes.driverCalls.keys(), ...registration.driverRoutes.rawCommands.keys()])].map(
        (name) =>
          [
            name,
            {
              driverCalls:
                registration.driverRoutes.driverCalls.get(name) === true
                  ? 'attributed'
                  : 'not watched: Mongoose does not name its driver (mongoose.mongo)',
              rawCommands:
                registration.driverRoutes.rawCommands.get(name) === true
                  ? 'counted'
                  : 'not counted: connect with { monitorCommands: true }',
            },
          ] as const,
      ),
    ),
  };
}

/**
 * A bundle that holds this package or Mongoose erases the file paths their frames are known by: with
 * source maps some frames map back, but not every route can be judged. Each is a problem to fix in the build.
 */
function bundleProblems(): string[] {
  const problems: string[] = [];
  const remedy = 'keep mongoose and mongoose-tripwire external (esbuild --packages=external, webpack externals), and run with source maps';
  if (BUNDLED_INTO)
    problems.push(`mongoose-tripwire is bundled into ${BUNDLED_INTO}: its own frames cannot be told from the app's; ${remedy}`);
  const mongoose = mongooseBundle();
  if (mongoose) problems.push(`mongoose is bundled into ${mongoose}: its frames cannot be told from the app's; ${remedy}`);
  return problems;
}

/** Checks every registration in this process; call it at boot, after the models are compiled. */
export function verify(): VerifyResult {
  const problems: string[] = [];
  // Can the stacks of this process name .ts files, and which files run? Read once, with the stack of verify()'s caller.
  const stack = callerStack();
  const running: Running = { typescript: typescriptEvidence(stack), files: applicationFilesIn(stack) };
  const registrations = [...allRegistrations].map((registration) => {
    const before = problems.length;
    const check = checkRegistration(registration, problems, running);
    for (const problem of problems.slice(before)) registration.reportFault('verify', problem);
    return check;
  });
  problems.push(...bundleProblems());
  const instrumented = registrations.reduce((n, r) => n + r.models.length, 0);
  if (instrumented === 0) {
    problems.push(
      'no model is instrumented: register the plugin before compiling the model (schema.plugin or mongoose.plugin before mongoose.model)',
    );
  }
  return { ok: problems.length === 0, problems, registrations };
}
