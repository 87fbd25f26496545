/**
 * Plugin wiring: where each write is seen when it is called, and where it is known to have happened.
 *
 * Call time: the write entry points are overridden on this schema only (statics, query helpers and
 * document methods are Mongoose's per-model extension points), so other models are untouched.
 * Each override captures the call site synchronously and carries the verdict:
 *   - query writes (also reached by `Model.updateOne`, `doc.updateOne()`, chained queries): on the Query;
 *   - `save` / `$save` (also reached by `Model.create`, `Model.insertOne`): on the document;
 *   - `create`, `insertOne`, `insertMany`, `bulkWrite`, `bulkSave`: in an AsyncLocalStorage store,
 *     because they await before the internal saves and their model-level hooks run.
 * Completion: post middleware counts and reports. Throw mode refuses in pre middleware.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Schema } from 'mongoose';
import type { Capture } from './capture.js';
import { resolveOptions, TripwireConfigError, type TripwireOptions } from './options.js';
import type { WriteKind, WriteOperation, WriteOutcome } from './report.js';
import { Watcher, type WriteEvent } from './watcher.js';
import { instrumentCollection } from './collection.js';
import { bulkKindOf, filterId, foundDocument, isObject, resultCounts, resultIds } from './write-shapes.js';

const QUERY_WRITES = {
  updateOne: 'update',
  updateMany: 'update',
  replaceOne: 'update',
  findOneAndUpdate: 'update',
  findOneAndReplace: 'update',
  findOneAndDelete: 'delete',
  deleteOne: 'delete',
  deleteMany: 'delete',
} as const satisfies Record<string, WriteKind>;
// Reads are instrumented only with `operations: [..., 'read']`: they are far more frequent than writes.
// `findById` and `exists` are `findOne` queries.
const QUERY_READS = {
  find: 'read',
  findOne: 'read',
  countDocuments: 'read',
  estimatedDocumentCount: 'read',
  distinct: 'read',
} as const satisfies Record<string, WriteKind>;
const QUERY_OPS: Record<string, WriteKind> = { ...QUERY_WRITES, ...QUERY_READS };
type QueryWrite = keyof typeof QUERY_WRITES;
type QueryOp = QueryWrite | keyof typeof QUERY_READS;
const QUERY_WRITE_NAMES = Object.keys(QUERY_WRITES) as QueryWrite[];
const QUERY_READ_NAMES = Object.keys(QUERY_READS) as Array<keyof typeof QUERY_READS>;

const ENTRY_STATICS = ['create', 'insertOne', 'insertMany', 'bulkWrite', 'bulkSave'] as const;
const SAVE_METHODS = ['save', '$save'] as const;

interface EntryStore {
  watcher: Watcher;
  capture: Capture;
  bulkKind?: WriteKind;
}
const entryContext = new AsyncLocalStorage<EntryStore>();

const queryCaptures = new WeakMap<object, Capture>();
const saveCaptures = new WeakMap<object, { capture: Capture; kind: WriteKind }>();

const WRAPPER = Symbol('mongoose-tripwire.wrapper');
const INSTRUMENTED = Symbol('mongoose-tripwire.instrumented');

type AnyFunction = (this: unknown, ...args: unknown[]) => unknown;
type Wrapper = AnyFunction & { [WRAPPER]?: true };

/** The nearest implementation up the prototype chain that is not one of our wrappers. */
function inherited(target: object, name: string): AnyFunction {
  for (let holder: object | null = target; holder !== null; holder = Object.getPrototypeOf(holder) as object | null) {
    const descriptor = Object.getOwnPropertyDescriptor(holder, name);
    const value: unknown = descriptor?.value;
    if (typeof value === 'function' && !(value as Wrapper)[WRAPPER]) return value as AnyFunction;
  }
  throw new TypeError(`mongoose-tripwire: no Mongoose implementation of ${name} found`);
}

function markWrapper<F extends AnyFunction>(fn: F): F {
  Object.defineProperty(fn, WRAPPER, { value: true });
  return fn;
}

// ---- The shapes Mongoose hands us, read defensively (no `any` at the boundary). ----

interface ModelLike { modelName?: string; baseModelName?: string }
interface QueryLike { model?: ModelLike; getFilter?(): Record<string, unknown> }
interface DocumentLike { _id?: unknown; $isSubdocument?: boolean; isNew?: boolean; constructor: ModelLike }

