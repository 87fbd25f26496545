/**
 * Writes that skip Mongoose: `Model.collection.*` (the same object as `doc.collection`,
 * `connection.collection(name)` and `connection.collections[name]`) calls the driver directly.
 *
 * Its write methods are wrapped in place, as own properties of that one shared object, so identity
 * holds and a spy the app puts on `Model.collection.insertOne` still sees `Model.create`. Mongoose
 * makes its own writes through the same methods: a call Mongoose marked as its own (mongoose-own-writes.ts),
 * or else whose caller is Mongoose (one frame read, looked through a spy's frames), passes straight
 * through, since the entry point the app called reports it.
 *
 * Any other route to the same collection (`connection.db.collection('accesstokens')`, another
 * client) is invisible to Mongoose. With driver command monitoring on, those write commands are
 * counted as `tripwire.unattributed_writes`: the driver's command event carries the very filter and
 * document objects its collection method was given (measured, driver 6 and 7), so each call through
 * the shared collection records them, and a write command holding none of them came from elsewhere.
 * No async context is needed (an AsyncLocalStorage turns on promise hooks process-wide in Node 20,
 * making every `await` of the app several times slower). Its call site is not recoverable (the
 * driver runs the command after its own awaits).
 */
import { calledByMongoose } from '../attribution/call-site.js';
import type { Capture, CollectionMethod, WriteEvent, WriteJudge, WriteKind, WriteOperation } from '../types.js';
import { markedAsMongoose } from './mongoose-own-writes.js';
import { whenSettled } from './settle.js';
import { type AnyFunction, defineWrapper } from './wrap.js';
import {
  bulkKindOf,
  type ConnectionLike,
  filterId,
  isObject,
  landedInPart,
  resultCounts,
  resultIds,
  writeStageOf,
} from './write-shapes.js';

export const KINDS: Readonly<Record<CollectionMethod, WriteKind>> = {
  insertOne: 'create',
  insertMany: 'create',
  updateOne: 'update',
  updateMany: 'update',
  replaceOne: 'update',
  findOneAndUpdate: 'update',
  findOneAndReplace: 'update',
  deleteOne: 'delete',
  deleteMany: 'delete',
  findOneAndDelete: 'delete',
  bulkWrite: 'update',
  find: 'read',
  findOne: 'read',
  countDocuments: 'read',
  estimatedDocumentCount: 'read',
  distinct: 'read',
  aggregate: 'read',
};
const WRITE_COMMANDS = new Set(['insert', 'update', 'delete', 'findAndModify']);
const MONITORED_COMMANDS = new Set([...WRITE_COMMANDS, 'aggregate', 'renameCollection', 'drop', 'dropDatabase']);

/** The filters and documents handed to the driver through a watched collection (held weakly). */
const knownObjects = new WeakSet<object>();

// Recorded only once some watched connection really monitors commands: nothing reads them otherwise.
let marking = false;
export function rememberObject(value: unknown): void {
  if (marking) remember(value);
}

function remember(value: unknown): void {
  if (isObject(value)) knownObjects.add(value);
}

/** Records a write's filters and documents for command monitoring, while it is on. */
export function rememberWrite(method: CollectionMethod, kind: WriteKind, args: readonly unknown[]): void {
  if (marking && kind !== 'read') rememberArguments(method, args);
}

/** Records what the driver will put in the command: `documents`, `updates[].q`, `deletes[].q`, `query`. */
function rememberArguments(method: CollectionMethod, args: readonly unknown[]): void {
  const first = args[0];
  if (method === 'insertMany' || method === 'bulkWrite') {
    if (!Array.isArray(first)) return;
    for (const item of first as unknown[]) {
      if (method === 'insertMany') {
        remember(item);
        continue;
      }
      if (!isObject(item)) continue;
      for (const op of Object.values(item)) {
        if (isObject(op)) {
          remember(op.document);
          remember(op.filter);
        }
      }
    }
    return;
  }
  remember(first);
}

