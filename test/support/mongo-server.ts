/**
 * An in-process MongoDB wire-protocol server for the test suite (never shipped): the real driver
 * talks to it over TCP, `bson` encodes, `mingo` supplies query, update and aggregation semantics.
 *
 * It answers as a standalone mongod would, including where a lenient double would hide bugs:
 * unique indexes are enforced (E11000 with keyPattern/keyValue), transaction numbers are refused
 * (code 20, as a standalone does), unknown commands and operators get MongoDB errors, never a crash.
 */
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { BSON, type Document, EJSON, Long, ObjectId } from 'bson';
import { aggregate, Query } from 'mingo';
import { update as applyOperators } from 'mingo/updater';

export interface MongoServer {
  uri: string;
  port: number;
  stop(): Promise<void>;
}

const OP_REPLY = 1;
const OP_QUERY = 2004;
const OP_MSG = 2013;
const MAX_WIRE_VERSION = 21; // MongoDB 7.0

class CommandError extends Error {
  constructor(
    message: string,
    readonly code: number,
    readonly codeName: string,
  ) {
    super(message);
  }
}

interface IndexSpec {
  name: string;
  key: Document;
  unique: boolean;
  /** For unique indexes: the document holding each key, so a write checks in O(1). */
  entries: Map<string, Document>;
}
interface Collection {
  docs: Document[];
  indexes: IndexSpec[];
}
interface WriteError {
  index: number;
  code: number;
  errmsg: string;
  keyPattern?: Document;
  keyValue?: Document;
}

const clone = (doc: Document): Document => BSON.deserialize(BSON.serialize(doc));
const sameBytes = (a: Document, b: Document): boolean => Buffer.compare(BSON.serialize(a), BSON.serialize(b)) === 0;

function getPath(doc: Document, path: string): unknown {
  let value: unknown = doc;
  for (const part of path.split('.')) value = value !== null && typeof value === 'object' ? (value as Document)[part] : undefined;
  return value;
}

function setPath(doc: Document, path: string, value: unknown): void {
  const parts = path.split('.');
  let target = doc;
  for (const part of parts.slice(0, -1)) target = (target[part] ??= {}) as Document;
  target[parts[parts.length - 1]!] = value;
}

const isOperatorDoc = (value: unknown): value is Document =>
  value !== null &&
  typeof value === 'object' &&
  !Array.isArray(value) &&
  !(value instanceof Date) &&
  Object.keys(value).length > 0 &&
  Object.keys(value).every((key) => key.startsWith('$'));

/** The fields an upsert inserts from its filter: equalities, as mongod derives them. */
function seedFromFilter(filter: Document, seed: Document = {}): Document {
  for (const [key, value] of Object.entries(filter)) {
    if (key === '$and' && Array.isArray(value)) for (const part of value) seedFromFilter(part as Document, seed);
    else if (key.startsWith('$')) continue;
    else if (!isOperatorDoc(value)) setPath(seed, key, value);
    else if ('$eq' in value) setPath(seed, key, value.$eq);
  }
  return seed;
}

export class MongoWireServer {
  private readonly databases = new Map<string, Map<string, Collection>>();
  private readonly cursors = new Map<string, { ns: string; docs: Document[] }>();
  private nextCursor = 1n;
  private connections = 0;

  private collection(db: string, name: string, create: boolean): Collection | undefined {
    let database = this.databases.get(db);
    if (!database) {
      if (!create) return undefined;
      database = new Map();
      this.databases.set(db, database);
    }
    let collection = database.get(name);
    if (!collection && create) {
      collection = { docs: [], indexes: [{ name: '_id_', key: { _id: 1 }, unique: true, entries: new Map() }] };
      database.set(name, collection);
    }
    return collection;
  }

  private uniqueViolation(ns: string, index: IndexSpec, candidate: Document, except?: Document): WriteError | undefined {
    const holder = index.entries.get(indexKey(index, candidate));
    if (!holder || holder === except) return undefined;
    const keyValue = Object.fromEntries(Object.keys(index.key).map((field) => [field, getPath(candidate, field) ?? null]));
    return {
      index: 0,
      code: 11000,
      errmsg: `E11000 duplicate key error collection: ${ns} index: ${index.name} dup key: ${EJSON.stringify(keyValue)}`,
      keyPattern: index.key,
      keyValue,
    };
  }

