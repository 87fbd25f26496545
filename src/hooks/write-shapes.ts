/**
 * The shapes Mongoose and the driver hand back, read defensively (no `any` at the boundary), for
 * both the entry points (model.ts, query.ts) and the raw collection path (collection.ts). Only `_id`s and
 * counts are read: never a field, filter or update value.
 */
import type { WriteKind, WriteOutcome } from '../types.js';

/** A Mongoose connection, read defensively: only what the hooks use of it. */
export interface ConnectionLike {
  name?: string;
  models?: Record<string, unknown>;
  getClient?(): unknown;
  on?(event: string, listener: (model: never) => void): unknown;
  once?(event: string, listener: () => void): unknown;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object';
}

function isPlainObject(value: object): boolean {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** The `_id` a filter pins, when it pins exactly one (`doc.updateOne()`, `findByIdAnd*`). */
export function filterId(filter: unknown): unknown[] {
  const id = isObject(filter) ? filter._id : undefined;
  if (id === undefined || id === null) return [];
  // { $in: [...] } is not one id. Only a plain object is an operator object: Mongoose 8's UUID Buffer
  // has an enumerable `$toObject` of its own, and is one id.
  if (isObject(id) && isPlainObject(id) && Object.keys(id).some((key) => key.startsWith('$'))) return [];
  return [id];
}

/** A `findOneAnd*` result: the document, or the `{ value, ok }` metadata form. */
export function foundDocument(result: unknown): unknown {
  return isObject(result) && 'value' in result && 'ok' in result ? result.value : result;
}

/** Ids a write result names: inserted, upserted, the document a `findOneAnd*` touched. */
export function resultIds(result: unknown, findOneAnd: boolean): unknown[] {
  const ids: unknown[] = [];
  if (findOneAnd) {
    const doc = foundDocument(result);
    if (isObject(doc) && doc._id !== undefined) ids.push(doc._id);
    return ids;
  }
  if (!isObject(result)) return ids;
  if (result.insertedId !== undefined && result.insertedId !== null) ids.push(result.insertedId);
  if (result.upsertedId !== undefined && result.upsertedId !== null) ids.push(result.upsertedId);
  for (const key of ['insertedIds', 'upsertedIds'] as const) {
    const map = result[key];
    if (isObject(map)) ids.push(...Object.values(map));
  }
  return ids;
}

/** Counts a write result reports (`insertedCount`, `matchedCount`, ...), those present only. */
export function resultCounts(result: unknown): WriteOutcome {
  const outcome: WriteOutcome = {};
  if (!isObject(result)) return outcome;
  const fields = {
    inserted: 'insertedCount',
    matched: 'matchedCount',
    modified: 'modifiedCount',
    deleted: 'deletedCount',
    upserted: 'upsertedCount',
  } as const;
  for (const [key, field] of Object.entries(fields) as Array<[keyof WriteOutcome, string]>) {
    if (typeof result[field] === 'number') outcome[key] = result[field];
  }
  return outcome;
}

/**
 * What a batch that failed part-way still wrote, if anything: the driver's error carries it as
 * `result` (a collection's bulk write) or `partialResult` (a client bulk write).
 */
export function landedInPart(error: unknown): Record<string, unknown> | undefined {
  const partial = !isObject(error)
    ? undefined
    : isObject(error.result)
      ? error.result
      : isObject(error.partialResult)
        ? error.partialResult
        : undefined;
  return partial && Object.values(resultCounts(partial)).some((n) => n > 0) ? partial : undefined;
}

/** `bulkWrite` mixes kinds: it is reported once, as the most destructive kind it contains. */
export function bulkKindOf(ops: unknown): WriteKind {
  if (!Array.isArray(ops)) return 'update';
  let kind: WriteKind = 'create';
  for (const op of ops) {
    if (!isObject(op)) continue;
    if ('deleteOne' in op || 'deleteMany' in op) return 'delete';
    if ('updateOne' in op || 'updateMany' in op || 'replaceOne' in op) kind = 'update';
  }
  return kind;
}

/** Where an aggregation pipeline's final stage writes: `$out` or `$merge`, and into which namespace. */
export interface WriteStage {
  stage: '$out' | '$merge';
  /** The stage object itself (the same object the driver puts in the command). */
  object: Record<string, unknown>;
  db: string | undefined;
  collection: string;
}

/** `'name'` or `{ db, coll }` (`$out`), `{ into: 'name' | { db, coll } }` or `'name'` (`$merge`). */
function stageNamespace(value: unknown, db: string | undefined): { db: string | undefined; collection: string } | undefined {
  if (typeof value === 'string') return value === '' ? undefined : { db, collection: value };
  if (!isObject(value) || typeof value.coll !== 'string') return undefined;
  return { db: typeof value.db === 'string' ? value.db : db, collection: value.coll };
}

/**
 * The final `$out`/`$merge` stage of a pipeline (only a final one writes: the server refuses it
 * elsewhere), with the collection it writes to; `db` is the database the pipeline runs in.
 */
export function writeStageOf(pipeline: unknown, db: string | undefined): WriteStage | undefined {
  if (!Array.isArray(pipeline) || pipeline.length === 0) return undefined;
  const last: unknown = pipeline[pipeline.length - 1];
  if (!isObject(last)) return undefined;
  if ('$out' in last) {
    const target = stageNamespace(last.$out, db);
    return target && { stage: '$out', object: last, ...target };
  }
  if ('$merge' in last) {
    const spec = last.$merge;
    const target = stageNamespace(isObject(spec) ? spec.into : spec, db);
    return target && { stage: '$merge', object: last, ...target };
  }
  return undefined;
}
