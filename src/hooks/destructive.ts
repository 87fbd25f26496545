/**
 * Writes that replace, rename or drop a whole watched collection, judged where the app calls them:
 *   - an aggregation whose final stage is `$out` (kind `create`: it replaces the collection, every
 *     existing document goes) or `$merge` (kind `update`) into a watched collection, from any
 *     collection of any database: the driver's `Collection`/`Db` `aggregate`, and a Mongoose
 *     `Aggregate` of any model (aggregate.ts);
 *   - `Db#renameCollection` and `Collection#rename` onto a watched collection (every document is
 *     replaced) or away from one (kind `delete` both);
 *   - `Collection#drop`, `Db#dropCollection` of a watched collection, `Db#dropDatabase` of its
 *     database (kind `delete`).
 * Each driver method is wrapped once per driver package on its prototype; a call that names no
 * watched namespace pays a lookup of the names it carries. Matching is by database and collection.
 *
 * The driver's `aggregate` returns a cursor at once and writes when the cursor first runs: judged at
 * the call, reported when the cursor's first batch settles, or refused in throw mode before it runs
 * (its first batch is then the refusal).
 */
import type { Capture, WriteEvent, WriteKind, WriteOperation } from '../types.js';
import { expectCommand, handing, handOver } from './collection.js';
import {
  claim,
  countedWhenLanded,
  define,
  driverPrototype,
  type WatchedCollection,
  watchedIn,
  watchedInDatabase,
  watchedNamespace,
} from './driver.js';
import { whenSettled } from './settle.js';
import type { AnyFunction } from './wrap.js';
import { isObject, type WriteStage, writeStageOf } from './write-shapes.js';

/** One whole-collection write about to be made. */
export interface WholeWrite {
  target: WatchedCollection;
  /** The watched collection's name (the `collection` tag of unattributed counts). */
  collection: string;
  operation: WriteOperation;
  kind: WriteKind;
  /** The server command and the key command monitoring knows it by (collection.ts `expectCommand`). */
  command: string;
  commandKey: string;
  bypassedMiddleware: boolean;
}

/** The kind of an aggregation's write stage: `$out` creates the collection anew, `$merge` updates it. */
export function stageKind(stage: WriteStage): WriteKind {
  return stage.stage === '$out' ? 'create' : 'update';
}

function eventOf(write: WholeWrite, capture: Capture): WriteEvent {
  return {
    model: write.target.model,
    operation: write.operation,
    kind: write.kind,
    capture,
    ...(write.bypassedMiddleware ? { bypassedMiddleware: true } : {}),
    ids: () => [],
    outcome: () => ({}),
  };
}

/**
 * Judges a whole-collection write whose `call` returns a promise: refused in throw mode, else made
 * and reported when it settles. `capture` is the verdict taken where the app called (or undefined:
 * taken now, above `entry`).
 */
export function judgeWhole(write: WholeWrite, entry: Function, call: () => unknown, captured?: Capture): unknown {
  const { judge } = write.target;
  const release = expectCommand(write.command, write.commandKey);
  const run = () => handOver(call);
  if (!judge.operations.has(write.kind)) return runReleasing(run, release);
  const capture = captured ?? judge.capture(entry);
  if (capture.approved === false && capture.undecided) {
    // No application frame on the stack (a library after its own awaits): counted when it landed.
    return countedWhenLanded(judge, write.collection, write.command, runReleasing(run, release));
  }
  if (judge.refusesRogueWrites) {
    const refusal = judge.refusal(eventOf(write, capture), entry);
    if (refusal) {
      release();
      return Promise.reject(refusal);
    }
  }
  return runReleasing(run, release, () => judge.completed(eventOf(write, capture), entry));
}

/**
 * Runs the write, and releases the command monitoring's expectation however it ends (a throw, a
 * rejection, a result); `landed` runs once it settled with a result.
 */
function runReleasing(run: () => unknown, release: () => void, landed?: () => void): unknown {
  let result: unknown;
  try {
    result = run();
  } catch (error) {
    release();
    throw error;
  }
  return whenSettled(
    result,
    () => {
      release();
      landed?.();
    },
    () => release(),
  );
}

// ---- The driver's Collection and Db ----