  private matching(collection: Collection, filter: Document | undefined, sort?: Document): Document[] {
    // The common `{ _id: value }` filter, answered from the _id index as mongod would.
    const keys = filter ? Object.keys(filter) : [];
    if (keys.length === 1 && keys[0] === '_id' && !isOperatorDoc(filter!._id)) {
      const found = collection.indexes[0]!.entries.get(indexKey(collection.indexes[0]!, filter!));
      return found ? [found] : [];
    }
    const cursor = new Query(filter ?? {}).find(collection.docs);
    return (sort && Object.keys(sort).length > 0 ? cursor.sort(sort as Record<string, 1 | -1>) : cursor).all() as Document[];
  }

  private project(docs: Document[], projection: Document | undefined): Document[] {
    if (!projection || Object.keys(projection).length === 0) return docs;
    return new Query({}).find(docs, projection).all() as Document[];
  }

  /** Applies an update (operators, replacement or pipeline) to a copy; the original is untouched. */
  private updated(
    doc: Document,
    update: Document | Document[],
    filter: Document,
    arrayFilters: Document[] | undefined,
    inserting: boolean,
  ): Document {
    let next: Document;
    if (Array.isArray(update)) {
      next = aggregate([clone(doc)], update)[0] as Document;
    } else if (isOperatorDoc(update)) {
      next = clone(doc);
      const { $setOnInsert, ...operators } = update;
      // mongod accepts setting _id to the value it already has (Mongoose's `updateOne(filter).set()` does).
      const set = operators.$set as Document | undefined;
      if (set && '_id' in set && !inserting && sameBytes({ id: set._id }, { id: doc._id })) {
        const { _id: _unchanged, ...rest } = set;
        operators.$set = rest;
      }
      if (Object.keys(operators).length > 0) applyOperators(next, operators, arrayFilters ?? [], inserting ? undefined : filter);
      if (inserting && $setOnInsert) applyOperators(next, { $set: $setOnInsert as Document });
    } else {
      const replacement = update as Document;
      if (Object.keys(replacement).some((key) => key.startsWith('$')))
        throw new CommandError('Unknown modifier in update document', 9, 'FailedToParse');
      next = { _id: doc._id, ...replacement };
    }
    if (!inserting && !sameBytes({ id: doc._id }, { id: next._id })) {
      throw new CommandError("Performing an update on the path '_id' would modify the immutable field '_id'", 66, 'ImmutableField');
    }
    if (next._id === undefined) next = { _id: new ObjectId(), ...next };
    return next;
  }

  /** Replaces `doc` by `next` (or inserts `next`), or reports the unique index it would break. */
  private store(collection: Collection, ns: string, doc: Document | undefined, next: Document): WriteError | undefined {
    const unique = collection.indexes.filter((index) => index.unique);
    for (const index of unique) {
      const violation = this.uniqueViolation(ns, index, next, doc);
      if (violation) return violation;
    }
    for (const index of unique) {
      if (doc) index.entries.delete(indexKey(index, doc));
      index.entries.set(indexKey(index, next), next);
    }
    if (doc) collection.docs[collection.docs.indexOf(doc)] = next;
    else collection.docs.push(next);
    return undefined;
  }

  private remove(collection: Collection, doc: Document): void {
    for (const index of collection.indexes) if (index.unique) index.entries.delete(indexKey(index, doc));
    collection.docs.splice(collection.docs.indexOf(doc), 1);
  }

  private cursorReply(ns: string, docs: Document[], batchSize: number | undefined, singleBatch: boolean, batchName: string): Document {
    const size = batchSize && batchSize > 0 ? batchSize : 101;
    const batch = docs.slice(0, size);
    let id = Long.ZERO;
    if (!singleBatch && docs.length > size) {
      id = Long.fromBigInt(this.nextCursor++);
      this.cursors.set(id.toString(), { ns, docs: docs.slice(size) });
    }
    return { cursor: { [batchName]: batch, id, ns }, ok: 1 };
  }

  private upsert(
    collection: Collection,
    ns: string,
    filter: Document,
    update: Document | Document[],
    arrayFilters?: Document[],
  ): { doc?: Document; error?: WriteError } {
    const seed = seedFromFilter(filter);
    const next = this.updated(
      isOperatorDoc(update) || Array.isArray(update) ? seed : { _id: seed._id },
      update,
      filter,
      arrayFilters,
      true,
    );
    const error = this.store(collection, ns, undefined, next);
    return error ? { error } : { doc: next };
  }

