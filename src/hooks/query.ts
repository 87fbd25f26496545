/**
 * Queries: a watched model's queries are judged where the app calls a query-building method (the
 * call that names the write: `Model.updateOne(...)`, `query.deleteMany()`), and known to have
 * happened when `exec` settles.
 *
 * A query can also be built by hand from Mongoose's base class on a watched collection
 * (`new mongoose.Query(filter, {}, Model, Model.collection).updateMany(...)`): it runs none of the
 * model's middleware and Mongoose makes its write through the watched collection object, where it
 * passes as Mongoose's own. So the base class's building methods and `exec` are wrapped too, once
 * per Mongoose package. Every query of every model goes through them: what they add to a query
 * that is not such a one is a property read and a WeakMap lookup (its collection object is not
 * watched), plus an `instanceof` for a watched model's own queries, which its wrappers judge.
 */

import type { Capture, WriteEvent, WriteJudge, WriteKind, WriteOperation, WriteOutcome } from '../types.js';
import { type CollectionOwner, collectionOwner } from './collection.js';
import { whenSettled } from './settle.js';
import { type AnyFunction, defineWrapper, INSTRUMENTED, inherited, wrapInPlace } from './wrap.js';
import { filterId, foundDocument, isObject, resultCounts, resultIds } from './write-shapes.js';

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
const QUERY_OPS: Readonly<Record<string, WriteKind>> = { ...QUERY_WRITES, ...QUERY_READS };
type QueryOp = keyof typeof QUERY_WRITES | keyof typeof QUERY_READS;
export const QUERY_WRITE_NAMES = Object.keys(QUERY_WRITES) as Array<keyof typeof QUERY_WRITES>;
const QUERY_READ_NAMES = Object.keys(QUERY_READS) as Array<keyof typeof QUERY_READS>;

export interface ModelLike {
  modelName?: string;
  baseModelName?: string;
  Query?: { prototype?: object };
}
interface QueryLike {
  op?: string;
  model?: ModelLike;
  mongooseCollection?: unknown;
  getFilter?(): Record<string, unknown>;
}

/**
 * Each query's verdict, taken when the app called the method that built it. The query built last
 * keeps its verdict in a slot until it settles (then it is dropped) or another query is judged (then
 * it moves to the WeakMap): writes awaited one after another never touch the WeakMap, whose insert
 * measured the largest part of what the plugin's JavaScript adds to an approved write. The slot holds
 * at most one query: one that failed or was never run, until the next query is judged.
 */
const queryCaptures = new WeakMap<object, Capture>();
let lastQuery: object | undefined;
let lastCapture: Capture | undefined;

function setVerdict(query: object, capture: Capture): void {
  if (lastQuery !== query && lastQuery !== undefined) queryCaptures.set(lastQuery, lastCapture!);
  lastQuery = query;
  lastCapture = capture;
}

function verdictOf(query: object): Capture | undefined {
  return query === lastQuery ? lastCapture : queryCaptures.get(query);
}

function hasVerdict(query: object): boolean {
  return query === lastQuery || queryCaptures.has(query);
}

/** A query settled: its verdict is not asked for again (Mongoose rejects running a query twice). */
function settled(query: object): void {
  if (query === lastQuery) lastQuery = lastCapture = undefined;
}

/**
 * A verdict taken by a watched model's static that builds a write query (`Model.updateOne(...)`), for
 * the query it builds. Read above the static, the stack starts at the app's frame, not at Mongoose's
 * `Model.updateOne` and `_update` above the query's own method: each frame read costs. Set only while
 * the static runs, synchronously; the first building call of a query of that model takes it.
 */
let staticModel: object | undefined;
let staticCapture: Capture | undefined;

/** Offers a query-building static's verdict to the query it is about to build (see above); withdrawn when the static returns. */
export function offerStaticVerdict(model: object, capture: Capture): void {
  staticModel = model;
  staticCapture = capture;
}

export function withdrawStaticVerdict(): void {
  staticModel = undefined;
  staticCapture = undefined;
}