function queryOutcome(operation: QueryOp, result: unknown): WriteOutcome {
  if (QUERY_OPS[operation] === 'read') return {};
  if (operation.startsWith('findOneAnd')) {
    const found = foundDocument(result) ? 1 : 0;
    return operation === 'findOneAndDelete' ? { deleted: found } : { matched: found };
  }
  return resultCounts(result);
}

function queryIds(operation: QueryOp, query: QueryLike, result: unknown): unknown[] {
  const ids = filterId(typeof query.getFilter === 'function' ? query.getFilter() : undefined);
  if (QUERY_OPS[operation] === 'read') return ids;
  return [...ids, ...resultIds(result, operation.startsWith('findOneAnd'))];
}

function schemaIsCompiled(schema: Schema): boolean {
  // Mongoose adds its id getter plugin (`addIdGetter`) while compiling a model (Schema#_preCompile):
  // a schema that has it already belongs to a model whose hooks and methods were copied before we
  // could add ours.
  const plugins = (schema as unknown as { plugins?: Array<{ fn?: { name?: string } }> }).plugins ?? [];
  return plugins.some((plugin) => plugin.fn?.name === 'addIdGetter');
}

/**
 * True when Mongoose itself is applying `mongoose.plugin(tripwire, options)`: that happens before the
 * model is compiled, and also to child schemas, which carry the id getter from their construction.
 */
function appliedAsGlobalPlugin(schema: Schema, options: TripwireOptions): boolean {
  const base = (schema as unknown as { base?: { plugins?: unknown } }).base;
  const plugins = Array.isArray(base?.plugins) ? (base.plugins as unknown[]) : [];
  return plugins.some((entry) => Array.isArray(entry) && entry[0] === tripwire && entry[1] === options);
}

/** The hooks one schema was given, so `verify()` can look for them in what Mongoose compiled. */
export interface Instrumentation {
  postQuery: Function;
  postSave: Function;
  postInsertMany: Function;
  postBulkWrite: Function;
}
const instrumentation = new WeakMap<object, Instrumentation>();

export function instrumentationOf(schema: unknown): Instrumentation | undefined {
  return isObject(schema) ? instrumentation.get(schema) : undefined;
}

export function isOurWrapper(value: unknown): boolean {
  return typeof value === 'function' && (value as Wrapper)[WRAPPER] === true;
}

export { QUERY_WRITE_NAMES };

// `Model.aggregate()` builds an Aggregate synchronously and runs it later: capture on the call,
// report from the aggregate post hook, where `this` is the Aggregate.
const aggregateCaptures = new WeakMap<object, Capture>();
function instrumentAggregate(schema: Schema, watcher: Watcher): void {
  const wrapper: Wrapper = markWrapper(function (this: unknown, ...args: unknown[]) {
    const model = this as ModelLike;
    const aggregate = inherited(this as object, 'aggregate').apply(this, args);
    if (isObject(aggregate) && watcher.watches(model.modelName, model.baseModelName)) aggregateCaptures.set(aggregate, watcher.capture(wrapper));
    return aggregate;
  });
  schema.static('aggregate', wrapper);
  const onAggregateDone = function postAggregate(this: unknown): void {
    const model = (this as { _model?: ModelLike })._model;
    if (!model || !watcher.watches(model.modelName, model.baseModelName)) return;
    watcher.completed({
      model: model.modelName ?? '<unknown>', operation: 'aggregate', kind: 'read',
      capture: aggregateCaptures.get(this as object), ids: () => [], outcome: () => ({}),
    }, onAggregateDone);
  };
  schema.post('aggregate', onAggregateDone);
}

const watchersByOptions = new WeakMap<object, Watcher>();
const disabledOptions = new WeakSet<object>();

/**
 * The Mongoose plugin. `schema.plugin(tripwire, { approved: ['src/auth/**'] })` before the model is
 * compiled, or `mongoose.plugin(tripwire, { models: ['AccessToken'], approved: [...] })` before any
 * model is compiled.
 */
