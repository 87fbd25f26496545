/**
 * Invisible to the app: the same scenario runs on a plain model and on an instrumented one (every
 * write rogue, so every path of the plugin runs), and what the app can observe must be identical:
 * the documents (timestamps, `__v`, subdocuments, defaults), which hooks fired in which order
 * (document and subdocument, query and model, pre/post, error handlers), the errors raised, and the
 * commands the driver sent. Mongoose's own test suite is the wider judge
 * (scripts/mongoose-suite, docs/mongoose-suite.md); this is the part CI can run.
 */
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import mongoose, { type Connection, Schema } from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tripwire } from '../src/plugin.js';
import type { BypassReport } from '../src/types.js';
import { verify } from '../src/verify.js';
// @ts-expect-error plain ESM fixtures without types
import { fixtureDir } from './fixtures/app/matrix.mjs';
import { settle, waitFor } from './support/wait.js';

// Mongoose's base Query class, built by hand as an app can (its types declare no constructor arguments).
const BaseQuery = mongoose.Query as unknown as new (
  filter: object,
  options: object,
  model: unknown,
  collection: unknown,
) => mongoose.Query<unknown, unknown>;

type Model = mongoose.Model<Record<string, unknown>>;
type Doc = mongoose.Document & Record<string, unknown>;

let connection: Connection;
const commands: Array<{ name: string; command: Record<string, unknown> }> = [];
let count = 0;

beforeAll(async () => {
  connection = await mongoose
    .createConnection(process.env.MONGODB_URI!, { dbName: `transparency_${process.pid}`, monitorCommands: true })
    .asPromise();
  connection.getClient().on('commandStarted', (event) => {
    if (['insert', 'update', 'delete', 'findAndModify', 'find'].includes(event.commandName))
      commands.push({ name: event.commandName, command: event.command });
  });
});
afterAll(async () => {
  await connection?.close();
});

/** A token schema with every kind of hook an app has, logging into `log`. */
function schemaFor(log: string[]): Schema {
  const hook = (label: string) => () => {
    log.push(label);
  };
  const item = new Schema({ n: Number, label: { type: String, default: 'item' } }, { timestamps: true });
  for (const name of ['save', 'validate', 'deleteOne'] as const) {
    item.pre(name, { document: true, query: false }, hook(`item pre ${name}`));
    item.post(name, { document: true, query: false }, hook(`item post ${name}`));
  }
  const single = new Schema({ s: String }, { timestamps: true });
  single.pre('save', hook('single pre save'));
  single.post('save', hook('single post save'));
  const schema = new Schema(
    { token: { type: String, required: true, unique: true }, n: { type: Number, default: 0 }, items: [item], single, tags: [String] },
    { timestamps: true },
  );
  for (const name of ['save', 'validate'] as const) {
    schema.pre(name, hook(`doc pre ${name}`));
    schema.post(name, hook(`doc post ${name}`));
  }
  for (const name of ['deleteOne', 'updateOne'] as const) {
    schema.pre(name, { document: true, query: false }, hook(`doc pre ${name}`));
    schema.post(name, { document: true, query: false }, hook(`doc post ${name}`));
  }
  const queries = [
    'updateOne',
    'updateMany',
    'replaceOne',
    'findOneAndUpdate',
    'findOneAndReplace',
    'findOneAndDelete',
    'deleteOne',
    'deleteMany',
    'find',
    'findOne',
  ] as const;
  for (const name of queries) {
    schema.pre(name, { document: false, query: true }, hook(`query pre ${name}`));
    schema.post(name, { document: false, query: true }, hook(`query post ${name}`));
  }
  schema.pre('insertMany', hook('model pre insertMany'));
  schema.post('insertMany', hook('model post insertMany'));
  schema.pre('bulkWrite', hook('model pre bulkWrite'));
  schema.post('bulkWrite', hook('model post bulkWrite'));
  // An error-handling post hook (three parameters): Mongoose runs it only when the save failed.
  const onSaveError = (error: unknown, _doc: unknown, next: (e?: unknown) => void) => {
    log.push(`doc post save error ${(error as { code?: number }).code ?? (error as Error).name}`);
    next(error);
  };
  (schema.post as (name: string, fn: typeof onSaveError) => Schema)('save', onSaveError);
  return schema;
}

