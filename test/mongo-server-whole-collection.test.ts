/**
 * The test server runs the commands that replace, rename or drop a whole collection as a standalone
 * MongoDB 7.0 does (the version it reports): `$out` and `$merge`, `renameCollection`, `drop`,
 * `dropDatabase`. An option it does not run is a MongoDB error, never ignored.
 */
import type mongoose from 'mongoose';
import type { Connection } from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from './support/connect.js';

let connection: Connection;
let db: NonNullable<Connection['db']>;
let admin: ReturnType<mongoose.mongo.MongoClient['db']>;
let n = 0;
const name = (label: string) => `${label}${++n}`;

beforeAll(async () => {
  connection = await connect('server_whole');
  db = connection.db!;
  admin = connection.getClient().db('admin');
});
afterAll(async () => {
  await connection.close();
});

const contents = async (collection: string, database = db) =>
  (await database
    .collection(collection)
    .find({}, { projection: { _id: 0 } })
    .sort({ k: 1 })
    .toArray()) as Array<Record<string, unknown>>;

describe('$out', () => {
  it('replaces the target with the pipeline’s result, keeps its indexes, and returns an empty batch', async () => {
    const [source, target] = [name('src'), name('dst')];
    await db.collection(source).insertMany([
      { k: 1, keep: true },
      { k: 2, keep: false },
      { k: 3, keep: true },
    ]);
    await db.collection(target).insertMany([{ k: 9 }, { k: 10 }]);
    await db.collection(target).createIndex({ k: 1 }, { unique: true, name: 'k_1' });
    const out = await db
      .collection(source)
      .aggregate([{ $match: { keep: true } }, { $project: { _id: 0, k: 1 } }, { $out: target }])
      .toArray();
    expect(out).toEqual([]);
    expect(await contents(target)).toEqual([{ k: 1 }, { k: 3 }]);
    expect((await db.collection(target).indexes()).map((index) => index.name)).toEqual(['_id_', 'k_1']);
  });

  it('writes into another database with { db, coll }; leaves the target untouched when a document breaks a unique index', async () => {
    const [source, target] = [name('src'), name('dst')];
    const other = connection.getClient().db(`${db.databaseName}_other`);
    await db.collection(source).insertMany([{ k: 1 }, { k: 1 }]);
    await db
      .collection(source)
      .aggregate([{ $project: { _id: 0, k: 1 } }, { $out: { db: other.databaseName, coll: target } }])
      .toArray();
    expect(await contents(target, other)).toEqual([{ k: 1 }, { k: 1 }]);
    expect(await contents(target)).toEqual([]);
    await db.collection(target).insertOne({ k: 5 });
    await db.collection(target).createIndex({ k: 1 }, { unique: true });
    const error = await db
      .collection(source)
      .aggregate([{ $project: { _id: 0, k: 1 } }, { $out: target }])
      .toArray()
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 11000 });
    expect(await contents(target)).toEqual([{ k: 5 }]);
  });

  it('must be the final stage; an unknown field of its target is refused', async () => {
    const source = name('src');
    await db.collection(source).insertOne({ k: 1 });
    await expect(
      db
        .collection(source)
        .aggregate([{ $out: 'x' }, { $match: {} }])
        .toArray(),
    ).rejects.toMatchObject({ code: 40601 });
    await expect(
      db
        .collection(source)
        .aggregate([{ $out: { db: db.databaseName, coll: 'x', timeseries: { timeField: 't' } } }])
        .toArray(),
    ).rejects.toMatchObject({ code: 40415 });
  });
});

