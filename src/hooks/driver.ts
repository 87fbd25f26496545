/**
 * Writes made with the MongoDB driver itself: `connection.db.collection('accesstokens')`,
 * `Model.collection.collection`, a second `MongoClient` of the driver Mongoose uses, a model the
 * plugin does not watch on the same collection, and the driver's bulk-operation builders
 * (`initializeOrderedBulkOp()` … `execute()`).
 *
 * They all end in a method of the driver's `Collection.prototype`, so those methods are wrapped
 * there, once per driver package (the one `mongoose.mongo` names). That is a change to the driver
 * for every collection of the process, so the wrapper's first two steps are all any other write
 * pays: a counter test (set while one of our collection wrappers is handing its own call to the
 * driver: every write Mongoose makes on a watched model) and one lookup of the collection's name.
 * Only a write to a watched collection (same collection name, same database name) that came by no
 * watched route reads its stack:
 *   - an application frame on it decides, as for any write (reported as `driver.<method>`);
 *   - none (a model nobody watches, written through Mongoose after its own awaits): the write is
 *     counted as `tripwire.unattributed_writes{route:driver}` when it succeeded, since no call
 *     site can be known.
 * Bulk-operation builders are judged where `execute()` is called: that is where the write is made.
 */
import { isInternalFile, isMongooseFile, toFilePath } from '../attribution/approval.js';
import { readCallSites } from '../attribution/call-site.js';
import type { CollectionMethod, WriteJudge, WriteKind } from '../types.js';
import { collectionWrite, handing, handOver, KINDS, kindOfCollectionWrite, rememberObject, rememberWrite } from './collection.js';
import { whenSettled } from './settle.js';
import { type AnyFunction, defineWrapper } from './wrap.js';
import { type ConnectionLike, isObject, landedInPart } from './write-shapes.js';

interface DriverCollection {
  readonly collectionName?: string;
  readonly dbName?: string;
}
export interface WatchedCollection {
  judge: WriteJudge;
  model: string;
}

interface WatchEntry extends WatchedCollection {
  // Weakly: an app that opens and destroys connections (one per tenant, per test) must not keep them
  // alive through the plugin. No connection (a model compiled on no connection): every database.
  connection: WeakRef<ConnectionLike> | undefined;
}

/** Watched collections by name; a write matches one when its database is the watched connection's. */
const watchedCollections = new Map<string, WatchEntry[]>();

const BULK_BUILDERS = ['initializeOrderedBulkOp', 'initializeUnorderedBulkOp'] as const;
type BulkBuilder = (typeof BULK_BUILDERS)[number];

/** Driver prototypes already wrapped, and which of their methods. */
const wrappedPrototypes = new WeakMap<object, Set<string>>();

function watchedTarget(collection: DriverCollection): WatchedCollection | undefined {
  try {
    return watchedIn(collection.collectionName as string, collection.dbName);
  } catch {
    // A receiver whose name the driver's getters cannot read: the driver's own method, called as
    // is, says what is wrong (its methods reject; a getter of ours must not throw instead).
    return undefined;
  }
}

/** The registrations watching a collection of this name in any database (before the database is known). */
export function judgesOfName(collectionName: string): WriteJudge[] {
  const entries = watchedCollections.get(collectionName);
  return entries === undefined ? [] : [...new Set(entries.map((entry) => entry.judge))];
}

/** The watched collections of a database (all of them: dropping it drops each). */
export function watchedInDatabase(dbName: unknown): Array<WatchedCollection & { collection: string }> {
  const found: Array<WatchedCollection & { collection: string }> = [];
  if (typeof dbName !== 'string') return found;
  for (const collection of watchedCollections.keys()) {
    const entry = watchedIn(collection, dbName);
    if (entry) found.push({ ...entry, collection });
  }
  return found;
}

/** The watched collection of this name in this database, if any. */
export function watchedIn(collectionName: string, dbName: string | undefined): WatchedCollection | undefined {
  const entries = watchedCollections.get(collectionName);
  if (entries === undefined) return undefined;
  // One registration judges a write: two registrations watching one collection are not supported.
  let found: WatchedCollection | undefined;
  let collected = false;
  for (const entry of entries) {
    if (entry.connection === undefined) return entry;
    const connection = entry.connection.deref();
    if (connection === undefined) collected = true;
    else if (connection.name === undefined || connection.name === dbName) {
      found = entry;
      break;
    }
  }
  if (collected) forgetCollected(collectionName, entries);
  return found;
}

