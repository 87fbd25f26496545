/**
 * The test server must behave like a standalone mongod wherever the suite depends on it: a test
 * that passes only because the double is lenient would be a false green.
 */

import mongoose, { type Connection } from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from './support/connect.js';
import { startMongoServer } from './support/mongo-server.js';

let connection: Connection;
let db: NonNullable<Connection['db']>;

beforeAll(async () => {
  connection = await connect('server');
  db = connection.db!;
});
afterAll(async () => {
  await connection.close();
});

describe('wire server', () => {
  it('stores, queries, sorts, projects and pages through a cursor', async () => {
    const items = db.collection('items');
    await items.insertMany(Array.from({ length: 250 }, (_, i) => ({ i, even: i % 2 === 0, tags: [`t${i % 3}`] })));
    const evens = await items
      .find({ even: true }, { projection: { _id: 0, i: 1 } })
      .sort({ i: -1 })
      .toArray();
    expect(evens).toHaveLength(125);
    expect(evens[0]).toEqual({ i: 248 });
    expect(await items.countDocuments({ i: { $gte: 200 } })).toBe(50);
    expect(await items.estimatedDocumentCount()).toBe(250);
    expect((await items.distinct('tags')).sort()).toEqual(['t0', 't1', 't2']);
    expect(await items.findOne({ i: 7 }, { projection: { _id: 0, i: 1 } })).toEqual({ i: 7 });
  });

  it('applies update operators, upserts and findAndModify as mongod does', async () => {
    const docs = db.collection('docs');
    await docs.insertOne({ _id: 'a' as never, n: 1, list: [{ x: 1 }, { x: 2 }] });
    const result = await docs.updateOne({ _id: 'a' as never, 'list.x': 2 }, { $inc: { n: 1 }, $set: { 'list.$.x': 9 } });
    expect(result).toMatchObject({ matchedCount: 1, modifiedCount: 1 });
    expect(await docs.findOne({ _id: 'a' as never })).toEqual({ _id: 'a', n: 2, list: [{ x: 1 }, { x: 9 }] });
    const noop = await docs.updateOne({ _id: 'a' as never }, { $set: { n: 2 } });
    expect(noop).toMatchObject({ matchedCount: 1, modifiedCount: 0 });
    const upsert = await docs.updateOne({ key: 'k' }, { $set: { n: 5 }, $setOnInsert: { created: true } }, { upsert: true });
    expect(upsert.upsertedCount).toBe(1);
    expect(await docs.findOne({ key: 'k' }, { projection: { _id: 0 } })).toEqual({ key: 'k', n: 5, created: true });
    const before = await docs.findOneAndUpdate({ key: 'k' }, { $inc: { n: 1 } }, { returnDocument: 'before' });
    expect(before?.n).toBe(5);
    const removed = await docs.findOneAndDelete({ key: 'k' });
    expect(removed?.n).toBe(6);
    expect(await docs.findOneAndDelete({ key: 'k' })).toBeNull();
    await expect(docs.updateOne({ _id: 'a' as never }, { $set: { _id: 'b' } })).rejects.toMatchObject({ code: 66 });
    await expect(docs.updateOne({ _id: 'a' as never }, { $bogus: { n: 1 } } as never)).rejects.toThrow(/\$bogus/);
  });

  it('enforces unique indexes with the duplicate key error mongod sends', async () => {
    const tokens = db.collection('tokens');
    await tokens.createIndex({ token: 1 }, { unique: true });
    await tokens.insertOne({ token: 'x' });
    const error = await tokens.insertOne({ token: 'x' }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 11000, keyPattern: { token: 1 }, keyValue: { token: 'x' } });
    await tokens.insertOne({ token: 'y' });
    await expect(tokens.updateOne({ token: 'y' }, { $set: { token: 'x' } })).rejects.toMatchObject({ code: 11000 });
    expect(await tokens.countDocuments()).toBe(2);
    const names = (await tokens.listIndexes().toArray()).map((index) => index.name);
    expect(names).toEqual(['_id_', 'token_1']);
  });

  it('refuses transactions as a standalone does, and unknown commands with an error', async () => {
    const session = await connection.startSession();
    session.startTransaction();
    const error = await db
      .collection('txn')
      .insertOne({ a: 1 }, { session })
      .catch((e: unknown) => e);
    await session.abortTransaction().catch(() => undefined);
    await session.endSession();
    // The driver wraps mongod's refusal; the server's own answer is the original error.
    const refusal = (error as { originalError?: unknown }).originalError ?? error;
    expect(refusal).toMatchObject({ code: 20, message: expect.stringMatching(/replica set member or mongos/) });
    await expect(db.command({ frobnicate: 1 })).rejects.toMatchObject({ code: 59 });
  });

  it('serves Mongoose models end to end, validation and unique errors included', async () => {
    const Thing = connection.model('Thing', new mongoose.Schema({ name: { type: String, required: true, unique: true } }));
    await Thing.init();
    const created = await Thing.create({ name: 'one' });
    await expect(Thing.create({ name: 'one' })).rejects.toMatchObject({ code: 11000 });
    await expect(Thing.create({})).rejects.toThrow(/required/);
    created.name = 'two';
    await created.save();
    expect(await Thing.exists({ name: 'two' })).toBeTruthy();
    expect(await Thing.deleteMany({})).toMatchObject({ deletedCount: 1 });
  });

  it('reports the port it really listens on, and stops', async () => {
    const server = await startMongoServer();
    expect(server.port).toBeGreaterThan(0);
    expect(server.uri).toContain(`:${server.port}/`);
    const client = await mongoose.createConnection(server.uri, { serverSelectionTimeoutMS: 2_000 }).asPromise();
    expect(await client.db!.admin().command({ ping: 1 })).toMatchObject({ ok: 1 });
    await client.close();
    await server.stop();
  });
});