export function tripwire(schema: Schema, options: TripwireOptions): void {
  if (!appliedAsGlobalPlugin(schema, options) && schemaIsCompiled(schema)) {
    throw new TripwireConfigError(
      'mongoose-tripwire: the plugin was registered on a schema whose model is already compiled, so Mongoose will never call its hooks. ' +
        'Register it before mongoose.model()/connection.model() is called for this schema.',
    );
  }
  // One watcher per options object: `mongoose.plugin` applies the same options to every schema,
  // and they must share one rate limit, one Datadog client and one set of counters.
  let watcher = isObject(options) ? watchersByOptions.get(options) : undefined;
  if (!watcher) {
    const resolved = resolveOptions(options);
    if (!resolved.enabled) {
      if (!disabledOptions.has(options)) {
        disabledOptions.add(options);
        process.emitWarning('mongoose-tripwire is disabled (enabled: false): no write is checked or reported', { type: 'TripwireWarning', code: 'TRIPWIRE_DISABLED' });
      }
      return;
    }
    watcher = new Watcher(resolved);
    watchersByOptions.set(options, watcher);
  }
  const marked = (schema as unknown as Record<symbol, Watcher | undefined>)[INSTRUMENTED];
  if (marked === watcher) return;
  if (marked) {
    throw new TripwireConfigError('mongoose-tripwire: the plugin is registered twice on one schema with different options; every write would be reported twice');
  }
  Object.defineProperty(schema, INSTRUMENTED, { value: watcher });
  instrument(schema, watcher);
  const known = watcher;
  schema.on('init', (model: object) => {
    const compiled = model as ModelLike & { collection?: unknown };
    if (!known.watches(compiled.modelName, compiled.baseModelName)) return;
    known.modelCompiled(compiled);
    instrumentCollection(compiled, known);
  });
}

