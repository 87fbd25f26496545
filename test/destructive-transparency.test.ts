/**
 * The wrappers for whole-collection writes sit on shared prototypes (Mongoose's base `Aggregate`
 * and `Model`, the driver's `Collection` and `Db`): they keep Mongoose's and the driver's names,
 * arity and property attributes, and a watched collection answers these calls with the same
 * results and errors as a plain one.
 */
import { createRequire } from 'node:module';
import mongoose, { type Connection, Schema } from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tripwire } from '../src/plugin.js';
// @ts-expect-error plain ESM fixture without types
import { fixtureDir } from './fixtures/destructive/run.mjs';

let connection: Connection;
let count = 0;

beforeAll(async () => {
  connection = await mongoose.createConnection(process.env.MONGODB_URI!, { dbName: `destructive_transparency_${process.pid}` }).asPromise();
});
afterAll(async () => {
  await connection?.close();
});

/** A model watched by a registration that approves this file: every call below is approved. */
async function watchedModel(): Promise<mongoose.Model<Record<string, unknown>>> {
  const schema = new Schema({ token: String });
  schema.plugin(tripwire, { approved: [() => true], root: fixtureDir as string, statsd: false, onError: () => undefined });
  const M = connection.model(`Transparent${++count}`, schema) as unknown as mongoose.Model<Record<string, unknown>>;
  await M.init();
  return M;
}

/** A second evaluation of one of Mongoose's files: its classes as Mongoose defines them, unwrapped. */
function pristine<T>(path: string): T {
  const require = createRequire(import.meta.url);
  const file = require.resolve(path);
  const loaded = require.cache[file];
  delete require.cache[file];
  try {
    return require(file) as T;
  } finally {
    require.cache[file] = loaded;
  }
}

const shape = (proto: object, names: string[]) =>
  names.map((name) => {
    const { value, ...attributes } = Object.getOwnPropertyDescriptor(proto, name)!;
    return { name, attributes, fn: [(value as Function).name, (value as Function).length] };
  });

describe('shared prototypes keep their shape', () => {
  it("Mongoose's base Aggregate#append/exec and Model#save/$save: same names, arity, attributes; save is still $save", async () => {
    await watchedModel();
    const Aggregate = pristine<typeof mongoose.Aggregate>('mongoose/lib/aggregate.js');
    expect(String(mongoose.Aggregate.prototype.exec)).not.toBe(String(Aggregate.prototype.exec)); // wrapped indeed
    expect(shape(mongoose.Aggregate.prototype, ['append', 'exec'])).toEqual(shape(Aggregate.prototype, ['append', 'exec']));
    const Model = pristine<typeof mongoose.Model>('mongoose/lib/model.js');
    expect(String(mongoose.Model.prototype.save)).not.toBe(String(Model.prototype.save));
    expect(shape(mongoose.Model.prototype, ['save', '$save'])).toEqual(shape(Model.prototype, ['save', '$save']));
    expect(mongoose.Model.prototype.$save).toBe(mongoose.Model.prototype.save);
  });

  it("the driver's Collection and Db methods keep their names and arity", async () => {
    await watchedModel();
    const collection = mongoose.mongo.Collection.prototype as unknown as Record<string, Function>;
    const db = mongoose.mongo.Db.prototype as unknown as Record<string, Function>;
    const seen = [
      ...['aggregate', 'rename', 'drop'].map((name) => [name, collection[name]!.name, collection[name]!.length]),
      ...['aggregate', 'renameCollection', 'dropCollection', 'dropDatabase'].map((name) => [name, db[name]!.name, db[name]!.length]),
    ];
    expect(seen.map(([name, fnName]) => [name, fnName])).toEqual(seen.map(([name]) => [name, name]));
    const descriptor = Object.getOwnPropertyDescriptor(mongoose.mongo.Collection.prototype, 'drop')!;
    expect([descriptor.writable, descriptor.enumerable, descriptor.configurable]).toEqual([true, false, true]);
  });
});

describe('a watched collection answers as a plain one', () => {
  it('the same results and errors for $out, $merge, rename, drop; synchronous errors stay synchronous', async () => {
    const M = await watchedModel();
    const db = connection.db!;
    const run = async (name: string) => {
      const c = db.collection(name);
      await c.insertMany([{ token: 'a' }, { token: 'b' }]);
      await db.collection(`${name}_src`).insertOne({ token: 'src' });
      const cursor = db.collection(`${name}_src`).aggregate([{ $project: { _id: 0, token: 1 } }, { $out: name }]);
      const out = [cursor.constructor.name, await cursor.toArray(), (await c.find({}, { projection: { _id: 0 } }).toArray()).length];
      const merged = await db
        .collection(`${name}_src`)
        .aggregate([{ $project: { token: 1 } }, { $merge: { into: name, whenMatched: 'fail' } }])
        .toArray()
        .catch((error: Error & { code?: number }) => [error.constructor.name, error.code]);
      const notArray = (() => {
        try {
          db.collection(name).aggregate({} as never);
          return 'no error';
        } catch (error) {
          return (error as Error).constructor.name;
        }
      })();
      const exists = await db
        .renameCollection(`${name}_src`, name)
        .catch((error: Error & { code?: number }) => [error.constructor.name, error.code]);
      const renamed = (await db.renameCollection(`${name}_src`, name, { dropTarget: true })).collectionName === name;
      const dropped = [await db.collection(name).drop(), await db.dropCollection(name), await db.collection(name).drop()];
      const emptyPipeline = await M.aggregate([])
        .exec()
        .catch((error: Error) => error.message);
      return { out, merged, notArray, exists, renamed, dropped, emptyPipeline };
    };
    const watched = await run(M.collection.collectionName);
    expect(watched).toEqual(await run(`plain_${count}`));
    expect(watched.exists).toEqual(['MongoServerError', 48]);
  });

  it('a base-class save of a document nobody watches saves as before', async () => {
    await watchedModel();
    const Plain = connection.model(`PlainSave${++count}`, new Schema({ token: String }, { timestamps: true }));
    const doc = new Plain({ token: 'x' });
    const saved = await mongoose.Model.prototype.save.call(doc);
    expect(saved).toBe(doc);
    expect(await Plain.countDocuments({ token: 'x' })).toBe(1);
  });
});