  command(body: Document): Document {
    const name = Object.keys(body)[0] ?? '';
    const db = String(body.$db ?? 'admin');
    if (body.txnNumber !== undefined || body.startTransaction !== undefined) {
      throw new CommandError('Transaction numbers are only allowed on a replica set member or mongos', 20, 'IllegalOperation');
    }
    const target = String(body[name]);
    const ns = `${db}.${target}`;
    switch (name.toLowerCase() === 'ismaster' ? 'hello' : name) {
      case 'hello':
        return {
          ...(name === 'hello' ? { isWritablePrimary: true } : { ismaster: true }),
          helloOk: true,
          // No topologyVersion: the driver then polls instead of streaming hello with moreToCome.
          maxBsonObjectSize: 16 * 1024 * 1024,
          maxMessageSizeBytes: 48_000_000,
          maxWriteBatchSize: 100_000,
          localTime: new Date(),
          logicalSessionTimeoutMinutes: 30,
          connectionId: this.connections,
          minWireVersion: 0,
          maxWireVersion: MAX_WIRE_VERSION,
          readOnly: false,
          ok: 1,
        };
      case 'buildInfo':
      case 'buildinfo':
        return { version: '7.0.0', versionArray: [7, 0, 0, 0], ok: 1 };
      case 'ping':
      case 'endSessions':
        return { ok: 1 };
      case 'killCursors':
        for (const id of (body.cursors as unknown[]) ?? []) this.cursors.delete(String(id));
        return { cursorsKilled: body.cursors ?? [], ok: 1 };
      case 'insert': {
        const collection = this.collection(db, target, true)!;
        const writeErrors: WriteError[] = [];
        let n = 0;
        for (const [index, raw] of ((body.documents as Document[]) ?? []).entries()) {
          const doc = raw._id === undefined ? { _id: new ObjectId(), ...raw } : raw;
          const error = this.store(collection, ns, undefined, doc);
          if (error) {
            writeErrors.push({ ...error, index });
            if (body.ordered !== false) break;
          } else n++;
        }
        return { n, ...(writeErrors.length ? { writeErrors } : {}), ok: 1 };
      }
      case 'update': {
        const collection = this.collection(db, target, true)!;
        const writeErrors: WriteError[] = [];
        const upserted: Document[] = [];
        let n = 0;
        let nModified = 0;
        for (const [index, statement] of ((body.updates as Document[]) ?? []).entries()) {
          try {
            const filter = (statement.q as Document) ?? {};
            const found = this.matching(collection, filter, statement.sort as Document | undefined);
            const targets = statement.multi ? found : found.slice(0, 1);
            if (targets.length === 0 && statement.upsert) {
              const { doc, error } = this.upsert(collection, ns, filter, statement.u as Document, statement.arrayFilters as Document[]);
              if (error) throw Object.assign(new CommandError(error.errmsg, 11000, 'DuplicateKey'), { detail: error });
              upserted.push({ index, _id: doc!._id });
              n++;
              continue;
            }
            for (const doc of targets) {
              const next = this.updated(doc, statement.u as Document, filter, statement.arrayFilters as Document[], false);
              n++;
              if (sameBytes(doc, next)) continue;
              const error = this.store(collection, ns, doc, next);
              if (error) throw Object.assign(new CommandError(error.errmsg, 11000, 'DuplicateKey'), { detail: error });
              nModified++;
            }
          } catch (error) {
            writeErrors.push(toWriteError(error, index));
            if (body.ordered !== false) break;
          }
        }
        return { n, nModified, ...(upserted.length ? { upserted } : {}), ...(writeErrors.length ? { writeErrors } : {}), ok: 1 };
      }
      case 'delete': {
        const collection = this.collection(db, target, false);
        let n = 0;
        for (const statement of (body.deletes as Document[]) ?? []) {
          if (!collection) break;
          const found = this.matching(collection, statement.q as Document);
          for (const doc of statement.limit === 1 ? found.slice(0, 1) : found) {
            this.remove(collection, doc);
            n++;
          }
        }
        return { n, ok: 1 };
      }
      case 'bulkWrite': {
        // MongoDB 8.0's client-level bulk write (the driver's client.bulkWrite), each op run as the
        // single-collection command it stands for; errorsOnly leaves successes out of the cursor.
        const nsInfo = (body.nsInfo as Document[]) ?? [];
        const results: Document[] = [];
        const counts = { nInserted: 0, nMatched: 0, nModified: 0, nUpserted: 0, nDeleted: 0 };
        let nErrors = 0;
        for (const [idx, op] of ((body.ops as Document[]) ?? []).entries()) {
          const verb = 'insert' in op ? 'insert' : 'update' in op ? 'update' : 'delete';
          const ns = String(nsInfo[Number(op[verb])]?.ns);
          const $db = ns.slice(0, ns.indexOf('.'));
          const collection = ns.slice(ns.indexOf('.') + 1);
          const reply =
            verb === 'insert'
              ? this.command({ insert: collection, documents: [op.document], $db })
              : verb === 'update'
                ? this.command({
                    update: collection,
                    updates: [{ q: op.filter, u: op.updateMods, multi: op.multi, upsert: op.upsert, arrayFilters: op.arrayFilters }],
                    $db,
                  })
                : this.command({ delete: collection, deletes: [{ q: op.filter, limit: op.multi ? 0 : 1 }], $db });
          const error = (reply.writeErrors as WriteError[] | undefined)?.[0];
          if (error) {
            nErrors++;
            results.push({ ok: 0, idx, code: error.code, errmsg: error.errmsg });
            if (body.ordered !== false) break;
            continue;
          }
          const n = Number(reply.n);
          const upserted = (reply.upserted as Document[] | undefined)?.[0];
          if (verb === 'insert') counts.nInserted += n;
          else if (verb === 'delete') counts.nDeleted += n;
          else if (upserted) counts.nUpserted++;
          else {
            counts.nMatched += n;
            counts.nModified += Number(reply.nModified);
          }
          if (!body.errorsOnly)
            results.push({
              ok: 1,
              idx,
              n,
              ...(verb === 'update' ? { nModified: reply.nModified, ...(upserted ? { upserted: { _id: upserted._id } } : {}) } : {}),
            });
        }
        return { cursor: { id: Long.ZERO, firstBatch: results, ns: 'admin.$cmd.bulkWrite' }, nErrors, ...counts, ok: 1 };
      }
      case 'find': {
        const collection = this.collection(db, target, false);
        let docs = collection ? this.matching(collection, body.filter as Document, body.sort as Document) : [];
        docs = docs.slice(Number(body.skip ?? 0));
        const limit = Math.abs(Number(body.limit ?? 0));
        if (limit > 0) docs = docs.slice(0, limit);
        const single = Boolean(body.singleBatch) || Number(body.limit ?? 0) < 0;
        return this.cursorReply(ns, this.project(docs, body.projection as Document), body.batchSize as number, single, 'firstBatch');
      }
      case 'getMore': {
        const key = String(body.getMore);
        const cursor = this.cursors.get(key);
        if (!cursor) throw new CommandError(`cursor id ${key} not found`, 43, 'CursorNotFound');
        this.cursors.delete(key);
        return this.cursorReply(cursor.ns, cursor.docs, body.batchSize as number, false, 'nextBatch');
      }
      case 'aggregate': {
        const collection = this.collection(db, target, false);
        const pipeline = (body.pipeline as Document[]) ?? [];
        const writeAt = pipeline.findIndex((stage) => '$out' in stage || '$merge' in stage);
        if (writeAt >= 0 && writeAt !== pipeline.length - 1) {
          const stage = '$out' in pipeline[writeAt]! ? '$out' : '$merge';
          throw new CommandError(`${stage} can only be the final stage in the pipeline`, 40601, 'Location40601');
        }
        const docs = aggregate(collection?.docs ?? [], writeAt >= 0 ? pipeline.slice(0, -1) : pipeline) as Document[];
        if (writeAt >= 0) {
          this.writeStage(db, pipeline[writeAt]!, docs);
          return { cursor: { firstBatch: [], id: Long.ZERO, ns }, ok: 1 };
        }
        return this.cursorReply(ns, docs, (body.cursor as Document | undefined)?.batchSize as number, false, 'firstBatch');
      }
      case 'count': {
        const collection = this.collection(db, target, false);
        let docs = collection ? this.matching(collection, body.query as Document) : [];
        docs = docs.slice(Number(body.skip ?? 0));
        if (body.limit) docs = docs.slice(0, Math.abs(Number(body.limit)));
        return { n: docs.length, ok: 1 };
      }
      case 'distinct': {
        const collection = this.collection(db, target, false);
        const values = new Map<string, unknown>();
        for (const doc of collection ? this.matching(collection, body.query as Document) : []) {
          const value = getPath(doc, String(body.key));
          for (const item of Array.isArray(value) ? value : [value]) {
            if (item !== undefined) values.set(EJSON.stringify({ v: item }, { relaxed: false }), item);
          }
        }
        return { values: [...values.values()], ok: 1 };
      }
      case 'findAndModify': {
        const collection = this.collection(db, target, true)!;
        const filter = (body.query as Document) ?? {};
        const doc = this.matching(collection, filter, body.sort as Document)[0];
        const fields = body.fields as Document | undefined;
        const reply = (value: Document | undefined, lastErrorObject: Document) => ({
          lastErrorObject,
          value: value ? this.project([value], fields)[0]! : null,
          ok: 1,
        });
        if (body.remove) {
          if (body.update) throw new CommandError('Cannot specify both an update and remove=true', 9, 'FailedToParse');
          if (doc) this.remove(collection, doc);
          return reply(doc, { n: doc ? 1 : 0 });
        }
        if (!body.update) throw new CommandError('Either an update or remove=true must be specified', 9, 'FailedToParse');
        if (!doc) {
          if (!body.upsert) return reply(undefined, { n: 0, updatedExisting: false });
          const { doc: inserted, error } = this.upsert(collection, ns, filter, body.update as Document, body.arrayFilters as Document[]);
          if (error) throw duplicateKey(error);
          return reply(body.new ? inserted : undefined, { n: 1, updatedExisting: false, upserted: inserted!._id });
        }
        const next = this.updated(doc, body.update as Document, filter, body.arrayFilters as Document[], false);
        if (!sameBytes(doc, next)) {
          const error = this.store(collection, ns, doc, next);
          if (error) throw duplicateKey(error);
        }
        return reply(body.new ? next : doc, { n: 1, updatedExisting: true });
      }
      case 'createIndexes': {
        const created = !this.collection(db, target, false);
        const collection = this.collection(db, target, true)!;
        const before = collection.indexes.length;
        for (const spec of (body.indexes as Document[]) ?? []) {
          const index: IndexSpec = { name: String(spec.name), key: spec.key as Document, unique: Boolean(spec.unique), entries: new Map() };
          const existing = collection.indexes.find((known) => known.name === index.name);
          if (existing) {
            if (!sameBytes(existing.key, index.key) || existing.unique !== index.unique) {
              throw new CommandError(
                `An existing index has the same name as the requested index: ${index.name}`,
                86,
                'IndexKeySpecsConflict',
              );
            }
            continue;
          }
          if (index.unique) {
            for (const doc of collection.docs) {
              const error = this.uniqueViolation(ns, index, doc);
              if (error) throw duplicateKey(error);
              index.entries.set(indexKey(index, doc), doc);
            }
          }
          collection.indexes.push(index);
        }
        return { createdCollectionAutomatically: created, numIndexesBefore: before, numIndexesAfter: collection.indexes.length, ok: 1 };
      }
      case 'listIndexes': {
        const collection = this.collection(db, target, false);
        if (!collection) throw new CommandError(`ns does not exist: ${ns}`, 26, 'NamespaceNotFound');
        const specs = collection.indexes.map((index) => ({
          v: 2,
          key: index.key,
          name: index.name,
          ...(index.unique && index.name !== '_id_' ? { unique: true } : {}),
        }));
        return this.cursorReply(ns, specs, undefined, false, 'firstBatch');
      }
      case 'listCollections': {
        const names = [...(this.databases.get(db)?.keys() ?? [])];
        return this.cursorReply(
          `${db}.$cmd.listCollections`,
          names.map((n) => ({ name: n, type: 'collection', options: {}, info: { readOnly: false } })),
          undefined,
          false,
          'firstBatch',
        );
      }
      case 'create':
        if (this.collection(db, target, false)) throw new CommandError(`Collection ${ns} already exists.`, 48, 'NamespaceExists');
        this.collection(db, target, true);
        return { ok: 1 };
      case 'drop': {
        // MongoDB 7.0 (the version this server reports) answers ok for a collection that does not exist.
        onlyFields(body, name, ['writeConcern', 'comment']);
        const dropped = this.collection(db, target, false);
        if (!dropped) return { ok: 1 };
        this.databases.get(db)!.delete(target);
        return { nIndexesWas: dropped.indexes.length, ns, ok: 1 };
      }
      case 'dropDatabase':
        onlyFields(body, name, ['writeConcern', 'comment']);
        this.databases.delete(db);
        return { dropped: db, ok: 1 };
      case 'renameCollection':
        onlyFields(body, name, ['to', 'dropTarget', 'stayTemp', 'writeConcern', 'comment']);
        this.rename(db, body);
        return { ok: 1 };
      default:
        throw new CommandError(`no such command: '${name}'`, 59, 'CommandNotFound');
    }
  }