describe('$merge', () => {
  it('merges by _id (whenMatched merge, whenNotMatched insert), as a name, { into } or { into: { db, coll } }', async () => {
    const [source, target] = [name('src'), name('dst')];
    await db.collection(target).insertMany([
      { _id: 1 as never, k: 1, old: true },
      { _id: 2 as never, k: 2, old: true },
    ]);
    await db.collection(source).insertMany([
      { _id: 2 as never, k: 2, fresh: true },
      { _id: 3 as never, k: 3, fresh: true },
    ]);
    await db
      .collection(source)
      .aggregate([{ $merge: target }])
      .toArray();
    expect(await contents(target)).toEqual([
      { k: 1, old: true },
      { k: 2, old: true, fresh: true },
      { k: 3, fresh: true },
    ]);
    await db
      .collection(source)
      .aggregate([{ $set: { k: 20 } }, { $merge: { into: { db: db.databaseName, coll: target }, whenMatched: 'replace' } }])
      .toArray();
    expect(await contents(target)).toEqual([
      { k: 1, old: true },
      { k: 20, fresh: true },
      { k: 20, fresh: true },
    ]);
  });

  it('keepExisting, discard and fail do as they say', async () => {
    const [source, target] = [name('src'), name('dst')];
    await db.collection(target).insertOne({ _id: 1 as never, k: 1 });
    await db.collection(source).insertMany([
      { _id: 1 as never, k: 100 },
      { _id: 2 as never, k: 2 },
    ]);
    await db
      .collection(source)
      .aggregate([{ $merge: { into: target, whenMatched: 'keepExisting', whenNotMatched: 'discard' } }])
      .toArray();
    expect(await contents(target)).toEqual([{ k: 1 }]);
    await expect(
      db
        .collection(source)
        .aggregate([{ $merge: { into: target, whenMatched: 'fail' } }])
        .toArray(),
    ).rejects.toMatchObject({
      code: 11000,
    });
    await expect(
      db
        .collection(source)
        .aggregate([{ $merge: { into: target, whenNotMatched: 'fail', whenMatched: 'keepExisting' } }])
        .toArray(),
    ).rejects.toMatchObject({ code: 13113 });
  });

  it('refuses `on` fields without a unique index, a whenMatched pipeline it does not run, and unknown fields', async () => {
    const source = name('src');
    await db.collection(source).insertOne({ k: 1 });
    await expect(
      db
        .collection(source)
        .aggregate([{ $merge: { into: 'x', on: 'k' } }])
        .toArray(),
    ).rejects.toMatchObject({ code: 51183 });
    await expect(
      db
        .collection(source)
        .aggregate([{ $merge: { into: 'x', whenMatched: [{ $set: { a: 1 } }] } }])
        .toArray(),
    ).rejects.toMatchObject({
      code: 115,
    });
    await expect(
      db
        .collection(source)
        .aggregate([{ $merge: { into: 'x', let: {} } }])
        .toArray(),
    ).rejects.toMatchObject({ code: 40415 });
  });
});

describe('renameCollection', () => {
  it('renames; an existing target needs dropTarget (else NamespaceExists); a missing source is NamespaceNotFound', async () => {
    const [from, to] = [name('from'), name('to')];
    await db.collection(from).insertOne({ k: 1 });
    await db.collection(to).insertOne({ k: 2 });
    await expect(db.renameCollection(from, to)).rejects.toMatchObject({ code: 48, codeName: 'NamespaceExists' });
    await db.renameCollection(from, to, { dropTarget: true });
    expect(await contents(to)).toEqual([{ k: 1 }]);
    expect(await contents(from)).toEqual([]);
    await expect(db.renameCollection(from, to)).rejects.toMatchObject({ code: 26, codeName: 'NamespaceNotFound' });
    await db.collection(to).rename(from);
    expect(await contents(from)).toEqual([{ k: 1 }]);
  });

  it('runs only on the admin database, and refuses unknown fields', async () => {
    const from = name('from');
    await db.collection(from).insertOne({ k: 1 });
    const ns = `${db.databaseName}.${from}`;
    await expect(db.command({ renameCollection: ns, to: `${ns}_x` })).rejects.toMatchObject({ code: 13 });
    await expect(admin.command({ renameCollection: ns, to: `${ns}_x`, overwrite: true })).rejects.toMatchObject({ code: 40415 });
    await expect(admin.command({ renameCollection: ns, to: ns })).rejects.toMatchObject({ code: 20 });
  });
});

describe('drop and dropDatabase', () => {
  it('drop removes the collection and its indexes; a missing one is ok (MongoDB 7.0); unknown fields are refused', async () => {
    const collection = name('gone');
    await db.collection(collection).insertOne({ k: 1 });
    await db.collection(collection).createIndex({ k: 1 });
    expect(await db.command({ drop: collection })).toMatchObject({ ok: 1, nIndexesWas: 2 });
    expect(await contents(collection)).toEqual([]);
    await expect(db.collection(collection).indexes()).rejects.toMatchObject({ code: 26 });
    expect(await db.collection(collection).drop()).toBe(true);
    expect(await db.dropCollection(collection)).toBe(true);
    await expect(db.command({ drop: collection, force: true })).rejects.toMatchObject({ code: 40415 });
  });

  it('dropDatabase removes every collection of that database only', async () => {
    const client = connection.getClient();
    const [one, two] = [client.db(`${db.databaseName}_a`), client.db(`${db.databaseName}_b`)];
    await one.collection('x').insertOne({ k: 1 });
    await two.collection('x').insertOne({ k: 2 });
    expect(await one.dropDatabase()).toBe(true);
    expect(await contents('x', one)).toEqual([]);
    expect(await contents('x', two)).toEqual([{ k: 2 }]);
  });
});