interface DriverCollection {
  readonly collectionName?: string;
  readonly dbName?: string;
}
interface DriverDb {
  readonly databaseName?: string;
}

/** Reads a receiver's names; a receiver the driver's getters cannot read is left to the driver's own method. */
function read<T>(get: () => T): T | undefined {
  try {
    return get();
  } catch {
    return undefined;
  }
}

/** Wraps, once per driver package, the methods of its `Collection` and `Db` that replace, rename or drop a collection. */
export function watchWholeCollectionWrites(mongo: unknown): void {
  const collectionProto = driverPrototype(mongo, 'Collection');
  const dbProto = driverPrototype(mongo, 'Db');
  if (collectionProto) {
    wrapAggregate(collectionProto, (receiver) => read(() => (receiver as DriverCollection).dbName));
    wrapWhole(collectionProto, 'rename', function (this: DriverCollection, args) {
      const db = read(() => this.dbName);
      const from = read(() => this.collectionName);
      return typeof args[0] === 'string' && typeof db === 'string' ? renameWrite(`${db}.${from}`, `${db}.${args[0]}`) : undefined;
    });
    wrapWhole(collectionProto, 'drop', function (this: DriverCollection) {
      return dropWrite(
        'drop',
        read(() => this.dbName),
        read(() => this.collectionName),
      );
    });
  }
  if (dbProto) {
    wrapAggregate(dbProto, (receiver) => read(() => (receiver as DriverDb).databaseName));
    wrapWhole(dbProto, 'renameCollection', function (this: DriverDb, args) {
      const db = read(() => this.databaseName);
      if (typeof db !== 'string' || typeof args[0] !== 'string' || typeof args[1] !== 'string') return undefined;
      return renameWrite(`${db}.${args[0]}`, `${db}.${args[1]}`);
    });
    wrapWhole(dbProto, 'dropCollection', function (this: DriverDb, args) {
      return dropWrite(
        'dropCollection',
        read(() => this.databaseName),
        args[0],
      );
    });
    wrapWhole(dbProto, 'dropDatabase', function (this: DriverDb) {
      const db = read(() => this.databaseName);
      const [first] = watchedInDatabase(db);
      if (!first) return undefined;
      return {
        target: first,
        collection: first.collection,
        operation: 'dropDatabase',
        kind: 'delete',
        command: 'dropDatabase',
        commandKey: String(db),
        bypassedMiddleware: true,
      } satisfies WholeWrite;
    });
  }
}

/** A rename onto a watched collection, or away from one (the target first: it loses every document). */
function renameWrite(from: string, to: string): WholeWrite | undefined {
  const onto = watchedNamespace(to);
  const target = onto ?? watchedNamespace(from);
  if (!target) return undefined;
  const ns = onto ? to : from;
  return {
    target,
    collection: ns.slice(ns.indexOf('.') + 1),
    operation: 'renameCollection',
    kind: 'delete',
    command: 'renameCollection',
    commandKey: `${from} ${to}`,
    bypassedMiddleware: true,
  };
}

function dropWrite(operation: 'drop' | 'dropCollection', db: unknown, collection: unknown): WholeWrite | undefined {
  if (typeof db !== 'string' || typeof collection !== 'string') return undefined;
  const target = watchedIn(collection, db);
  if (!target) return undefined;
  return { target, collection, operation, kind: 'delete', command: 'drop', commandKey: `${db}.${collection}`, bypassedMiddleware: true };
}

/** Wraps one promise-returning method: `describe` says what the call would do to a watched collection. */
function wrapWhole(
  proto: Record<string, unknown>,
  method: string,
  describe: (this: never, args: readonly unknown[]) => WholeWrite | undefined,
): void {
  const original = claim(proto, method);
  if (!original) return;
  const wrapper = function (this: never): unknown {
    // The driver's own call inside one we judged (`Collection#drop` calls `Db#dropCollection`).
    if (handing.depth > 0) return Reflect.apply(original, this, arguments);
    const args = Array.prototype.slice.call(arguments) as unknown[];
    const write = read(() => Reflect.apply(describe, this, [args]) as WholeWrite | undefined);
    if (write === undefined) return Reflect.apply(original, this, args);
    return judgeWhole(write, wrapper, () => Reflect.apply(original, this, args));
  };
  define(proto, method, wrapper, original);
}

