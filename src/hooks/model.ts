/**
 * Where a watched model's own writes are seen: when Mongoose compiles it, its write entry points are
 * wrapped as own, non-enumerable properties of its prototype, its Query prototype (query.ts) and the
 * model itself, and its collection's methods in place (collection.ts), so `Model.collection`,
 * `doc.collection` and `connection.collections[name]` stay one object that the app's spies see.
 * Routes that do not go through the model are wrapped once where they are shared, each paying a
 * cheap test for what it does not watch: the base Query class (queries built by hand), the driver's
 * collection and client (driver.ts, client-bulk-write.ts), Mongoose's `connection.bulkWrite`.
 *
 * Each wrapper captures the call site synchronously, then observes the outcome on the promise the
 * entry point returns (settle.ts): same value, same error, same unhandled-rejection behaviour.
 */
import { learnMongooseFrom, toFilePath } from '../attribution/approval.js';
import { readCallSites } from '../attribution/call-site.js';
import type { Capture, WriteEvent, WriteJudge, WriteKind, WriteOutcome } from '../types.js';
import { watchAggregates } from './aggregate.js';
import { watchClientBulkWrite, watchConnectionBulkWrite } from './client-bulk-write.js';
import { collectionOwner, instrumentCollection } from './collection.js';
import { watchWholeCollectionWrites } from './destructive.js';
import { watchDriverCollection } from './driver.js';
import { markMongooseOwnWrites } from './mongoose-own-writes.js';
import { buildingWithVerdict, instrumentQueries, offerStaticVerdict, withdrawStaticVerdict } from './query.js';
import { whenSettled } from './settle.js';
import { type AnyFunction, defineWrapper, INSTRUMENTED, inherited, isOurWrapper, ownMethod, wrapInPlace } from './wrap.js';
import { bulkKindOf, type ConnectionLike, isObject, resultCounts, resultIds } from './write-shapes.js';
export const ENTRY_STATICS = ['create', 'insertOne', 'insertMany', 'bulkWrite', 'bulkSave'] as const;
type EntryStatic = (typeof ENTRY_STATICS)[number];

// Mongoose's `create`/`insertOne` call `doc.$save()` synchronously inside the call we wrapped: that
// save belongs to the entry already captured, and needs no second stack read.
let entryDepth = 0;

// ---- The shapes Mongoose hands us, read defensively (no `any` at the boundary). ----

export interface ModelLike {
  modelName?: string;
  baseModelName?: string;
  discriminators?: Record<string, unknown>;
  prototype?: object;
  Query?: { prototype?: object };
}
interface DocumentLike {
  _id?: unknown;
  $isSubdocument?: boolean;
  isNew?: boolean;
  constructor: ModelLike;
}

/** Documents in what `create`/`insertOne`/`insertMany` resolve with (errors left out). */
function documentsOf(result: unknown): Array<Record<string, unknown>> {
  const all = Array.isArray(result) ? (result as unknown[]) : [result];
  return all.filter((doc): doc is Record<string, unknown> => isObject(doc) && !(doc instanceof Error) && doc._id !== undefined);
}

/** Ids and counts of an entry point's result (`landed` false: nothing is known to have been written). */
function entryResult(name: EntryStatic, result: unknown): { ids: unknown[]; outcome: WriteOutcome; landed: boolean } {
  if (
    name === 'bulkWrite' ||
    name === 'bulkSave' ||
    (name === 'insertMany' && isObject(result) && !Array.isArray(result) && 'insertedCount' in result)
  ) {
    const outcome = resultCounts(result);
    return { ids: resultIds(result, false), outcome, landed: Object.values(outcome).some((n) => n > 0) };
  }
  const docs = documentsOf(result);
  return { ids: docs.map((doc) => doc._id), outcome: { inserted: docs.length }, landed: docs.length > 0 };
}

/**
 * What a batch that failed part-way still wrote, from the error: Mongoose's `insertedDocs` (mongoose 8.24
 * and 9.12 lib/model.js, `insertMany`), the driver's `result` (mongodb 6 and 7, `MongoBulkWriteError`).
 */
function partialResult(name: EntryStatic, error: unknown): { ids: unknown[]; outcome: WriteOutcome; landed: boolean } | undefined {
  if (!isObject(error)) return undefined;
  if (name === 'insertMany' && Array.isArray(error.insertedDocs)) return entryResult('insertMany', error.insertedDocs);
  if ((name === 'insertMany' || name === 'bulkWrite' || name === 'bulkSave') && isObject(error.result)) {
    const partial = entryResult('bulkWrite', error.result);
    return partial.landed ? partial : undefined;
  }
  return undefined;
}