/** Does this write command carry an object a call through a watched collection handed to the driver? */
function madeThroughWatchedCollection(command: Record<string, unknown> | undefined): boolean {
  if (!command) return false;
  const carried: unknown[] = [command.query];
  for (const key of ['documents', 'updates', 'deletes'] as const) {
    const list = command[key];
    if (!Array.isArray(list)) continue;
    for (const entry of list as unknown[]) carried.push(key === 'documents' ? entry : isObject(entry) ? entry.q : undefined);
  }
  return carried.some((value) => isObject(value) && knownObjects.has(value));
}

interface CollectionLike {
  collectionName?: string;
  name?: string;
  conn?: ConnectionLike;
  [method: string]: unknown;
}
interface ClientLike {
  options?: { monitorCommands?: boolean };
  on(event: string, fn: (event: CommandEvent) => void): void;
}
interface CommandEvent {
  commandName: string;
  requestId: number;
  databaseName: string;
  command?: Record<string, unknown>;
}

const WRAPPED = Symbol('mongoose-tripwire.collection');

/** Who watches a collection object, under which model's name (a watched model's `collection`). */
export interface CollectionOwner {
  readonly judge: WriteJudge;
  readonly model: string;
}

/** The registration watching this Mongoose collection object, if any. */
export function collectionOwner(collection: unknown): CollectionOwner | undefined {
  return isObject(collection) ? ((collection as Record<symbol, unknown>)[WRAPPED] as CollectionOwner | undefined) : undefined;
}

/** The collection's own implementation of `method`, past our wrapper (looked up per call: an app may replace it). */
function implementation(collection: object, method: string): AnyFunction | undefined {
  const value: unknown = (Object.getPrototypeOf(collection) as Record<string, unknown> | null)?.[method];
  return typeof value === 'function' ? (value as AnyFunction) : undefined;
}

/**
 * Set while one of our collection-level wrappers runs its original synchronously: the driver call
 * made inside it (Mongoose's `NativeCollection` forwarding to the driver's collection, the driver's
 * `insertMany` calling its own `bulkWrite`) is already accounted for. A counter, not a stack read:
 * this is all Mongoose's own writes pay at the driver (driver.ts).
 */
export const handing = { depth: 0 };

const NO_ARGUMENTS: unknown[] = [];

export function handOver<T>(call: () => T): T {
  return handOverCall(call as AnyFunction, undefined, NO_ARGUMENTS) as T;
}

/**
 * `handOver` of `original` called with `receiver` and `args`: no closure for Mongoose's own calls
 * (every write of a watched model makes one).
 */
function handOverCall(original: AnyFunction, receiver: unknown, args: unknown[]): unknown {
  handing.depth++;
  try {
    return original.apply(receiver, args);
  } finally {
    handing.depth--;
  }
}

export function kindOfCollectionWrite(method: CollectionMethod, args: readonly unknown[]): WriteKind {
  return method === 'bulkWrite' ? bulkKindOf(args[0]) : KINDS[method];
}

export interface CollectionWrite {
  model: string;
  operation: WriteOperation;
  method: CollectionMethod;
  kind: WriteKind;
  capture: Capture;
  /** The wrapper the app called (stack reads start above it). */
  entry: Function;
  /** Ids the write names, when its arguments are not a collection method's (`client.bulkWrite`). */
  ids?: () => unknown[];
}

/**
 * One write the app made on a collection object (Mongoose's or the driver's): refused in throw
 * mode, else made, and reported when its promise settles, with what landed if it failed part-way.
 */