  /** A namespace (`db.collection`) split in two, or a MongoDB error for anything else. */
  private static namespace(value: unknown, field: string): [string, string] {
    const ns = typeof value === 'string' ? value : '';
    const dot = ns.indexOf('.');
    if (dot <= 0 || dot === ns.length - 1) throw new CommandError(`Invalid ${field} namespace: ${String(value)}`, 73, 'InvalidNamespace');
    return [ns.slice(0, dot), ns.slice(dot + 1)];
  }

  /** `renameCollection` (an admin command): `dropTarget` replaces an existing target, else NamespaceExists. */
  private rename(db: string, body: Document): void {
    if (db !== 'admin') throw new CommandError('renameCollection may only be run against the admin database.', 13, 'Unauthorized');
    const [fromDb, fromName] = MongoWireServer.namespace(body.renameCollection, 'source');
    const [toDb, toName] = MongoWireServer.namespace(body.to, 'target');
    if (fromDb === toDb && fromName === toName) throw new CommandError("Can't rename a collection to itself", 20, 'IllegalOperation');
    const source = this.collection(fromDb, fromName, false);
    if (!source) throw new CommandError(`Source collection ${fromDb}.${fromName} does not exist`, 26, 'NamespaceNotFound');
    if (this.collection(toDb, toName, false)) {
      if (body.dropTarget !== true) throw new CommandError('target namespace exists', 48, 'NamespaceExists');
      this.databases.get(toDb)!.delete(toName);
    }
    this.databases.get(fromDb)!.delete(fromName);
    this.collection(toDb, toName, true);
    this.databases.get(toDb)!.set(toName, source);
  }