function instrument(schema: Schema, watcher: Watcher): void {
  const throwMode = watcher.options.mode === 'throw';

  // ---- Call time ----
  const readsToo = watcher.options.operations.has('read');
  const queryNames: QueryOp[] = readsToo ? [...QUERY_WRITE_NAMES, ...QUERY_READ_NAMES] : QUERY_WRITE_NAMES;
  for (const name of queryNames) {
    const wrapper: Wrapper = markWrapper(function (this: unknown, ...args: unknown[]) {
      const query = this as QueryLike;
      // The first call is the application's; Mongoose calls the method again on the same query from
      // its own middleware (`doc.updateOne()` does, in a pre hook), where no application frame is left.
      if (!queryCaptures.has(query) && watcher.watches(query.model?.modelName, query.model?.baseModelName)) {
        const store = entryContext.getStore();
        queryCaptures.set(query, store?.watcher === watcher ? store.capture : watcher.capture(wrapper));
      }
      return inherited(this as object, name).apply(this, args);
    });
    (schema.query as Record<string, unknown>)[name] = wrapper;
  }

  for (const name of SAVE_METHODS) {
    const wrapper: Wrapper = markWrapper(function (this: unknown, ...args: unknown[]) {
      const doc = this as DocumentLike;
      if (doc.$isSubdocument !== true && watcher.watches(doc.constructor.modelName, doc.constructor.baseModelName)) {
        const store = entryContext.getStore();
        const capture = store?.watcher === watcher ? store.capture : watcher.capture(wrapper);
        saveCaptures.set(doc, { capture, kind: doc.isNew === false ? 'update' : 'create' });
      }
      return inherited(this as object, name).apply(this, args);
    });
    schema.method(name, wrapper, { suppressWarning: true });
  }

  for (const name of ENTRY_STATICS) {
    const wrapper: Wrapper = markWrapper(function (this: unknown, ...args: unknown[]) {
      const model = this as ModelLike;
      const original = inherited(this as object, name);
      if (!watcher.watches(model.modelName, model.baseModelName)) return original.apply(this, args);
      const store: EntryStore = { watcher, capture: watcher.capture(wrapper) };
      if (name === 'bulkWrite') store.bulkKind = bulkKindOf(args[0]);
      return entryContext.run(store, () => original.apply(this, args));
    });
    schema.static(name, wrapper);
  }

  // ---- Completion (and refusal in throw mode) ----
  const queryEvent = (query: QueryLike & { op?: string }, result: unknown): WriteEvent | undefined => {
    const operation = query.op as QueryOp | undefined;
    const model = query.model;
    if (!operation || !(operation in QUERY_OPS) || !model || !watcher.watches(model.modelName, model.baseModelName)) return undefined;
    return {
      model: model.modelName ?? '<unknown>',
      operation,
      kind: QUERY_OPS[operation]!,
      capture: queryCaptures.get(query),
      ids: () => queryIds(operation, query, result),
      outcome: () => queryOutcome(operation, result),
    };
  };
  const saveEvent = (doc: DocumentLike): WriteEvent | undefined => {
    if (doc.$isSubdocument === true || !watcher.watches(doc.constructor.modelName, doc.constructor.baseModelName)) return undefined;
    const seen = saveCaptures.get(doc);
    return {
      model: doc.constructor.modelName ?? '<unknown>',
      operation: 'save',
      kind: seen?.kind ?? (doc.isNew === false ? 'update' : 'create'),
      capture: seen?.capture,
      ids: () => [doc._id],
      outcome: () => ({}),
    };
  };
  const modelEvent = (model: ModelLike, operation: 'insertMany' | 'bulkWrite', result: unknown): WriteEvent | undefined => {
    if (!watcher.watches(model.modelName, model.baseModelName)) return undefined;
    const store = entryContext.getStore();
    const capture = store?.watcher === watcher ? store.capture : undefined;
    if (operation === 'insertMany') {
      const docs = Array.isArray(result) ? (result as unknown[]) : [];
      return {
        model: model.modelName ?? '<unknown>', operation, kind: 'create', capture,
        ids: () => docs.map((doc) => (isObject(doc) ? doc._id : undefined)),
        outcome: () => ({ inserted: docs.length }),
      };
    }
    return {
      model: model.modelName ?? '<unknown>', operation, kind: store?.bulkKind ?? 'update', capture,
      ids: () => resultIds(result, false),
      outcome: () => resultCounts(result),
    };
  };

  const onQueryDone = function postQueryWrite(this: unknown, result: unknown): void {
    const event = queryEvent(this as QueryLike, result);
    if (event) watcher.completed(event, onQueryDone);
  };
  const onSaveDone = function postSave(this: unknown): void {
    const event = saveEvent(this as DocumentLike);
    saveCaptures.delete(this as object);
    if (event) watcher.completed(event, onSaveDone);
  };
  const onInsertManyDone = function postInsertMany(this: unknown, docs: unknown): void {
    const event = modelEvent(this as ModelLike, 'insertMany', docs);
    if (event) watcher.completed(event, onInsertManyDone);
  };
  const onBulkWriteDone = function postBulkWrite(this: unknown, result: unknown): void {
    const event = modelEvent(this as ModelLike, 'bulkWrite', result);
    if (event) watcher.completed(event, onBulkWriteDone);
  };

  instrumentation.set(schema, { postQuery: onQueryDone, postSave: onSaveDone, postInsertMany: onInsertManyDone, postBulkWrite: onBulkWriteDone });
  schema.post(queryNames, { document: false, query: true }, onQueryDone);
  if (readsToo) instrumentAggregate(schema, watcher);
  schema.post('save', onSaveDone);
  schema.post('insertMany', onInsertManyDone);
  schema.post('bulkWrite', onBulkWriteDone);

  if (throwMode) {
    const refuse = (event: WriteEvent | undefined, hook: Function): void => {
      const error = event && watcher.refusal(event, hook);
      if (error) throw error;
    };
    const preQuery = function refuseQueryWrite(this: unknown): void { refuse(queryEvent(this as QueryLike, undefined), preQuery); };
    const preSave = function refuseSave(this: unknown): void { refuse(saveEvent(this as DocumentLike), preSave); };
    const preInsertMany = function refuseInsertMany(this: unknown): void { refuse(modelEvent(this as ModelLike, 'insertMany', undefined), preInsertMany); };
    const preBulkWrite = function refuseBulkWrite(this: unknown): void { refuse(modelEvent(this as ModelLike, 'bulkWrite', undefined), preBulkWrite); };
    schema.pre(QUERY_WRITE_NAMES, { document: false, query: true }, preQuery);
    schema.pre('save', preSave);
    schema.pre('insertMany', preInsertMany);
    schema.pre('bulkWrite', preBulkWrite);
  }
}