export function collectionWrite(judge: WriteJudge, write: CollectionWrite, args: readonly unknown[], call: () => unknown): unknown {
  const { kind, method, entry } = write;
  const event = (result: unknown): WriteEvent => ({
    model: write.model,
    operation: write.operation,
    kind,
    capture: write.capture,
    bypassedMiddleware: true,
    ids: () => [...(write.ids ? write.ids() : filterId(args[0])), ...resultIds(result, method.startsWith('findOneAnd'))],
    outcome: () => resultCounts(result),
  });
  if (judge.refusesRogueWrites && kind !== 'read') {
    const refusal = judge.refusal(event(undefined), entry);
    if (refusal) return Promise.reject(refusal); // these methods return promises: refuse the same way
  }
  rememberWrite(method, kind, args);
  const result = handOver(call);
  if (!isObject(result) || typeof result.then !== 'function') {
    judge.completed(event(undefined), entry); // cursors: reported when created
    return result;
  }
  // The app gets a promise settling as the driver's does (and unhandled exactly when it is not handled).
  return whenSettled(
    result,
    (value) => judge.completed(event(value), entry),
    (error) => {
      // A batch that failed part-way still wrote what it wrote.
      const partial = landedInPart(error);
      if (partial) judge.completed(event(partial), entry);
    },
  );
}

/** Wraps the write methods (reads too with `operations: [..., 'read']`) of a watched model's collection, once. */
export function instrumentCollection(model: { modelName?: string; collection?: unknown }, judge: WriteJudge): void {
  const collection = model.collection as CollectionLike | undefined;
  if (!isObject(collection) || collectionOwner(collection)) return;
  const modelName = model.modelName ?? '<unknown>';
  Object.defineProperty(collection, WRAPPED, { value: { judge, model: modelName } satisfies CollectionOwner });
  const reads = judge.operations.has('read');

  for (const method of Object.keys(KINDS) as CollectionMethod[]) {
    if ((KINDS[method] === 'read' && !reads) || !implementation(collection, method)) continue;
    const wrapper = function (this: unknown, ...args: unknown[]): unknown {
      const original = implementation(collection, method)!;
      if (markedAsMongoose(collection, method, args) || calledByMongoose(wrapper) !== false) {
        // Mongoose's own write (or no stack at all): the entry point the app called accounts for it.
        rememberWrite(method, KINDS[method], args);
        return handOverCall(original, this, args);
      }
      const kind = kindOfCollectionWrite(method, args);
      const capture = judge.capture(wrapper);
      return collectionWrite(
        judge,
        { model: modelName, operation: `collection.${method}`, method, kind, capture, entry: wrapper },
        args,
        () => original.apply(this, args),
      );
    };
    defineWrapper(collection, method, wrapper);
  }
  watchDriver(collection, judge);
}

// One `connected` listener per connection, however many models wait on it (no MaxListenersExceededWarning).
const waitingForClient = new WeakMap<object, Array<() => void>>();

function whenConnected(connection: ConnectionLike, attach: () => void): void {
  let waiting = waitingForClient.get(connection);
  if (!waiting) {
    const queue: Array<() => void> = [];
    waitingForClient.set(connection, (waiting = queue));
    connection.once?.('connected', () => {
      waitingForClient.delete(connection);
      for (const fn of queue) fn();
    });
  }
  waiting.push(attach);
}

const watchedClients = new WeakMap<object, Map<string, Set<WriteJudge>>>();

/**
 * Whole-collection commands (an aggregation writing with `$out`/`$merge`, a rename, a drop) carry
 * no object of the caller's that the command event would show, so a wrapper that judged one says so
 * here, by command and namespace, until the command is seen on the wire or the call settles.
 */
const judgedCommands = new Map<string, object[]>();

/** A whole-collection command about to be sent by a judged call; the returned function withdraws it once the call settled. */
export function expectCommand(command: string, namespace: string): () => void {
  if (!marking) return () => undefined;
  const key = `${command} ${namespace}`;
  const token = {};
  let tokens = judgedCommands.get(key);
  if (!tokens) judgedCommands.set(key, (tokens = []));
  tokens.push(token);
  return () => {
    const waiting = judgedCommands.get(key);
    const at = waiting?.indexOf(token) ?? -1;
    if (at < 0) return;
    waiting!.splice(at, 1);
    if (waiting!.length === 0) judgedCommands.delete(key);
  };
}