  /** The collection a `$out`/`$merge` stage writes to: a name in this database, or `{ db, coll }`. */
  private static stageTarget(db: string, value: unknown, stage: string): [string, string] {
    if (typeof value === 'string' && value !== '') return [db, value];
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const target = value as Document;
      onlyFields(target, stage, ['db', 'coll']);
      if (typeof target.coll === 'string' && target.coll !== '') return [typeof target.db === 'string' ? target.db : db, target.coll];
    }
    throw new CommandError(`${stage} requires a collection name or { db, coll }`, 13111, 'Location13111');
  }

  /** Runs the final `$out` (replaces the target whole, or not at all) or `$merge` (per document) stage. */
  private writeStage(db: string, stage: Document, docs: Document[]): void {
    if ('$out' in stage) {
      const [outDb, outName] = MongoWireServer.stageTarget(db, stage.$out, '$out');
      // The new collection is built aside, with the old one's indexes, and swapped in only when every document fits.
      const old = this.collection(outDb, outName, false);
      const next: Collection = {
        docs: [],
        indexes: (old?.indexes ?? [{ name: '_id_', key: { _id: 1 }, unique: true, entries: new Map() }]).map((index) => ({
          ...index,
          entries: new Map(),
        })),
      };
      for (const raw of docs) {
        const error = this.store(next, `${outDb}.${outName}`, undefined, raw._id === undefined ? { _id: new ObjectId(), ...raw } : raw);
        if (error) throw duplicateKey(error);
      }
      this.collection(outDb, outName, true);
      this.databases.get(outDb)!.set(outName, next);
      return;
    }
    const spec: Document = typeof stage.$merge === 'string' ? { into: stage.$merge } : (stage.$merge as Document);
    if (spec === null || typeof spec !== 'object') {
      throw new CommandError('$merge requires a collection name or a document', 14, 'TypeMismatch');
    }
    onlyFields(spec, '$merge', ['into', 'on', 'whenMatched', 'whenNotMatched']);
    const [intoDb, intoName] = MongoWireServer.stageTarget(db, spec.into, '$merge');
    const on = spec.on === undefined ? ['_id'] : typeof spec.on === 'string' ? [spec.on] : (spec.on as string[]);
    const whenMatched = spec.whenMatched ?? 'merge';
    const whenNotMatched = spec.whenNotMatched ?? 'insert';
    if (Array.isArray(whenMatched)) {
      throw new CommandError('$merge with a whenMatched pipeline is not supported by the test server', 115, 'CommandNotSupported');
    }
    const matchedModes = ['merge', 'replace', 'keepExisting', 'fail'];
    if (!matchedModes.includes(String(whenMatched)) || !['insert', 'discard', 'fail'].includes(String(whenNotMatched))) {
      const given = `${String(whenMatched)} / ${String(whenNotMatched)}`;
      throw new CommandError(`Enumeration value for $merge is not valid: ${given}`, 2, 'BadValue');
    }
    const target = this.collection(intoDb, intoName, true)!;
    const ns = `${intoDb}.${intoName}`;
    const onId = on.length === 1 && on[0] === '_id';
    const covered = target.indexes.some(
      (index) => index.unique && Object.keys(index.key).length === on.length && on.every((field) => field in index.key),
    );
    if (!onId && !covered) throw new CommandError('Cannot find index to verify that join fields will be unique', 51183, 'Location51183');
    for (const raw of docs) {
      const filter = Object.fromEntries(on.map((field) => [field, getPath(raw, field) ?? null]));
      const found = this.matching(target, filter)[0];
      let next: Document | undefined;
      if (!found) {
        if (whenNotMatched === 'fail') {
          const message = '$merge could not find a matching document in the target collection';
          throw new CommandError(message, 13113, 'MergeStageNoMatchingDocument');
        }
        if (whenNotMatched === 'discard') continue;
        next = raw._id === undefined ? { _id: new ObjectId(), ...raw } : raw;
      } else if (whenMatched === 'fail') {
        throw duplicateKey({ index: 0, code: 11000, errmsg: `E11000 duplicate key error collection: ${ns}`, keyValue: filter });
      } else if (whenMatched === 'keepExisting') {
        continue;
      } else {
        const { _id: _ignored, ...fields } = raw;
        next = whenMatched === 'replace' ? { _id: found._id, ...fields } : { ...found, ...fields };
      }
      const error = this.store(target, ns, found, next);
      if (error) throw duplicateKey(error);
    }
  }

  /** A command's reply, with every failure turned into the error document mongod would send. */
  reply(body: Document): Document {
    try {
      return this.command(body);
    } catch (error) {
      const known = asCommandError(error);
      const extra = error instanceof CommandError ? { ...(error as { keyPattern?: Document }) } : {};
      return { ok: 0, errmsg: known.message, code: known.code, codeName: known.codeName, ...pick(extra, ['keyPattern', 'keyValue']) };
    }
  }

  handle(socket: Socket): void {
    this.connections++;
    let pending = Buffer.alloc(0);
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 4) {
        const length = pending.readInt32LE(0);
        if (length < 16 || length > 48_000_000) return socket.destroy();
        if (pending.length < length) return;
        const message = pending.subarray(0, length);
        pending = pending.subarray(length);
        const response = this.respond(message);
        if (response) socket.write(response);
      }
    });
  }

  private respond(message: Buffer): Buffer | undefined {
    const requestId = message.readInt32LE(4);
    const opCode = message.readInt32LE(12);
    if (opCode === OP_MSG) {
      const flags = message.readUInt32LE(16);
      const end = flags & 1 ? message.length - 4 : message.length;
      let offset = 20;
      let body: Document = {};
      while (offset < end) {
        const kind = message[offset++];
        if (kind === 0) {
          const size = message.readInt32LE(offset);
          body = BSON.deserialize(message.subarray(offset, offset + size));
          offset += size;
        } else {
          const size = message.readInt32LE(offset);
          const sectionEnd = offset + size;
          const nameEnd = message.indexOf(0, offset + 4);
          const identifier = message.toString('utf8', offset + 4, nameEnd);
          const docs: Document[] = [];
          for (let at = nameEnd + 1; at < sectionEnd; at += message.readInt32LE(at))
            docs.push(BSON.deserialize(message.subarray(at, at + message.readInt32LE(at))));
          body[identifier] = docs;
          offset = sectionEnd;
        }
      }
      const reply = this.reply(body);
      if (flags & 2) return undefined; // moreToCome: the client expects no answer
      const payload = BSON.serialize(reply);
      const header = Buffer.alloc(21);
      header.writeInt32LE(21 + payload.length, 0);
      header.writeInt32LE(requestId, 8);
      header.writeInt32LE(OP_MSG, 12);
      header.writeUInt32LE(0, 16);
      header[20] = 0;
      return Buffer.concat([header, payload]);
    }
    if (opCode === OP_QUERY) {
      const nameEnd = message.indexOf(0, 20);
      const collection = message.toString('utf8', 20, nameEnd);
      const queryStart = nameEnd + 1 + 8;
      let query = BSON.deserialize(message.subarray(queryStart, queryStart + message.readInt32LE(queryStart)));
      if ('$query' in query) query = query.$query as Document;
      const reply = collection.endsWith('.$cmd')
        ? this.reply({ ...query, $db: collection.slice(0, -5) })
        : { ok: 0, errmsg: 'OP_QUERY is only supported for commands', code: 352, codeName: 'UnsupportedOpQueryCommand' };
      const payload = BSON.serialize(reply);
      const header = Buffer.alloc(36);
      header.writeInt32LE(36 + payload.length, 0);
      header.writeInt32LE(requestId, 8);
      header.writeInt32LE(OP_REPLY, 12);
      header.writeBigInt64LE(0n, 20);
      header.writeInt32LE(1, 32);
      return Buffer.concat([header, payload]);
    }
    return undefined; // legacy opcodes: mongod closes nothing, answers nothing
  }
}