/** True while a static's verdict waits for its query: a static it calls (findByIdAndUpdate's findOneAndUpdate) takes none. */
export function buildingWithVerdict(): boolean {
  return staticModel !== undefined;
}

/** The verdict of the static building this query of `model`, taken once; undefined: read the stack. */
function takeStaticVerdict(model: unknown): Capture | undefined {
  if (staticModel === undefined || staticModel !== model) return undefined;
  const capture = staticCapture;
  withdrawStaticVerdict();
  return capture;
}

function queryOutcome(operation: string, result: unknown): WriteOutcome {
  if (QUERY_OPS[operation] === 'read') return {};
  if (operation.startsWith('findOneAnd')) {
    const found = foundDocument(result) ? 1 : 0;
    return operation === 'findOneAndDelete' ? { deleted: found } : { matched: found };
  }
  return resultCounts(result);
}

function queryIds(operation: string, query: QueryLike, result: unknown): unknown[] {
  const ids = filterId(typeof query.getFilter === 'function' ? query.getFilter() : undefined);
  if (QUERY_OPS[operation] === 'read') return ids;
  return [...ids, ...resultIds(result, operation.startsWith('findOneAnd'))];
}

/**
 * Keeps the verdict on a query judged where the app called one of its building methods (the wrapper
 * reads the stack itself: each frame between it and the read costs). Each application call judges
 * the query anew (rogue code may reuse a query approved code built). Mongoose calls the method
 * again on the same query from its own middleware (`doc.updateOne()` does, in a pre hook), where no
 * application frame is left: that keeps the verdict.
 */
function keepVerdict(query: object, capture: Capture): void {
  if (!(capture.approved === false && capture.undecided && hasVerdict(query))) setVerdict(query, capture);
}

/**
 * Mongoose's Query constructor calls `this.find(conditions)` on itself before it sets
 * `$useProjection` (mongoose 8.24 and 9.12 lib/query.js, `function Query`): every query a model
 * builds passes there first, and the building call that follows (`Model.find()`'s `mq.find()`,
 * `Model.updateOne()`'s `mq.updateOne()`) is where the app is judged. Not judging that first call saves a stack read per query with reads
 * watched; a query built with `new Model.Query(filter)` alone is judged where it is run.
 */
function underConstruction(query: QueryLike): boolean {
  return (query as { $useProjection?: unknown }).$useProjection === undefined;
}

/** Runs a watched query's `exec`: refused in throw mode, else reported when it settles. */
function execWatched(
  query: QueryLike,
  args: unknown[],
  original: AnyFunction,
  judge: WriteJudge,
  model: string,
  entry: Function,
  bypassedMiddleware: boolean,
): unknown {
  const operation = typeof args[0] === 'string' ? args[0] : query.op;
  const kind = operation === undefined ? undefined : QUERY_OPS[operation];
  if (kind === undefined || !judge.operations.has(kind)) return original.apply(query, args);
  const event = (result: unknown): WriteEvent => ({
    model,
    operation: operation as WriteOperation,
    kind,
    capture: verdictOf(query),
    ...(bypassedMiddleware ? { bypassedMiddleware: true } : {}),
    ids: () => queryIds(operation!, query, result),
    outcome: () => queryOutcome(operation!, result),
  });
  if (judge.refusesRogueWrites && kind !== 'read') {
    const refusal = judge.refusal(event(undefined), entry);
    if (refusal) return Promise.reject(refusal);
  }
  return whenSettled(original.apply(query, args), (result) => {
    const completed = event(result);
    settled(query);
    judge.completed(completed, entry);
  });
}