/** Mongoose emits `init` from its own `Model.init`: the first file on that stack past Node's is Mongoose's. */
function learnMongoose(listener: Function): void {
  const file = readCallSites(8, listener)
    ?.map((site) => site.getFileName())
    .find((name) => name && !name.startsWith('node:'));
  if (file) learnMongooseFrom(toFilePath(file));
}

/** Mongoose compiled a model from a watched schema (its `init` event, emitted by `listener`). */
export function instrumentCompiledModel(model: ModelLike, judge: WriteJudge, listener: Function): void {
  learnMongoose(listener);
  instrumentModel(model, judge);
}

/** Wraps one compiled model's entry points (idempotent: Mongoose emits `init` again on reconnect). */
function instrumentModel(model: ModelLike, judge: WriteJudge): void {
  const target = model as ModelLike & Record<symbol, unknown> & { collection?: unknown };
  const collectionName = (target.collection as { collectionName?: string } | undefined)?.collectionName;
  if (target[INSTRUMENTED] || !judge.watchesModel(model.modelName, model.baseModelName, collectionName)) return;
  Object.defineProperty(target, INSTRUMENTED, { value: judge });
  judge.modelCompiled(model as object & ModelLike);
  const reads = judge.operations.has('read');
  instrumentQueries(model, judge);
  if (reads) instrumentAggregate(model, judge);
  instrumentStatics(model, judge);
  instrumentQueryStatics(model, judge);
  // A discriminator's prototype inherits from its base model's: the base's save wrapper serves both.
  if (!isOurWrapper((model.prototype as Record<string, unknown> | undefined)?.$save)) instrumentSave(model, judge);
  instrumentCollection(target, judge);
  markMongooseOwnWrites(model, reads);
  const { base, db } = model as { base?: { mongo?: unknown; Model?: unknown }; db?: ConnectionLike };
  instrumentBaseSave(base?.Model);
  watchAggregates(base);
  watchWholeCollectionWrites(base?.mongo);
  if (collectionName)
    judge.driverRoute(
      collectionName,
      'driverCalls',
      watchDriverCollection(base?.mongo, collectionName, db, model.modelName ?? '<unknown>', judge),
    );
  watchClientBulkWrite(base?.mongo);
  watchConnectionBulkWrite(db);
  if (db) watchSharedCollection(db, target.collection);
  // Discriminators are compiled from a merged copy of the schema, which has no `init` listener of ours.
  for (const child of Object.values(model.discriminators ?? {})) instrumentModel(child as ModelLike, judge);
  const discriminator = (model as { discriminator?: unknown }).discriminator;
  if (typeof discriminator === 'function' && !isOurWrapper(discriminator)) {
    defineWrapper(model, 'discriminator', function discriminator(this: unknown, ...args: unknown[]) {
      const child = inherited(Object.getPrototypeOf(model) as object, 'discriminator').apply(this, args);
      if (typeof child === 'function') instrumentModel(child as ModelLike, judge);
      return child;
    });
  }
}

/** Collection objects of watched models whose connection's other models were looked at. */
const scannedCollections = new WeakSet<object>();
const connectionsListened = new WeakSet<object>();

/**
 * Every model Mongoose compiles onto one collection name of a connection shares one collection
 * object, and Mongoose's writes through it pass as the watched model's own. So a second model on
 * the watched collection (`conn.model('LegacyToken', legacySchema, 'accesstokens')`), compiled
 * before or after, is watched too: its writes are tokens written.
 */
function watchSharedCollection(connection: ConnectionLike, collection: unknown): void {
  if (!isObject(collection) || scannedCollections.has(collection)) return;
  scannedCollections.add(collection);
  for (const other of Object.values(connection.models ?? {})) watchSibling(other as ModelLike);
  if (connectionsListened.has(connection) || typeof connection.on !== 'function') return;
  connectionsListened.add(connection);
  // Mongoose emits `model` on the connection for every model it compiles there.
  connection.on('model', watchSibling);
}

/** A model that writes through the collection object of a watched model is watched by the same registration. */
function watchSibling(model: ModelLike): void {
  const collection = (model as { collection?: unknown } | undefined)?.collection;
  // Its registration is the one that wrapped the collection object (collection.ts).
  const judge = collectionOwner(collection)?.judge;
  if (!judge || (model as Record<symbol, unknown>)[INSTRUMENTED]) return;
  judge.watchSharingModel(model.modelName);
  instrumentModel(model, judge);
}