/** A unique index's key for a document: missing fields index as null, as in mongod. */
function indexKey(index: IndexSpec, doc: Document): string {
  return EJSON.stringify(
    Object.keys(index.key).map((field) => getPath(doc, field) ?? null),
    { relaxed: false },
  );
}

// Fields the driver may put on any command.
const GENERIC_FIELDS = new Set([
  '$db',
  'lsid',
  '$clusterTime',
  '$readPreference',
  'apiVersion',
  'apiStrict',
  'apiDeprecationErrors',
  'maxTimeMS',
]);

/** mongod (5.0+) refuses a field a command does not know, rather than ignoring it. */
function onlyFields(body: Document, command: string, known: string[]): void {
  const first = Object.keys(body)[0];
  for (const key of Object.keys(body)) {
    if (key === first && key === command) continue;
    if (!known.includes(key) && !GENERIC_FIELDS.has(key)) {
      throw new CommandError(`BSON field '${command}.${key}' is an unknown field.`, 40415, 'Location40415');
    }
  }
}

function pick(source: Document, keys: string[]): Document {
  return Object.fromEntries(keys.filter((key) => source[key] !== undefined).map((key) => [key, source[key]]));
}

function duplicateKey(error: WriteError): CommandError {
  return Object.assign(new CommandError(error.errmsg, 11000, 'DuplicateKey'), { keyPattern: error.keyPattern, keyValue: error.keyValue });
}

/** mingo's own errors, given the codes mongod uses for the same mistakes. */
function asCommandError(error: unknown): CommandError {
  if (error instanceof CommandError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (/immutable field '_id'/.test(message)) return new CommandError(message, 66, 'ImmutableField');
  if (/unknown update operator/i.test(message)) return new CommandError(message, 9, 'FailedToParse');
  return new CommandError(message, 2, 'BadValue');
}

function toWriteError(error: unknown, index: number): WriteError {
  const detail = (error as { detail?: WriteError }).detail;
  if (detail) return { ...detail, index };
  const known = asCommandError(error);
  return { index, code: known.code, errmsg: known.message };
}

export async function startMongoServer(port = 0): Promise<MongoServer> {
  const state = new MongoWireServer();
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    state.handle(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    uri: `mongodb://127.0.0.1:${actual}/?directConnection=true`,
    port: actual,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