/** What the app can observe of a run, with ids, dates and collection names made comparable. */
function normalise(value: unknown, ids: Map<string, string>, seen = new WeakSet<object>()): unknown {
  if (value instanceof Date) return '<date>';
  if (value instanceof mongoose.Document) return normalise(value.toObject(), ids, seen);
  if (
    value instanceof mongoose.Types.ObjectId ||
    (value && typeof value === 'object' && (value as { _bsontype?: string })._bsontype === 'ObjectId')
  ) {
    const hex = String(value);
    if (!ids.has(hex)) ids.set(hex, `<id${ids.size}>`);
    return ids.get(hex);
  }
  if (value && typeof value === 'object') {
    if (seen.has(value)) return '<cycle>';
    seen.add(value);
    const bson = (value as { _bsontype?: string })._bsontype;
    if (bson) return `<${bson}>`;
    if (Buffer.isBuffer(value)) return '<buffer>';
  }
  if (Array.isArray(value)) return value.map((v) => normalise(v, ids, seen));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
      if (['lsid', '$clusterTime', '$db', 'txnNumber'].includes(key)) continue;
      out[key] = typeof v === 'string' && /^(?:Plain|Watched)\d+$/i.test(v) ? '<collection>' : normalise(v, ids, seen);
    }
    return out;
  }
  return typeof value === 'string' ? value.replace(/\b(?:plain|watched)\d+s?\b/gi, '<collection>') : value;
}

function describeError(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const e = error as Error & { code?: unknown; insertedDocs?: unknown[]; result?: { insertedCount?: number } };
  return {
    name: e.name,
    message: normalise(e.message, new Map()),
    code: e.code,
    inserted: e.insertedDocs?.length ?? e.result?.insertedCount,
  };
}

/** Every entry point the plugin wraps, with subdocuments, timestamps, failures and skipped middleware. */
async function scenario(M: Model, log: string[]): Promise<unknown[]> {
  const seen: unknown[] = [];
  const step = async (label: string, run: () => Promise<unknown>) => {
    log.push(`-- ${label}`);
    try {
      const result = await run();
      seen.push(
        label,
        result instanceof mongoose.Document
          ? result.toObject()
          : Array.isArray(result)
            ? result.map((r) => (r instanceof mongoose.Document ? r.toObject() : r))
            : result,
      );
    } catch (error) {
      seen.push(label, 'threw', describeError(error));
    }
  };
  let doc!: Doc;
  await step(
    'create',
    async () => (doc = (await M.create({ token: 'a', items: [{ n: 1 }, { n: 2 }], single: { s: 'x' } })) as unknown as Doc),
  );
  await step('create array', () => M.create([{ token: 'b' }, { token: 'c', items: [{ n: 3 }] }]));
  await step('create ordered', () => M.create([{ token: 'd' }, { token: 'e' }], { ordered: true }));
  await step('insertOne', () => M.insertOne({ token: 'f', single: { s: 'y' } }));
  await step('save modified with a removed subdoc', async () => {
    doc.set('n', 5);
    (doc.items as unknown as { pull(q: object): void }).pull({ n: 1 });
    (doc.items as unknown as Array<object>).push({ n: 9 });
    return doc.save();
  });
  await step('save unmodified', () => doc.save());
  await step('new Model().save()', () => new M({ token: 'g' }).save());
  await step('$save', () => (new M({ token: 'h' }) as unknown as { $save(): Promise<unknown> }).$save());
  await step('validation error', () => M.create({ n: 1 }));
  await step('duplicate key', () => M.create({ token: 'a' }));
  await step('insertMany', () => M.insertMany([{ token: 'i', items: [{ n: 1 }] }, { token: 'j' }]));
  await step('insertMany partial', () => M.insertMany([{ token: 'k' }, { token: 'a' }, { token: 'l' }], { ordered: false }));
  await step('insertMany rawResult', () => M.insertMany([{ token: 'm' }], { rawResult: true }));
  await step('bulkWrite', () =>
    M.bulkWrite([
      { insertOne: { document: { token: 'n' } } },
      { updateOne: { filter: { token: 'b' }, update: { $set: { n: 2 } } } },
      { deleteOne: { filter: { token: 'c' } } },
    ]),
  );
  await step('bulkSave', async () => {
    const fresh = new M({ token: 'o', items: [{ n: 4 }] });
    const old = (await M.findOne({ token: 'd' }))!;
    old.set('n', 7);
    return M.bulkSave([fresh, old]);
  });
  await step('updateOne', () => M.updateOne({ token: 'e' }, { $set: { n: 3 }, $push: { items: { n: 5 } } }));
  await step('updateMany', () => M.updateMany({ n: { $gte: 0 } }, { $inc: { n: 1 } }));
  await step('replaceOne', () => M.replaceOne({ token: 'f' }, { token: 'f2' }));
  await step('findOneAndUpdate', () => M.findOneAndUpdate({ token: 'g' }, { $set: { single: { s: 'z' } } }, { new: true }));
  await step('findOneAndReplace', () => M.findOneAndReplace({ token: 'h' }, { token: 'h2' }, { returnDocument: 'after' }));
  await step('findOneAndDelete', () => M.findOneAndDelete({ token: 'i' }));
  await step('doc.updateOne()', () => doc.updateOne({ $set: { n: 11 } }));
  await step('chained query', () =>
    M.find({ token: 'j' })
      .updateOne({}, { $set: { n: 12 } })
      .exec(),
  );
  await step(
    '.then()',
    () => new Promise((resolve, reject) => void M.updateOne({ token: 'j' }, { $set: { n: 13 } }).then(resolve, reject)),
  );
  await step('middleware: false', () => M.updateOne({ token: 'k' }, { $set: { n: 14 } }, { middleware: false }));
  await step('save middleware: false', async () => (await M.findOne({ token: 'k' }))!.set('n', 15).save({ middleware: false }));
  await step('create middleware: { post: false }', () => M.create([{ token: 'p' }], { middleware: { post: false } }));
  await step('hand-built Query', () => new BaseQuery({ token: 'p' }, {}, M, M.collection).updateMany({}, { $set: { n: 2 } }));
  await step('collection.insertOne', () => M.collection.insertOne({ token: 'q' }));
  await step('collection.updateMany', () => M.collection.updateMany({ token: 'q' }, { $set: { n: 1 } }));
  await step('doc.deleteOne()', () => doc.deleteOne());
  await step('deleteOne', () => M.deleteOne({ token: 'j' }));
  await step('deleteMany', () => M.deleteMany({}));
  await step('final state', () => M.find().sort({ token: 1 }).lean());
  return seen;
}

