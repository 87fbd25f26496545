/**
 * Mongoose's own writes through a watched collection, told apart without reading the stack.
 *
 * `Model.updateOne()` ends in `Model.collection.updateOne()`, the same object (and wrapper) the app
 * can call directly. The entry point the app called has judged the write already, so the collection
 * wrapper must only tell "Mongoose, finishing a write it was asked for" from "the app". A stack read
 * answers that (collection.ts falls back to one), but costs a few microseconds per write. For the
 * common routes Mongoose leaves a mark no application code holds, set synchronously right before
 * its collection call:
 *
 * - a watched model's query runs its operation (`_updateOne`, `_findOneAndUpdate`...) and calls the
 *   collection in the same synchronous run, with its own `_conditions` object: while that run lasts,
 *   a call with that query's filter object is the query's;
 * - `save()` hands the document Mongoose built for the insert to `$__version(true, obj)`, and builds
 *   the filter of an update with `$__where()`, both during a save of that document: those objects,
 *   once each, are Mongoose's.
 *
 * A mark only ever skips the stack read; without one (a query with `runValidators`, whose operation
 * awaits first; `insertMany`, `bulkWrite`, whose arguments the app may hold) the collection wrapper
 * reads one frame, as before. Application code that runs inside such a window (a setter, a default)
 * does not hold the query's filter or the document Mongoose built, so its own collection calls are
 * still judged.
 *
 * Mongoose internals relied on, read in mongoose 8.24 and 9.12: lib/query.js (`Query#_updateOne` and
 * the other `_<operation>` methods, `_conditions`, `mongooseCollection`), lib/model.js
 * (`Model#$__version`, `Model#$__where`, `this.$__.saving` set around `$__handleSave`).
 */
import { defineWrapper, inherited, isOurWrapper } from './wrap.js';
import { isObject } from './write-shapes.js';

interface QueryInFlight {
  mongooseCollection?: unknown;
  _conditions?: unknown;
}

/** The watched model's query whose operation is running synchronously right now (innermost). */
let runningQuery: QueryInFlight | undefined;

/** Documents and filters Mongoose built for a save of a watched document, not yet handed to the collection. */
const builtForSave = new WeakSet<object>();

// Mongoose's query operations ("thunks", `opToThunk` in its query.js): each calls the collection once.
const QUERY_WRITE_OPERATIONS = [
  '_updateOne',
  '_updateMany',
  '_replaceOne',
  '_deleteOne',
  '_deleteMany',
  '_findOneAndUpdate',
  '_findOneAndReplace',
  '_findOneAndDelete',
];
// Only with reads watched: otherwise the collection's read methods are not wrapped, and nothing asks.
const QUERY_READ_OPERATIONS = ['_find', '_findOne', '_countDocuments', '__distinct'];

/** Is this call on `collection` Mongoose finishing a write of a watched model? Consumes a save's mark. */
export function markedAsMongoose(collection: object, method: string, args: readonly unknown[]): boolean {
  const filter = method === 'distinct' ? args[1] : args[0]; // distinct(field, filter)
  if (!isObject(filter)) return false;
  if (runningQuery !== undefined && runningQuery.mongooseCollection === collection && runningQuery._conditions === filter) return true;
  return builtForSave.delete(filter);
}

/** Sets the marks above on a watched model's Query and document prototypes (own properties, as its other wrappers). */
export function markMongooseOwnWrites(model: { Query?: { prototype?: object }; prototype?: object }, reads: boolean): void {
  const queryProto = model.Query?.prototype;
  if (queryProto) {
    const parent = Object.getPrototypeOf(queryProto) as object | null;
    for (const name of reads ? [...QUERY_WRITE_OPERATIONS, ...QUERY_READ_OPERATIONS] : QUERY_WRITE_OPERATIONS) {
      if (!hasMethod(parent, name, queryProto)) continue;
      defineWrapper(queryProto, name, function (this: QueryInFlight, ...args: unknown[]): unknown {
        const outer = runningQuery;
        runningQuery = this;
        try {
          return inherited(parent, name).apply(this, args);
        } finally {
          runningQuery = outer;
        }
      });
    }
  }
  const docProto = model.prototype;
  if (!docProto) return;
  const parent = Object.getPrototypeOf(docProto) as object | null;
  // `$__version(true, obj)`: `obj` is the document about to be inserted.
  if (hasMethod(parent, '$__version', docProto)) {
    defineWrapper(docProto, '$__version', function (this: SavingDocument, ...args: unknown[]): unknown {
      if (args[0] === true && saving(this) && isObject(args[1])) builtForSave.add(args[1]);
      return inherited(parent, '$__version').apply(this, args);
    });
  }
  // `$__where()`: the filter of the update (or the existence check) a save is about to send.
  if (hasMethod(parent, '$__where', docProto)) {
    defineWrapper(docProto, '$__where', function (this: SavingDocument, ...args: unknown[]): unknown {
      const where = inherited(parent, '$__where').apply(this, args);
      if (saving(this) && isObject(where)) builtForSave.add(where);
      return where;
    });
  }
}

interface SavingDocument {
  $__?: { saving?: unknown };
}

/** Mongoose sets `$__.saving` for the length of a document's save (its ParallelSaveError check). */
function saving(doc: SavingDocument): boolean {
  return isObject(doc.$__) && Boolean(doc.$__.saving);
}

/** Mongoose's method is there and not already ours (a discriminator's prototype inherits its base's). */
function hasMethod(start: object | null, name: string, target?: object): boolean {
  if (target && isOurWrapper((target as Record<string, unknown>)[name])) return false;
  try {
    return typeof inherited(start, name) === 'function';
  } catch {
    return false;
  }
}