function judgedCommand(command: string, namespace: string): boolean {
  const key = `${command} ${namespace}`;
  const tokens = judgedCommands.get(key);
  if (!tokens) return false;
  tokens.shift();
  if (tokens.length === 0) judgedCommands.delete(key);
  return true;
}

/** What a command writes to watched namespaces (`db.collection`) of this client, if it writes to any. */
function watchedCommand(event: CommandEvent, seen: ReadonlyMap<string, Set<WriteJudge>>): string[] | undefined {
  const command = event.command;
  const name = event.commandName;
  if (!command) return undefined;
  const db = event.databaseName;
  if (WRITE_COMMANDS.has(name)) {
    const target = command[name];
    const ns = `${db}.${String(target)}`;
    return typeof target === 'string' && seen.has(ns) && !madeThroughWatchedCollection(command) ? [ns] : undefined;
  }
  switch (name) {
    case 'aggregate': {
      const stage = writeStageOf(command.pipeline, db);
      const ns = stage && `${stage.db}.${stage.collection}`;
      return ns !== undefined && seen.has(ns) && !judgedCommand('aggregate', ns) ? [ns] : undefined;
    }
    case 'renameCollection': {
      // Run on the admin database: `{ renameCollection: 'db.from', to: 'db.to' }`.
      const from = String(command.renameCollection);
      const to = String(command.to);
      const hit = [to, from].filter((ns) => seen.has(ns));
      return hit.length > 0 && !judgedCommand('renameCollection', `${from} ${to}`) ? hit : undefined;
    }
    case 'drop': {
      const ns = `${db}.${String(command.drop)}`;
      return seen.has(ns) && !judgedCommand('drop', ns) ? [ns] : undefined;
    }
    case 'dropDatabase': {
      const hit = [...seen.keys()].filter((ns) => ns.startsWith(`${db}.`));
      return hit.length > 0 && !judgedCommand('dropDatabase', db) ? hit : undefined;
    }
    default:
      return undefined;
  }
}

/** Subscribes to the driver's command monitoring for write commands no known path made. */
function watchDriver(collection: CollectionLike, judge: WriteJudge): void {
  const name = collection.collectionName ?? collection.name;
  const connection = collection.conn;
  if (!name || !connection) return;
  const attach = () => {
    const client = connection.getClient?.() as ClientLike | undefined;
    if (!client || typeof client.on !== 'function') return;
    if (client.options?.monitorCommands !== true) {
      judge.driverRoute(name, 'rawCommands', false); // verify() says how to turn it on
      return;
    }
    judge.driverRoute(name, 'rawCommands', true);
    marking = true;
    let byCollection = watchedClients.get(client);
    if (!byCollection) {
      watchedClients.set(client, (byCollection = new Map()));
      const pending = new Map<number, { namespaces: string[]; command: string }>();
      const seen = byCollection;
      client.on('commandStarted', (event) => {
        if (!MONITORED_COMMANDS.has(event.commandName)) return;
        const namespaces = watchedCommand(event, seen);
        if (namespaces) pending.set(event.requestId, { namespaces, command: event.commandName });
      });
      client.on('commandSucceeded', (event) => {
        const write = pending.get(event.requestId);
        if (!write) return;
        pending.delete(event.requestId);
        for (const ns of write.namespaces) {
          const collection = ns.slice(ns.indexOf('.') + 1);
          for (const w of seen.get(ns) ?? []) w.unattributed(collection, write.command, 'command_monitoring');
        }
      });
      client.on('commandFailed', (event) => void pending.delete(event.requestId));
    }
    // Matched by database and collection: `otherdb.accesstokens` is another collection.
    const namespace = `${connection.name ?? ''}.${name}`;
    let judges = byCollection.get(namespace);
    if (!judges) byCollection.set(namespace, (judges = new Set()));
    judges.add(judge);
  };
  if (connection.getClient?.()) attach();
  else whenConnected(connection, attach);
}