async function observe(instrumented: boolean) {
  const log: string[] = [];
  const reports: BypassReport[] = [];
  const schema = schemaFor(log);
  if (instrumented) {
    schema.plugin(tripwire, {
      approved: ['auth/**'],
      root: fixtureDir as string,
      statsd: false,
      rateLimit: false,
      onBypass: (r) => void reports.push(r),
      onError: () => undefined,
    });
  }
  const M = connection.model(`${instrumented ? 'Watched' : 'Plain'}${++count}`, schema) as unknown as Model;
  await M.init();
  commands.length = 0;
  const ids = new Map<string, string>();
  const results = await scenario(M, log);
  // Reports of the scenario's awaited writes are delivered on setImmediate: done before a timer fires.
  await settle(10);
  return { M, reports, observed: normalise({ results, log, commands: commands.splice(0) }, ids) };
}

describe('transparency', () => {
  it('an instrumented model behaves exactly as a plain one: documents, hooks and their order, errors, driver commands', async () => {
    const plain = await observe(false);
    const watched = await observe(true);
    expect(watched.observed).toEqual(plain.observed);
    // The comparison means something only if the plugin really saw these writes.
    expect(new Set(watched.reports.map((r) => r.operation))).toEqual(
      new Set([
        'create',
        'insertOne',
        'save',
        'insertMany',
        'bulkWrite',
        'bulkSave',
        'updateOne',
        'updateMany',
        'replaceOne',
        'findOneAndUpdate',
        'findOneAndReplace',
        'findOneAndDelete',
        'deleteOne',
        'deleteMany',
        'collection.insertOne',
        'collection.updateMany',
      ]),
    );
    // And the scenario really exercised what it claims: timestamps and subdocument hooks ran.
    expect((plain.observed as { log: string[] }).log).toEqual(
      expect.arrayContaining(['item pre save', 'item post deleteOne', 'single pre save', 'doc post save error 11000']),
    );
  });

  it('keeps Model.collection one object with connection.collections[name] and doc.collection, which a spy sees Mongoose use', async () => {
    const schema = new Schema({ token: String });
    schema.plugin(tripwire, {
      approved: ['auth/**'],
      root: fixtureDir as string,
      statsd: false,
      onBypass: () => undefined,
      onError: () => undefined,
    });
    const M = connection.model(`Identity${++count}`, schema) as unknown as Model;
    const doc = new M({ token: 't' });
    expect(M.collection).toBe(connection.collections[M.collection.name]);
    expect(doc.collection).toBe(M.collection);
    const calls: unknown[][] = [];
    const wrapped = M.collection.insertOne;
    const spy = function (this: unknown, ...args: unknown[]) {
      calls.push(args);
      return (wrapped as (...a: unknown[]) => unknown).apply(this, args);
    };
    (M.collection as unknown as Record<string, unknown>).insertOne = spy;
    try {
      await M.create({ token: 'u' });
      expect(calls).toHaveLength(1);
    } finally {
      delete (M.collection as unknown as Record<string, unknown>).insertOne;
      (M.collection as unknown as Record<string, unknown>).insertOne = wrapped;
    }
  });

  it(
    "the driver's own collection methods keep their names, and give a watched collection the same results and errors as a plain " + 'one',
    async () => {
      const schema = new Schema({ token: { type: String, unique: true } });
      schema.plugin(tripwire, {
        approved: ['auth/**'],
        root: fixtureDir as string,
        statsd: false,
        onBypass: () => undefined,
        onError: () => undefined,
      });
      const M = connection.model(`DriverRoute${++count}`, schema) as unknown as Model;
      await M.init();
      const proto = mongoose.mongo.Collection.prototype as unknown as Record<string, { name: string }>;
      for (const method of [
        'insertOne',
        'insertMany',
        'updateOne',
        'bulkWrite',
        'findOneAndUpdate',
        'deleteMany',
        'initializeOrderedBulkOp',
      ])
        expect(proto[method]!.name).toBe(method);
      // The client-level bulk writes too (wrapped on the driver's MongoClient and Mongoose's Connection).
      expect([mongoose.mongo.MongoClient.prototype.bulkWrite, connection.bulkWrite].map((fn) => [fn.name, fn.length])).toEqual([
        ['bulkWrite', 2],
        ['bulkWrite', 2],
      ]);
      const plain = connection.db!.collection(`plain_driver_${count}`);
      await plain.createIndex({ token: 1 }, { unique: true });
      const run = async (c: mongoose.mongo.Collection) => {
        const inserted = await c.insertOne({ token: 'a' });
        const duplicate = await c
          .insertOne({ token: 'a' })
          .catch((error: Error & { code?: number }) => [error.constructor.name, error.code]);
        const bulk = c.initializeOrderedBulkOp();
        bulk.insert({ token: 'b' });
        bulk.find({ token: 'a' }).updateOne({ $set: { n: 1 } });
        const executed = await bulk.execute();
        const partial = await c
          .insertMany([{ token: 'c' }, { token: 'a' }, { token: 'd' }], { ordered: false })
          .catch((error: Error & { result?: { insertedCount: number } }) => [error.constructor.name, error.result?.insertedCount]);
        const updated = await c.findOneAndUpdate({ token: 'a' }, { $set: { n: 2 } }, { returnDocument: 'after', projection: { _id: 0 } });
        return {
          inserted: Object.keys(inserted),
          duplicate,
          executed: [executed.insertedCount, executed.matchedCount, executed.modifiedCount],
          partial,
          updated,
        };
      };
      const watched = await run(connection.db!.collection(M.collection.collectionName));
      expect(watched).toEqual(await run(plain));
      expect(watched.duplicate).toEqual(['MongoServerError', 11000]);
      // Called on something that is no driver collection, the driver's method rejects, as without the plugin (it never throws).
      const bogus = Object.create(mongoose.mongo.Collection.prototype) as mongoose.mongo.Collection;
      let settled: unknown;
      expect(() => void (settled = bogus.insertOne({}).catch((error: Error) => error.constructor.name))).not.toThrow();
      expect(await settled).toBe('TypeError');
    },
  );

  it(
    "Mongoose's base Query methods keep their names, arity and property attributes (they are wrapped for queries built by " + 'hand)',
    async () => {
      const schema = new Schema({ token: String });
      schema.plugin(tripwire, {
        approved: ['auth/**'],
        root: fixtureDir as string,
        statsd: false,
        operations: ['create', 'update', 'delete', 'read'],
        onBypass: () => undefined,
        onError: () => undefined,
      });
      connection.model(`BaseQuery${++count}`, schema);
      // A second evaluation of Mongoose's query.js: its Query class as Mongoose defines it, unwrapped.
      const require = createRequire(import.meta.url);
      const file = require.resolve('mongoose/lib/query.js');
      const loaded = require.cache[file];
      delete require.cache[file];
      const Pristine = require(file) as typeof mongoose.Query;
      require.cache[file] = loaded;
      const names = [
        'updateOne',
        'updateMany',
        'replaceOne',
        'findOneAndUpdate',
        'findOneAndReplace',
        'findOneAndDelete',
        'deleteOne',
        'deleteMany',
        'find',
        'findOne',
        'countDocuments',
        'estimatedDocumentCount',
        'distinct',
        'clone',
        'exec',
      ];
      const shape = (proto: object) =>
        names.map((name) => {
          const { value, ...attributes } = Object.getOwnPropertyDescriptor(proto, name)!;
          return { name, attributes, fn: [(value as Function).name, (value as Function).length] };
        });
      expect(mongoose.Query.prototype.exec).not.toBe(Pristine.prototype.exec); // wrapped indeed
      expect(shape(mongoose.Query.prototype)).toEqual(shape(Pristine.prototype));
    },
  );

  it('adds nothing to the schema: no method, static, query helper or hook', () => {
    const bare = new Schema({ token: String, items: [new Schema({ n: Number })] }, { timestamps: true });
    const watched = bare.clone();
    watched.plugin(tripwire, { approved: ['auth/**'], root: fixtureDir as string, statsd: false, onError: () => undefined });
    expect(Object.keys(watched.methods)).toEqual(Object.keys(bare.methods));
    expect(Object.keys(watched.statics)).toEqual(Object.keys(bare.statics));
    expect(Object.keys(watched.query)).toEqual(Object.keys(bare.query));
    const hooks = (s: Schema) =>
      (s as unknown as { s: { hooks: { _pres: Map<string, unknown[]>; _posts: Map<string, unknown[]> } } }).s.hooks;
    expect([...hooks(watched)._pres.keys(), ...hooks(watched)._posts.keys()]).toEqual([
      ...hooks(bare)._pres.keys(),
      ...hooks(bare)._posts.keys(),
    ]);
    const M = connection.model(
      `PathSave${++count}`,
      new Schema({ save: String }, { suppressReservedKeysWarning: true }).plugin(tripwire, {
        approved: ['auth/**'],
        root: fixtureDir as string,
        statsd: false,
        onError: () => undefined,
      }),
    );
    const doc = new M({ save: 'a path named save' });
    expect(doc.get('save')).toBe('a path named save');
  });

  it('registers on 50 models before connect() without a process warning', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => void warnings.push(w);
    process.on('warning', onWarning);
    const conn = mongoose.createConnection();
    try {
      for (let i = 0; i < 50; i++) {
        conn.model(
          `Early${i}`,
          new Schema({ token: String }).plugin(tripwire, {
            approved: ['auth/**'],
            root: fixtureDir as string,
            statsd: false,
            onError: () => undefined,
          }),
        );
      }
      await conn.openUri(process.env.MONGODB_URI!, { dbName: `early_${process.pid}` });
      await settle(50); // no warning arrives
      expect(warnings.map(String)).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      await conn.close();
    }
  });
});