function forgetCollected(collectionName: string, entries: WatchEntry[]): void {
  const live = entries.filter((entry) => entry.connection === undefined || entry.connection.deref() !== undefined);
  if (live.length > 0) watchedCollections.set(collectionName, live);
  else watchedCollections.delete(collectionName);
}

/** The watched collection a namespace (`db.collection`; a database name has no dot) names, if any. */
export function watchedNamespace(namespace: unknown): WatchedCollection | undefined {
  if (typeof namespace !== 'string') return undefined;
  const dot = namespace.indexOf('.');
  return dot < 0 ? undefined : watchedIn(namespace.slice(dot + 1), namespace.slice(0, dot));
}

/**
 * Starts watching the driver route to a watched model's collection. `mongo` is the driver module
 * Mongoose uses (`mongoose.mongo`); its `Collection.prototype` is wrapped once.
 */
export function watchDriverCollection(
  mongo: unknown,
  collectionName: string,
  connection: ConnectionLike | undefined,
  model: string,
  judge: WriteJudge,
): boolean {
  const proto = driverPrototype(mongo, 'Collection');
  if (!proto) return false;
  let entries = watchedCollections.get(collectionName);
  if (!entries) watchedCollections.set(collectionName, (entries = []));
  if (!entries.some((entry) => entry.judge === judge && entry.connection?.deref() === connection)) {
    entries.push({ judge, model, connection: connection && new WeakRef(connection) });
  }
  const reads = judge.operations.has('read');
  for (const method of Object.keys(KINDS) as CollectionMethod[]) {
    if (KINDS[method] !== 'read' || reads) wrapDriverMethod(proto, method);
  }
  for (const builder of BULK_BUILDERS) wrapBulkBuilder(proto, builder);
  return true;
}

/** The prototype of one of the driver module's classes (`Collection`, `MongoClient`), if it has it. */
export function driverPrototype(mongo: unknown, className: 'Collection' | 'MongoClient' | 'Db'): Record<string, unknown> | undefined {
  const DriverClass = isObject(mongo) || typeof mongo === 'function' ? (mongo as Record<string, unknown>)[className] : undefined;
  const proto = typeof DriverClass === 'function' ? (DriverClass as { prototype?: unknown }).prototype : undefined;
  return isObject(proto) ? proto : undefined;
}

export function claim(proto: object, method: string): AnyFunction | undefined {
  let methods = wrappedPrototypes.get(proto);
  if (!methods) wrappedPrototypes.set(proto, (methods = new Set()));
  const original = (proto as Record<string, unknown>)[method];
  if (methods.has(method) || typeof original !== 'function') return undefined;
  methods.add(method);
  return original as AnyFunction;
}

export function define(proto: object, method: string, wrapper: (this: never, ...args: never[]) => unknown, original: Function): void {
  // The driver's method as code that inspects it sees it: same name and arity.
  Object.defineProperty(wrapper, 'name', { value: original.name, configurable: true });
  Object.defineProperty(wrapper, 'length', { value: original.length, configurable: true });
  // Marked as ours, and as the driver's class methods are: writable, configurable, not enumerable.
  defineWrapper(proto, method, wrapper);
}

function wrapDriverMethod(proto: Record<string, unknown>, method: CollectionMethod): void {
  const original = claim(proto, method);
  if (!original) return;
  const wrapper = function (this: DriverCollection): unknown {
    // `arguments` as they are: nothing is built for the writes of the process that are not watched.
    if (handing.depth > 0) return Reflect.apply(original, this, arguments);
    const target = watchedTarget(this);
    if (target === undefined) return Reflect.apply(original, this, arguments);
    return driverWrite(this, target, method, original, Array.prototype.slice.call(arguments) as unknown[], wrapper);
  };
  define(proto, method, wrapper, original);
}