// `Model.aggregate()` builds an Aggregate synchronously and runs it later: capture on the call,
// whenSettled its `exec` through the Aggregate's own promise.
function instrumentAggregate(model: ModelLike, judge: WriteJudge): void {
  const parent = Object.getPrototypeOf(model) as object;
  const wrapper = function aggregate(this: ModelLike, ...args: unknown[]): unknown {
    const built = inherited(parent, 'aggregate').apply(this, args);
    if (!isObject(built) || typeof built.exec !== 'function' || !judge.watches(this.modelName, this.baseModelName)) return built;
    const capture = judge.capture(wrapper);
    const name = this.modelName ?? '<unknown>';
    const exec = built.exec as AnyFunction;
    Object.defineProperty(built, 'exec', {
      configurable: true,
      writable: true,
      enumerable: false,
      value: function (this: unknown, ...execArgs: unknown[]) {
        return whenSettled(exec.apply(this, execArgs), () =>
          judge.completed({ model: name, operation: 'aggregate', kind: 'read', capture, ids: () => [], outcome: () => ({}) }, wrapper),
        );
      },
    });
    return built;
  };
  defineWrapper(model, 'aggregate', wrapper);
}

// Set while a watched model's own save wrapper runs Mongoose's save synchronously: the base
// `Model.prototype.$save` wrapper (below) then leaves the save to it.
let modelSaveDepth = 0;

function runSave(original: AnyFunction, doc: DocumentLike, args: unknown[]): unknown {
  modelSaveDepth++;
  try {
    return original.apply(doc, args);
  } finally {
    modelSaveDepth--;
  }
}

/** Is this save one to judge (not a subdocument's, not one a wrapped `create` makes, of a watched model)? */
function judgesSave(doc: DocumentLike, judge: WriteJudge): boolean {
  const model = doc.constructor;
  return doc.$isSubdocument !== true && entryDepth === 0 && judge.watches(model.modelName, model.baseModelName);
}

/**
 * A save of a watched document, judged where `entry` was called (`capture`, read by the wrapper itself:
 * each frame between it and the read costs): refused in throw mode, else reported when it settles.
 * `capture` undefined: Mongoose is the caller (`Model.create([...], { ordered: true })` saves after an await).
 */
function judgedSave(
  doc: DocumentLike,
  judge: WriteJudge,
  original: AnyFunction,
  args: unknown[],
  entry: Function,
  capture: Capture | undefined,
): unknown {
  if (capture === undefined) return runSave(original, doc, args);
  const model = doc.constructor;
  const kind: WriteKind = doc.isNew === false ? 'update' : 'create';
  const event = (): WriteEvent => ({
    model: model.modelName ?? '<unknown>',
    operation: 'save',
    kind,
    capture,
    ids: () => [doc._id],
    outcome: () => ({}),
  });
  if (judge.refusesRogueWrites) {
    const refusal = judge.refusal(event(), entry);
    if (refusal) return Promise.reject(refusal);
  }
  return whenSettled(runSave(original, doc, args), () => judge.completed(event(), entry));
}

const baseSavesWrapped = new WeakSet<object>();

/**
 * `mongoose.Model.prototype.save.call(doc)` (or `$save`, `.apply`) skips the watched model's own
 * prototype. Mongoose's base `Model.prototype.save` and `$save` (one function: mongoose 8 and 9
 * lib/model.js) are wrapped in place, once per Mongoose package, with Mongoose's name, arity and
 * property attributes. What every other save pays is one symbol lookup on the document's model.
 * Not marked as our wrapper: the model wrappers' `inherited()` lookups reach Mongoose's save through it.
 */
function instrumentBaseSave(BaseModel: unknown): void {
  const proto = typeof BaseModel === 'function' ? (BaseModel as { prototype?: unknown }).prototype : undefined;
  if (!isObject(proto) || baseSavesWrapped.has(proto)) return;
  baseSavesWrapped.add(proto);
  // `$save` and `save` are one function: one wrapper serves both names.
  const wrappers = new Map<AnyFunction, Function>();
  for (const name of ['$save', 'save']) {
    wrapInPlace(proto, name, (original) => {
      let wrapper = wrappers.get(original);
      if (!wrapper) {
        const made = function (this: DocumentLike, ...args: unknown[]): unknown {
          const judge = modelSaveDepth > 0 || !isObject(this) ? undefined : watchedBy(this.constructor);
          if (judge === undefined) return original.apply(this, args);
          if (!judgesSave(this, judge)) return runSave(original, this, args);
          return judgedSave(this, judge, original, args, made, judge.captureUnlessMongoose(made));
        };
        wrappers.set(original, (wrapper = made));
      }
      return wrapper;
    });
  }
}

/** The registration watching a compiled model (set by `instrumentModel`). */
function watchedBy(model: unknown): WriteJudge | undefined {
  return typeof model === 'function' ? ((model as unknown as Record<symbol, unknown>)[INSTRUMENTED] as WriteJudge | undefined) : undefined;
}

