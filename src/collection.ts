/**
 * Writes that skip Mongoose middleware.
 *
 * `Model.collection.*` calls the driver directly: no hook fires, so the plugin wraps the methods of
 * that collection object itself. Mongoose uses the same object for its own writes (already seen by
 * middleware), so a call whose caller is Mongoose passes straight through: nothing is reported twice.
 *
 * Any other route to the same collection (`connection.db.collection('accesstokens')`, another
 * client) is invisible to Mongoose. With driver command monitoring on, those write commands are
 * counted as `tripwire.unattributed_writes`: every path this plugin knows runs inside a marked
 * AsyncLocalStorage context, so an unmarked write command came from elsewhere. Its call site is not
 * recoverable (the driver runs the command after its own awaits).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { callerFileName } from './capture.js';
import type { CollectionMethod, WriteKind } from './report.js';
import type { Watcher } from './watcher.js';
import { bulkKindOf, filterId, isObject, resultCounts, resultIds } from './write-shapes.js';

const KINDS: Record<CollectionMethod, WriteKind> = {
  insertOne: 'create', insertMany: 'create',
  updateOne: 'update', updateMany: 'update', replaceOne: 'update', findOneAndUpdate: 'update', findOneAndReplace: 'update',
  deleteOne: 'delete', deleteMany: 'delete', findOneAndDelete: 'delete',
  bulkWrite: 'update',
  find: 'read', findOne: 'read', countDocuments: 'read', estimatedDocumentCount: 'read', distinct: 'read', aggregate: 'read',
};
const WRITE_COMMANDS = new Set(['insert', 'update', 'delete', 'findAndModify']);
const MONGOOSE_FILE = /[\\/]node_modules[\\/]mongoose[\\/]/;

/** Marks the async context of every write made through a path the plugin knows. */
const knownPath = new AsyncLocalStorage<true>();

// Marking costs: in Node 20 an active AsyncLocalStorage turns on promise hooks for the whole
// process. So contexts are marked only once some connection really monitors commands.
let marking = false;


interface CollectionLike { collectionName?: string; name?: string; conn?: ConnectionLike; [method: string]: unknown }
interface ConnectionLike { getClient?(): ClientLike | undefined; once?(event: string, fn: () => void): void; name?: string }
interface ClientLike {
  options?: { monitorCommands?: boolean };
  on(event: string, fn: (event: CommandEvent) => void): void;
}
interface CommandEvent { commandName: string; requestId: number; databaseName: string; command?: Record<string, unknown> }

const marked = new WeakSet<object>();

const USER_FACING = Symbol('mongoose-tripwire.userFacingCollection');

/**
 * Marks the shared collection's write methods so Mongoose's writes through it run in the known
 * context. Every Mongoose write passes here: unmarked (no monitoring), it is one flag test.
 */
function markKnownCalls(native: CollectionLike): void {
  if (marked.has(native)) return;
  marked.add(native);
  for (const method of Object.keys(KINDS) as CollectionMethod[]) {
    const original = native[method];
    if (KINDS[method] === 'read' || typeof original !== 'function') continue; // reads send no write command
    const markedCall = function (this: unknown, ...args: unknown[]): unknown {
      return marking ? knownPath.run(true, () => original.apply(this, args)) : original.apply(this, args);
    };
    Object.defineProperty(native, method, { value: markedCall, writable: true, configurable: true, enumerable: false });
  }
}

/**
 * Gives `Model.collection` a user-facing object whose methods capture and report. Mongoose's own
 * writes go through `$__collection` (the shared collection), so they never reach these wrappers
 * and pay nothing for them; if a Mongoose path does call `Model.collection`, the caller check
 * below hands it back to the middleware, so nothing is reported twice.
 */
export function instrumentCollection(model: { modelName?: string; collection?: unknown }, watcher: Watcher): void {
  const native = model.collection as CollectionLike | undefined;
  if (!isObject(native) || (native as Record<symbol, unknown>)[USER_FACING]) return;
  markKnownCalls(native);
  const modelName = model.modelName ?? '<unknown>';
  const reads = watcher.options.operations.has('read');
  const throwMode = watcher.options.mode === 'throw';
  const userFacing = Object.create(native) as CollectionLike;
  Object.defineProperty(userFacing, USER_FACING, { value: true });

  for (const method of Object.keys(KINDS) as CollectionMethod[]) {
    if (KINDS[method] === 'read' && !reads) continue;
    const original = native[method];
    if (typeof original !== 'function') continue;
    const wrapper = function (this: unknown, ...args: unknown[]): unknown {
      const caller = callerFileName(wrapper);
      if (caller === undefined || (caller !== null && MONGOOSE_FILE.test(caller))) return original.apply(native, args);
      const capture = watcher.capture(wrapper);
      const kind = method === 'bulkWrite' ? bulkKindOf(args[0]) : KINDS[method];
      const event = (result: unknown) => ({
        model: modelName, operation: `collection.${method}` as const, kind, capture, bypassedMiddleware: true,
        ids: () => [...filterId(args[0]), ...resultIds(result, method.startsWith('findOneAnd'))], outcome: () => resultCounts(result),
      });
      if (throwMode && kind !== 'read') {
        const refusal = watcher.refusal(event(undefined), wrapper);
        if (refusal) return Promise.reject(refusal); // these methods return promises: refuse the same way
      }
      const report = (result: unknown) => watcher.completed(event(result), wrapper);
      const result = original.apply(native, args);
      if (isObject(result) && typeof result.then === 'function') {
        (result as unknown as Promise<unknown>).then(report, () => undefined); // failed writes are not reported
      } else {
        report(undefined); // cursors (find, aggregate): reported when created
      }
      return result;
    };
    Object.defineProperty(userFacing, method, { value: wrapper, writable: true, configurable: true, enumerable: false });
  }
  model.collection = userFacing;
  watchDriver(native, watcher);
}

const watchedClients = new WeakMap<object, Map<string, Set<Watcher>>>();

/** Subscribes to the driver's command monitoring for write commands no known path made. */
function watchDriver(collection: CollectionLike, watcher: Watcher): void {
  const name = collection.collectionName ?? collection.name;
  const connection = collection.conn;
  if (!name || !connection) return;
  const attach = () => {
    const client = connection.getClient?.();
    if (!client || typeof client.on !== 'function') return;
    if (client.options?.monitorCommands !== true) {
      watcher.driverMonitoring.set(name, false); // verify() says how to turn it on
      return;
    }
    watcher.driverMonitoring.set(name, true);
    marking = true;
    let byCollection = watchedClients.get(client);
    if (!byCollection) {
      watchedClients.set(client, (byCollection = new Map()));
      const pending = new Map<number, { collection: string; command: string }>();
      const seen = byCollection;
      client.on('commandStarted', (event) => {
        if (!WRITE_COMMANDS.has(event.commandName) || knownPath.getStore()) return;
        const target = event.command?.[event.commandName];
        if (typeof target === 'string' && seen.has(target)) pending.set(event.requestId, { collection: target, command: event.commandName });
      });
      client.on('commandSucceeded', (event) => {
        const write = pending.get(event.requestId);
        if (!write) return;
        pending.delete(event.requestId);
        for (const w of seen.get(write.collection) ?? []) w.unattributed(write.collection, write.command);
      });
      client.on('commandFailed', (event) => void pending.delete(event.requestId));
    }
    let watchers = byCollection.get(name);
    if (!watchers) byCollection.set(name, (watchers = new Set()));
    watchers.add(watcher);
  };
  if (connection.getClient?.()) attach();
  else connection.once?.('connected', attach);
}