// ---- Aggregations that write ----

/** `$out` stage objects of Mongoose `Aggregate`s judged at `exec` (aggregate.ts): the driver call that follows is theirs. */
export const judgedStages = new WeakSet<object>();

/** The write an aggregation pipeline's final stage makes to a watched collection, if it makes one. */
export function aggregateWrite(stage: WriteStage | undefined, bypassedMiddleware: boolean): WholeWrite | undefined {
  if (stage === undefined) return undefined;
  const target = watchedIn(stage.collection, stage.db);
  if (!target) return undefined;
  const ns = `${stage.db}.${stage.collection}`;
  return {
    target,
    collection: stage.collection,
    operation: `aggregate.${stage.stage}`,
    kind: stageKind(stage),
    command: 'aggregate',
    commandKey: ns,
    bypassedMiddleware,
  };
}

/** The driver's deprecated `out` option appends `{ $out: out }` (driver 6 and 7 lib/operations/aggregate.js). */
function writeStageOfCall(pipeline: unknown, options: unknown, db: string | undefined): WriteStage | undefined {
  const stage = writeStageOf(pipeline, db);
  if (stage || !isObject(options) || typeof options.out !== 'string') return stage;
  return { stage: '$out', object: options, db, collection: options.out };
}

interface CursorLike {
  _initialize?: unknown;
}

function wrapAggregate(proto: Record<string, unknown>, dbOf: (receiver: unknown) => string | undefined): void {
  const original = claim(proto, 'aggregate');
  if (!original) return;
  // Not skipped while a collection wrapper hands over: `Model.collection.aggregate` is judged here,
  // as a write, when its pipeline writes to a watched collection.
  const wrapper = function (this: unknown): unknown {
    const stage = writeStageOfCall(arguments[0], arguments[1], dbOf(this));
    if (stage === undefined) return Reflect.apply(original, this, arguments);
    if (judgedStages.has(stage.object)) {
      judgedStages.delete(stage.object);
      return Reflect.apply(original, this, arguments);
    }
    const write = aggregateWrite(stage, true);
    if (write === undefined) return Reflect.apply(original, this, arguments);
    return judgeCursor(write, wrapper, original, this, Array.prototype.slice.call(arguments) as unknown[]);
  };
  define(proto, 'aggregate', wrapper, original);
}

/**
 * The driver's `AggregationCursor` sends its command from `_initialize(session)` (driver 6 and 7
 * lib/cursor/aggregation_cursor.js, called by AbstractCursor#cursorInit on the first batch): an own
 * property on this one cursor observes that first batch, or refuses it. Without one (another driver),
 * the write is reported when the cursor is made, and refused by throwing there.
 */
function judgeCursor(write: WholeWrite, entry: Function, original: AnyFunction, receiver: unknown, args: unknown[]): unknown {
  const { judge } = write.target;
  const capture = judge.operations.has(write.kind) ? judge.capture(entry) : undefined;
  const undecided = capture?.approved === false && capture.undecided === true;
  const refusal = capture && !undecided && judge.refusesRogueWrites ? judge.refusal(eventOf(write, capture), entry) : undefined;
  const cursor = Reflect.apply(original, receiver, args) as CursorLike;
  const initialize = isObject(cursor) ? cursor._initialize : undefined;
  if (typeof initialize !== 'function') {
    if (refusal) throw refusal;
    if (capture && !undecided) judge.completed(eventOf(write, capture), entry);
    return cursor;
  }
  let first = true;
  Object.defineProperty(cursor, '_initialize', {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function (this: unknown, ...initArgs: unknown[]): unknown {
      if (!first) return Reflect.apply(initialize, this, initArgs);
      first = false;
      if (refusal) return Promise.reject(refusal);
      const release = expectCommand(write.command, write.commandKey);
      const settled = runReleasing(
        () => Reflect.apply(initialize, this, initArgs),
        release,
        () => {
          if (capture && !undecided) judge.completed(eventOf(write, capture), entry);
        },
      );
      return undecided ? countedWhenLanded(judge, write.collection, write.command, settled) : settled;
    },
  });
  return cursor;
}