describe('Mongoose loaded from outside node_modules', () => {
  let dir: string;
  beforeAll(() => {
    // A vendored copy: vendor/mongoose/lib/*.js, its dependencies resolved through vendor/node_modules.
    dir = mkdtempSync(join(tmpdir(), 'tripwire-vendored-'));
    const source = dirname(createRequire(import.meta.url).resolve('mongoose/package.json'));
    cpSync(source, join(dir, 'vendor', 'mongoose'), { recursive: true });
    symlinkSync(join(dirname(source)), join(dir, 'vendor', 'node_modules'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('still recognises its own writes: one report per rogue write, none twice', async () => {
    const vendored = createRequire(join(dir, 'vendor', 'x.js'))('./mongoose') as typeof mongoose;
    expect(vendored).not.toBe(mongoose);
    const reports: BypassReport[] = [];
    const conn = await vendored.createConnection(process.env.MONGODB_URI!, { dbName: `vendored_${process.pid}` }).asPromise();
    try {
      const schema = new vendored.Schema({ token: String });
      schema.plugin(tripwire, {
        approved: ['auth/**'],
        root: fixtureDir as string,
        statsd: false,
        rateLimit: false,
        onBypass: (r) => void reports.push(r),
        onError: () => undefined,
      });
      const M = conn.model('VendoredToken', schema);
      await M.create({ token: 'a' });
      await M.updateOne({ token: 'a' }, { $set: { token: 'b' } });
      await M.collection.insertOne({ token: 'c' });
      await waitFor(() => reports.length >= 3, 'three reports'); // delivered after the write's promise settles
      await settle();
      expect(reports.map((r) => r.operation)).toEqual(['create', 'updateOne', 'collection.insertOne']);
      expect(reports.every((r) => !r.stack.some((frame) => frame.file.includes(join(dir, 'vendor', 'mongoose'))))).toBe(true);
      expect(
        verify()
          .registrations.flatMap((r) => r.models)
          .find((m) => m.model === 'VendoredToken'),
      ).toEqual({ model: 'VendoredToken', missing: [] });
    } finally {
      await conn.close();
    }
  });
});
