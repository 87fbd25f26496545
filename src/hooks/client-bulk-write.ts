/**
 * Client-level bulk writes: one command that writes to any collections of a client, through no
 * collection method. Two entry points make them:
 *   - `client.bulkWrite(models)` of the driver (6.10+, server 8.0+): each model names its
 *     `db.collection` (`namespace`);
 *   - Mongoose's `connection.bulkWrite(ops)` (8.9+): each op names its model, and Mongoose calls
 *     `client.bulkWrite` after its own awaits, where no frame of the app is left.
 * Each is judged where the app calls it, once, when an op goes to a watched collection: reported
 * under the first watched collection's model, with the most destructive kind of the ops that go to
 * watched collections; its counts are the whole call's. Both wrappers are on prototypes shared by
 * every client and connection: a call that writes to no watched collection pays a scan of its ops.
 */

import type { Capture, WriteKind, WriteOperation } from '../types.js';
import { collectionWrite } from './collection.js';
import { claim, countedWhenLanded, define, driverPrototype, type WatchedCollection, watchedNamespace } from './driver.js';
import { type ConnectionLike, filterId, isObject } from './write-shapes.js';

const OP_KINDS: Readonly<Record<string, WriteKind>> = {
  insertOne: 'create',
  updateOne: 'update',
  updateMany: 'update',
  replaceOne: 'update',
  deleteOne: 'delete',
  deleteMany: 'delete',
};

/** What a client-level bulk write does to watched collections. */
interface WatchedOps {
  target: WatchedCollection;
  collection: string;
  kind: WriteKind;
  ids: () => unknown[];
}

/** Which ops go to a watched collection (`namespaceOf` reads an op's `db.collection`). */
function watchedOps(ops: readonly unknown[], namespaceOf: (op: Record<string, unknown>) => unknown): WatchedOps | undefined {
  let target: WatchedCollection | undefined;
  let collection = '';
  let kind: WriteKind | undefined;
  const watched: Array<Record<string, unknown>> = [];
  for (const op of ops) {
    if (!isObject(op)) continue;
    const namespace = namespaceOf(op);
    const found = watchedNamespace(namespace);
    if (!found) continue;
    if (target === undefined) {
      target = found;
      collection = String(namespace).slice(String(namespace).indexOf('.') + 1);
    }
    watched.push(op);
    const opKind = OP_KINDS[String(op.name)] ?? 'update';
    if (kind === undefined || opKind === 'delete' || (opKind === 'update' && kind === 'create')) kind = opKind;
  }
  if (target === undefined || kind === undefined) return undefined;
  // Read when reported: by then the driver has given each inserted document its `_id`.
  const ids = () => watched.flatMap((op) => filterId(op.name === 'insertOne' ? op.document : op.filter));
  return { target, collection, kind, ids };
}

/**
 * The part of a client-level bulk write that goes to watched collections, when its registration
 * watches that kind of write. Ops it cannot read are left to the driver or Mongoose, whose own
 * error says what is wrong, as without the plugin.
 */
function watchedCall(ops: unknown, namespaceOf: (op: Record<string, unknown>) => unknown): WatchedOps | undefined {
  if (!Array.isArray(ops)) return undefined;
  try {
    const found = watchedOps(ops, namespaceOf);
    return found?.target.judge.operations.has(found.kind) ? found : undefined;
  } catch {
    return undefined;
  }
}

function judged(
  operation: WriteOperation,
  found: WatchedOps,
  capture: Capture,
  entry: Function,
  args: unknown[],
  call: () => unknown,
): unknown {
  const { target, kind, ids } = found;
  return collectionWrite(target.judge, { model: target.model, operation, method: 'bulkWrite', kind, capture, entry, ids }, args, call);
}

/** Wraps `MongoClient.prototype.bulkWrite` of the driver Mongoose uses (`mongoose.mongo`), once. */
export function watchClientBulkWrite(mongo: unknown): void {
  const proto = driverPrototype(mongo, 'MongoClient');
  const original = proto && claim(proto, 'bulkWrite');
  if (!proto || !original) return;
  const wrapper = function (this: unknown): unknown {
    const models: unknown = arguments[0];
    // Mongoose's `connection.bulkWrite` hands the driver its ops with their `model`: judged there.
    const mongoose = Array.isArray(models) && models.some((model) => isObject(model) && model.model !== undefined);
    const found = mongoose ? undefined : watchedCall(models, (model) => model.namespace);
    if (found === undefined) return Reflect.apply(original, this, arguments);
    const args = Array.prototype.slice.call(arguments) as unknown[];
    const call = () => Reflect.apply(original, this, args);
    const capture = found.target.judge.capture(wrapper);
    // No application frame on the stack (a library calling after its own awaits): counted when it landed.
    if (capture.approved === false && capture.undecided)
      return countedWhenLanded(found.target.judge, found.collection, 'bulkWrite', call());
    return judged('client.bulkWrite', found, capture, wrapper, args, call);
  };
  define(proto, 'bulkWrite', wrapper, original);
}

/** Wraps Mongoose's `Connection.prototype.bulkWrite` (where the connection's class chain defines it), once. */
export function watchConnectionBulkWrite(connection: unknown): void {
  let holder: object | null = isObject(connection) ? (Object.getPrototypeOf(connection) as object | null) : null;
  while (holder !== null && !Object.hasOwn(holder, 'bulkWrite')) holder = Object.getPrototypeOf(holder) as object | null;
  if (holder === null) return; // Mongoose before 8.9
  const original = claim(holder, 'bulkWrite');
  if (!original) return;
  const wrapper = function (this: ConnectionLike): unknown {
    // An op names its model, or the name of a model of this connection; the model names its namespace.
    const found = watchedCall(arguments[0], (op) => {
      const model: unknown = typeof op.model === 'string' ? this.models?.[op.model] : op.model;
      const namespace = typeof model === 'function' ? (model as { namespace?: unknown }).namespace : undefined;
      return typeof namespace === 'function' ? (namespace as () => unknown).call(model) : undefined;
    });
    if (found === undefined) return Reflect.apply(original, this, arguments);
    const args = Array.prototype.slice.call(arguments) as unknown[];
    return judged('connection.bulkWrite', found, found.target.judge.capture(wrapper), wrapper, args, () =>
      Reflect.apply(original, this, args),
    );
  };
  define(holder, 'bulkWrite', wrapper, original);
}