function instrumentSave(model: ModelLike, judge: WriteJudge): void {
  const proto = model.prototype;
  if (!proto) return;
  const parent = Object.getPrototypeOf(proto) as object;
  const wrapper = function save(this: DocumentLike, ...args: unknown[]): unknown {
    const original = inherited(parent, '$save');
    if (!judgesSave(this, judge)) return runSave(original, this, args);
    return judgedSave(this, judge, original, args, wrapper, judge.captureUnlessMongoose(wrapper));
  };
  // One function for both names, as in Mongoose (`doc.$save === doc.save`). A schema path named
  // `save` owns that name (Mongoose's gh-9010 option): then only `$save` is wrapped.
  defineWrapper(proto, '$save', wrapper);
  const path = (model as { schema?: { path?(name: string): unknown } }).schema?.path?.('save');
  if (path === undefined || path === null) defineWrapper(proto, 'save', wrapper);
}

/**
 * Statics that build one write query and call its method (mongoose 8.24 and 9.12 lib/model.js:
 * `_update`, `deleteOne`, `deleteMany`, `findOneAnd*`, `findByIdAnd*` build `new this.Query(...)` and
 * return `mq[op](...)` synchronously). Their verdict is read above them and handed to that query.
 */
const QUERY_STATICS = [
  'updateOne',
  'updateMany',
  'replaceOne',
  'deleteOne',
  'deleteMany',
  'findOneAndUpdate',
  'findOneAndReplace',
  'findOneAndDelete',
  'findByIdAndUpdate',
  'findByIdAndDelete',
] as const;

function instrumentQueryStatics(model: ModelLike, judge: WriteJudge): void {
  const parent = Object.getPrototypeOf(model) as object;
  for (const name of QUERY_STATICS) {
    if (typeof (model as Record<string, unknown>)[name] !== 'function') continue;
    // A schema static of that name (mongoose's gh-7698) is the app's code: left as it is, so that the
    // query it builds is judged by the query's own method, where that static is the innermost app frame.
    if (ownMethod(model, name)) continue;
    const wrapper = function (this: ModelLike, ...args: unknown[]): unknown {
      const original = inherited(parent, name);
      if (buildingWithVerdict() || !judge.watches(this.modelName, this.baseModelName)) return original.apply(this, args);
      offerStaticVerdict(this, judge.capture(wrapper));
      try {
        return original.apply(this, args);
      } finally {
        withdrawStaticVerdict();
      }
    };
    defineWrapper(model, name, wrapper);
  }
}

function instrumentStatics(model: ModelLike, judge: WriteJudge): void {
  const parent = Object.getPrototypeOf(model) as object;
  const throwMode = judge.refusesRogueWrites;
  for (const name of ENTRY_STATICS) {
    if (typeof (model as Record<string, unknown>)[name] !== 'function') continue; // bulkSave/insertOne are newer than some 8.x
    // A schema static of that name is the app's code and must still run: the wrapper calls it (its
    // caller decides, as for Mongoose's own: docs/attribution.md, limits).
    const own = ownMethod(model, name);
    const wrapper = function (this: ModelLike, ...args: unknown[]): unknown {
      const original = own ?? inherited(parent, name);
      if (entryDepth > 0 || !judge.watches(this.modelName, this.baseModelName)) return original.apply(this, args);
      // `bulkSave` calls `bulkWrite` after an await: Mongoose is the caller, the outer call reports.
      const capture = judge.captureUnlessMongoose(wrapper);
      if (capture === undefined) return original.apply(this, args);
      const model = this.modelName ?? '<unknown>';
      const kind = entryKind(name, args[0]);
      const event = (found: { ids: unknown[]; outcome: WriteOutcome } | undefined): WriteEvent => ({
        model,
        operation: name,
        kind,
        capture,
        ids: () => found?.ids ?? [],
        outcome: () => found?.outcome ?? {},
      });
      if (throwMode) {
        const refusal = judge.refusal(event(undefined), wrapper);
        if (refusal) return Promise.reject(refusal);
      }
      let result: unknown;
      entryDepth++;
      try {
        result = original.apply(this, args);
      } finally {
        entryDepth--;
      }
      return whenSettled(
        result,
        (value) => judge.completed(event(entryResult(name, value)), wrapper),
        (error) => {
          const partial = partialResult(name, error);
          if (partial) judge.completed(event(partial), wrapper);
        },
      );
    };
    defineWrapper(model, name, wrapper);
  }
}

function entryKind(name: EntryStatic, first: unknown): WriteKind {
  if (name === 'bulkWrite') return bulkKindOf(first);
  if (name === 'bulkSave') {
    const docs = Array.isArray(first) ? (first as unknown[]) : [];
    return docs.some((doc) => isObject(doc) && doc.isNew === false) ? 'update' : 'create';
  }
  return 'create';
}