/** Wraps a watched model's Query prototype: its building methods, `clone` and `exec`. */
export function instrumentQueries(model: ModelLike, judge: WriteJudge): void {
  const proto = model.Query?.prototype;
  if (!proto) return;
  const parent = Object.getPrototypeOf(proto) as object;
  const readsToo = judge.operations.has('read');
  const names: QueryOp[] = readsToo ? [...QUERY_WRITE_NAMES, ...QUERY_READ_NAMES] : QUERY_WRITE_NAMES;
  for (const name of names) {
    const wrapper = function (this: QueryLike, ...args: unknown[]): unknown {
      if (!(name === 'find' && underConstruction(this)) && judge.watches(this.model?.modelName, this.model?.baseModelName))
        keepVerdict(this, takeStaticVerdict(this.model) ?? judge.capture(wrapper));
      return inherited(parent, name).apply(this, args);
    };
    defineWrapper(proto, name, wrapper);
  }

  // `query.clone()` builds a query without any builder call: the clone is judged where it is made.
  const clone = function clone(this: QueryLike, ...args: unknown[]): unknown {
    const copy = inherited(parent, 'clone').apply(this, args);
    if (isObject(copy) && judge.watches(this.model?.modelName, this.model?.baseModelName)) setVerdict(copy, judge.capture(clone));
    return copy;
  };
  defineWrapper(proto, 'clone', clone);

  defineWrapper(proto, 'exec', function exec(this: QueryLike, ...args: unknown[]): unknown {
    const original = inherited(parent, 'exec');
    const model = this.model;
    if (!model || !judge.watches(model.modelName, model.baseModelName)) return original.apply(this, args);
    // Built with `new Model.Query(filter)` and no building call since: judged where it is run.
    if (!hasVerdict(this)) keepVerdict(this, judge.capture(exec));
    return execWatched(this, args, original, judge, model.modelName ?? '<unknown>', exec, false);
  });
  watchHandBuiltQueries(parent, names);
}

// ---- Queries built by hand on a watched collection ----

/** Base Query prototypes whose methods are wrapped, and which. */
const wrappedBase = new WeakMap<object, Set<string>>();

/**
 * The registration a query built by hand writes for: its collection object is a watched model's,
 * and it is not a query of a watched model (whose own wrappers judge it).
 */
function handBuiltTarget(query: QueryLike): CollectionOwner | undefined {
  const owner = collectionOwner(query.mongooseCollection);
  if (owner === undefined) return undefined;
  const model = query.model as (ModelLike & Record<symbol, unknown>) | undefined;
  const ModelQuery = model?.Query;
  if (model?.[INSTRUMENTED] !== undefined && typeof ModelQuery === 'function' && query instanceof ModelQuery) return undefined;
  return owner;
}

/**
 * Wraps the base Query's building methods, `clone` and `exec` in place: same name, arity and
 * property attributes as Mongoose defines them. Not marked as our wrappers, so a watched model's
 * own wrappers reach them as Mongoose's implementation, and they let its queries through.
 */
function watchHandBuiltQueries(base: object, names: readonly QueryOp[]): void {
  let wrapped = wrappedBase.get(base);
  if (!wrapped) wrappedBase.set(base, (wrapped = new Set()));
  for (const name of names) {
    wrapBase(base, wrapped, name, (original) => {
      const wrapper = function (this: QueryLike): unknown {
        const target = handBuiltTarget(this);
        if (target !== undefined) keepVerdict(this, target.judge.capture(wrapper));
        return Reflect.apply(original, this, arguments);
      };
      return wrapper;
    });
  }
  wrapBase(base, wrapped, 'clone', (original) => {
    const wrapper = function (this: QueryLike): unknown {
      const copy: unknown = Reflect.apply(original, this, arguments);
      const target = handBuiltTarget(this);
      if (target !== undefined && isObject(copy)) setVerdict(copy, target.judge.capture(wrapper));
      return copy;
    };
    return wrapper;
  });
  wrapBase(base, wrapped, 'exec', (original) => {
    const wrapper = function (this: QueryLike): unknown {
      const target = handBuiltTarget(this);
      if (target === undefined) return Reflect.apply(original, this, arguments);
      return execWatched(this, Array.prototype.slice.call(arguments) as unknown[], original, target.judge, target.model, wrapper, true);
    };
    return wrapper;
  });
}

function wrapBase(base: object, wrapped: Set<string>, name: string, make: (original: AnyFunction) => Function): void {
  if (!wrapped.has(name) && wrapInPlace(base, name, make)) wrapped.add(name);
}
