/**
 * `verify()`: is the detector really on? Reads back from what Mongoose compiled (not from our own
 * flags) whether every hook and entry point this plugin needs is in place on each model, and says
 * what it found. Never writes to the database.
 */
import { activeWatchers, type Watcher } from './watcher.js';
import { instrumentationOf, isOurWrapper, QUERY_WRITE_NAMES, type Instrumentation } from './plugin.js';

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
  /** Per collection: whether writes that bypass Mongoose entirely are counted (`tripwire.unattributed_writes`). */
  unattributedWrites: Record<string, 'counted' | 'not counted: connect with { monitorCommands: true }'>;
}

export interface VerifyResult {
  /** True when at least one model is instrumented and nothing is missing or suspicious. */
  ok: boolean;
  /** Each problem in one sentence (also surfaced once through `onError` / `process.emitWarning`). */
  problems: string[];
  registrations: RegistrationCheck[];
}

interface Hooked { _posts?: Map<string, Array<{ fn?: unknown }>> }
interface CompiledModel {
  modelName?: string;
  schema?: unknown;
  create?: unknown;
  insertMany?: unknown;
  bulkWrite?: unknown;
  prototype?: { save?: unknown; $save?: unknown };
  Query?: { prototype?: Record<string, unknown> & { _queryMiddleware?: Hooked } };
  _middleware?: Hooked;
  hooks?: Hooked;
}

function hasPost(hooks: Hooked | undefined, name: string, fn: Function): boolean {
  return hooks?._posts?.get(name)?.some((hook) => hook.fn === fn) === true;
}

function checkModel(model: CompiledModel, hooks: Instrumentation): string[] {
  const missing: string[] = [];
  const queryProto = model.Query?.prototype;
  for (const name of QUERY_WRITE_NAMES) {
    if (!hasPost(queryProto?._queryMiddleware, name, hooks.postQuery)) missing.push(`post ${name} query middleware`);
    if (!isOurWrapper(queryProto?.[name])) missing.push(`Query#${name} call-site capture`);
  }
  if (!hasPost(model._middleware, 'save', hooks.postSave)) missing.push('post save middleware');
  if (!hasPost(model.hooks, 'insertMany', hooks.postInsertMany)) missing.push('post insertMany middleware');
  if (!hasPost(model.hooks, 'bulkWrite', hooks.postBulkWrite)) missing.push('post bulkWrite middleware');
  for (const name of ['create', 'insertMany', 'bulkWrite'] as const) if (!isOurWrapper(model[name])) missing.push(`Model.${name} call-site capture`);
  for (const name of ['save', '$save'] as const) if (!isOurWrapper(model.prototype?.[name])) missing.push(`Document#${name} call-site capture`);
  return missing;
}

function checkRegistration(watcher: Watcher, problems: string[]): RegistrationCheck {
  const models: ModelCheck[] = [];
  for (const [name, ref] of watcher.compiledModels) {
    const model = ref.deref() as CompiledModel | undefined;
    if (!model) continue;
    const hooks = instrumentationOf(model.schema);
    const missing = hooks ? checkModel(model, hooks) : ['the model was compiled from a schema this plugin did not instrument'];
    models.push({ model: name, missing });
    if (missing.length > 0) problems.push(`${name}: Mongoose is missing ${missing.join(', ')}; writes there go unseen`);
  }
  const configured = watcher.options.models;
  const modelsNeverCompiled = configured ? [...configured].filter((name) => !watcher.compiledModels.has(name)) : [];
  for (const name of modelsNeverCompiled) {
    problems.push(`model "${name}" is in the models option but was never compiled from an instrumented schema (a typo, or mongoose.plugin() was called after mongoose.model())`);
  }
  for (const { pattern, files } of watcher.approvedFiles) {
    if (files === 0) problems.push(`approved pattern ${pattern} matches no file under ${watcher.options.root}`);
  }
  return {
    mode: watcher.options.mode,
    root: watcher.options.root,
    approved: watcher.approvedFiles.map((entry) => ({ ...entry })),
    statsd: watcher.sink?.target.description ?? 'none (statsd: false)',
    models,
    modelsNeverCompiled,
    unattributedWrites: Object.fromEntries(
      [...watcher.driverMonitoring].map(([name, on]) => [name, on ? 'counted' : 'not counted: connect with { monitorCommands: true }'] as const),
    ),
  };
}

/** Checks every registration in this process; call it at boot, after the models are compiled. */
export function verify(): VerifyResult {
  const problems: string[] = [];
  const registrations = [...activeWatchers].map((watcher) => {
    const before = problems.length;
    const check = checkRegistration(watcher, problems);
    for (const problem of problems.slice(before)) watcher.reportFault('verify', problem);
    return check;
  });
  const instrumented = registrations.reduce((n, r) => n + r.models.length, 0);
  if (instrumented === 0) {
    problems.push('no model is instrumented: register the plugin before compiling the model (schema.plugin or mongoose.plugin before mongoose.model)');
  }
  return { ok: problems.length === 0, problems, registrations };
}