function driverWrite(
  collection: DriverCollection,
  target: WatchedCollection,
  method: CollectionMethod,
  original: AnyFunction,
  args: unknown[],
  entry: Function,
): unknown {
  const { judge } = target;
  const kind = kindOfCollectionWrite(method, args);
  const call = () => Reflect.apply(original, collection, args);
  if (!judge.operations.has(kind)) {
    rememberWrite(method, kind, args);
    return handOver(call);
  }
  const capture = judge.capture(entry);
  if (!(capture.approved === false && capture.undecided)) {
    return collectionWrite(judge, { model: target.model, operation: `driver.${method}`, method, kind, capture, entry }, args, call);
  }
  // No application frame on the stack: Mongoose writing for a model nobody watches, after its own awaits.
  rememberWrite(method, kind, args);
  const result = handOver(call);
  return kind === 'read'
    ? whenSettled(result, () => undefined)
    : countedWhenLanded(judge, collection.collectionName ?? '<unknown>', method, result);
}

/**
 * A write no call site can account for (no application frame on its stack): counted as
 * `tripwire.unattributed_writes{route:driver}` when it landed, in part for a batch that failed part-way.
 */
export function countedWhenLanded(judge: WriteJudge, collection: string, command: string, result: unknown): unknown {
  const landed = () => judge.unattributed(collection, command, 'driver');
  return whenSettled(result, landed, (error) => {
    if (landedInPart(error)) landed();
  });
}

// ---- Bulk-operation builders ----

/** Did the driver itself call (its `bulkWrite` building its bulk operation after an await)? One frame is read. */
function calledByDriver(entry: Function): boolean {
  const file = readCallSites(1, entry)?.[0]?.getFileName();
  if (!file) return false;
  const path = toFilePath(file);
  return !path.startsWith('node:') && !isMongooseFile(path) && isInternalFile(path);
}

interface BulkLike {
  execute?: unknown;
  batches?: ReadonlyArray<{ batchType?: number; operations?: readonly unknown[] }>;
}

// The driver's BatchType: 1 insert, 2 update, 3 delete.
const BATCH_KINDS: Readonly<Record<number, WriteKind>> = { 1: 'create', 2: 'update', 3: 'delete' };

function wrapBulkBuilder(proto: Record<string, unknown>, builder: BulkBuilder): void {
  const original = claim(proto, builder);
  if (!original) return;
  const wrapper = function (this: DriverCollection, ...args: unknown[]): unknown {
    const bulk = Reflect.apply(original, this, args);
    // The driver's own `bulkWrite` builds one: synchronously inside our wrapper, or after its awaits
    // (driver 6, or before the first connection), when its caller is the driver itself.
    if (handing.depth > 0 || !isObject(bulk) || typeof bulk.execute !== 'function') return bulk;
    const target = watchedTarget(this);
    if (target === undefined || calledByDriver(wrapper)) return bulk;
    judgeAtExecute(bulk as BulkLike & Record<string, unknown>, target, builder);
    return bulk;
  };
  define(proto, builder, wrapper, original);
}

/** The bulk's `execute`, wrapped on that one object: its call site is where the write is made. */
function judgeAtExecute(bulk: BulkLike & Record<string, unknown>, target: WatchedCollection, builder: BulkBuilder): void {
  const execute = bulk.execute as AnyFunction;
  const { judge } = target;
  const wrapper = function (this: unknown, ...args: unknown[]): unknown {
    const batches = Array.isArray(bulk.batches) ? bulk.batches : [];
    let kind: WriteKind = 'create';
    for (const batch of batches) {
      const batchKind = BATCH_KINDS[batch.batchType ?? 0];
      if (batchKind === 'delete') kind = 'delete';
      else if (batchKind === 'update' && kind === 'create') kind = 'update';
      // What the command will carry: documents, or the filters (`q`) of update and delete statements.
      for (const op of batch.operations ?? []) rememberObject(batchKind === 'create' ? op : isObject(op) ? op.q : undefined);
    }
    if (!judge.operations.has(kind)) return Reflect.apply(execute, this, args);
    const capture = judge.capture(wrapper);
    return collectionWrite(
      judge,
      { model: target.model, operation: `driver.${builder}`, method: 'bulkWrite', kind, capture, entry: wrapper },
      [],
      () => Reflect.apply(execute, this, args),
    );
  };
  Object.defineProperty(bulk, 'execute', { value: wrapper, writable: true, configurable: true, enumerable: false });
}
