/**
 * What a write pays in stack reads (issue 14: "one stack read per approved write, Mongoose's own
 * calls pay no caller check"). Counted in the process (`stackReadCount()`), for every write path of
 * the fixture matrix, called from the auth module: each reads the stack once where the app called
 * it, and Mongoose's own call of the watched collection that follows reads nothing.
 */
import mongoose from 'mongoose';
import { describe, expect, it } from 'vitest';
import { stackReadCount } from '../src/attribution/call-site.js';
import { tripwire } from '../src/plugin.js';
import type { BypassReport, TripwireOptions } from '../src/types.js';
// @ts-expect-error plain ESM fixtures without types
import * as approvedRaw from './fixtures/app/auth/raw.mjs';
// @ts-expect-error plain ESM fixtures without types
import * as approved from './fixtures/app/auth/writes.mjs';
// @ts-expect-error plain ESM fixtures without types
import * as legacyRaw from './fixtures/app/legacy/raw.mjs';
// @ts-expect-error plain ESM fixtures without types
import { fixtureDir, siteLine } from './fixtures/app/matrix.mjs';
// @ts-expect-error plain ESM fixtures without types
import { tokenSchema } from './fixtures/app/models.mjs';
import { listenerSuite } from './support/listener-suite.js';
import { settle, waitFor } from './support/wait.js';

type Model = mongoose.Model<Record<string, unknown>>;
type Write = (T: Model, c: object) => Promise<unknown>;
const writes = approved.writes as Record<string, Write>;

const suite = listenerSuite(() => mongoose.createConnection(process.env.MONGODB_URI!, { dbName: `reads_${process.pid}` }).asPromise());
let count = 0;
const token = () => `tok_${Math.random().toString(36).slice(2)}`;

async function watchedModel(operations?: string[]): Promise<Model> {
  const schema = tokenSchema() as mongoose.Schema;
  schema.plugin(tripwire, {
    approved: ['auth/**'],
    root: fixtureDir as string,
    statsd: { host: '127.0.0.1', port: suite.listener.port },
    onError: () => undefined,
    ...(operations ? { operations: operations as TripwireOptions['operations'] } : {}),
  });
  const T = suite.connection.model(`Reads${++count}`, schema) as unknown as Model;
  await T.init();
  return T;
}

/** Stack reads made while `write` ran to completion, with its seed made beforehand (through the auth module). */
async function readsOf(T: Model, write: Write): Promise<number> {
  const seeded = (await writes['Model.create(single)']!(T, { token })) as { _id: unknown };
  const doc = await T.findById(seeded._id).orFail();
  const before = stackReadCount();
  await write(T, { token, id: seeded._id, doc, opts: {} });
  return stackReadCount() - before;
}

// Where Mongoose calls back into a wrapper after its own awaits, with nothing of the app's left
// there, that call reads the stack too: one frame at the collection (`insertMany` builds its documents
// after validating, `bulkWrite` passes the app's own ops array: no mark of Mongoose's), eight at a
// query builder Mongoose calls again from its pre hook (`doc.updateOne()`, `doc.deleteOne()`), both
// for `bulkSave` (its `bulkWrite`, then the collection).
const MORE_READS: Record<string, { reads: number; why: string }> = {
  'Model.insertMany': { reads: 2, why: 'collection' },
  'Model.insertMany(middleware:false)': { reads: 2, why: 'collection' },
  'Model.bulkWrite(insert)': { reads: 2, why: 'collection' },
  'Model.bulkWrite(mixed)': { reads: 2, why: 'collection' },
  'Model.bulkWrite(middleware:false)': { reads: 2, why: 'collection' },
  'doc.updateOne()': { reads: 2, why: 'builder called again' },
  'doc.updateOne(middleware:false)': { reads: 2, why: 'builder called again' },
  'doc.deleteOne()': { reads: 2, why: 'builder called again' },
  'doc.deleteOne(middleware:false)': { reads: 2, why: 'builder called again' },
  'Model.bulkSave': { reads: 3, why: 'bulkWrite, then collection' },
};

describe('stack reads per approved write', () => {
  it.each(Object.keys(writes).filter((name) => !(name in MORE_READS)))('%s reads the stack once', async (name) => {
    const T = await watchedModel();
    expect(await readsOf(T, writes[name]!)).toBe(1);
  });

  it.each(Object.entries(MORE_READS))('%s reads it where called, and where Mongoose calls back: %j', async (name, { reads }) => {
    const T = await watchedModel();
    expect(await readsOf(T, writes[name]!)).toBe(reads);
  });

  // With reads watched, a query read reads once too; `aggregate` twice (the pipeline Mongoose passes
  // is the app's own: `aggregate.pipeline()` returns it), as does a write query's constructor no more.
  it.each(Object.keys(approvedRaw.reads as object).filter((name) => !name.startsWith('collection.')))(
    'with reads watched, %s reads the stack once (aggregate: twice)',
    async (name) => {
      const T = await watchedModel(['create', 'update', 'delete', 'read']);
      expect(await readsOf(T, (approvedRaw.reads as Record<string, Write>)[name]!)).toBe(name === 'aggregate' ? 2 : 1);
    },
  );

  it.each(['Model.updateOne', 'Model.findOneAndUpdate', 'Model.deleteMany', 'doc.save()'])(
    'with reads watched, %s still reads the stack once',
    async (name) => {
      const T = await watchedModel(['create', 'update', 'delete', 'read']);
      expect(await readsOf(T, writes[name]!)).toBe(1);
    },
  );

  it('a plain model pays none', async () => {
    const Plain = suite.connection.model(`ReadsPlain${++count}`, tokenSchema() as mongoose.Schema) as unknown as Model;
    for (const name of Object.keys(writes)) expect.soft(await readsOf(Plain, writes[name]!), name).toBe(0);
  });
});

describe("Mongoose's marks never excuse the app's own collection writes", () => {
  const rawWrite = (legacyRaw.raw as Record<string, Write>)['collection.updateOne']!;
  const site = { file: `${fixtureDir as string}legacy/raw.mjs`, line: siteLine('legacy/raw.mjs', 'collection.updateOne') };

  async function reporting(schema: mongoose.Schema) {
    const reports: BypassReport[] = [];
    schema.plugin(tripwire, {
      approved: ['auth/**'],
      root: fixtureDir as string,
      statsd: { host: '127.0.0.1', port: suite.listener.port },
      onBypass: (r) => void reports.push(r),
      rateLimit: false,
      onError: () => undefined,
    });
    const T = suite.connection.model(`Reads${++count}`, schema) as unknown as Model;
    await T.init();
    const seeded = (await writes['Model.create(single)']!(T, { token })) as { _id: unknown };
    return { T, reports, id: seeded._id };
  }

  it("a collection write made by app code running inside a query (a setter) is judged while Mongoose's own call passes", async () => {
    const schema = tokenSchema() as mongoose.Schema;
    const pending: Array<Promise<unknown>> = [];
    let T: Model | undefined;
    let id: unknown;
    // Runs while the query casts its update, synchronously inside Mongoose's `_updateOne`.
    schema.path('user').set((value: unknown) => {
      if (value === 'from-setter') pending.push(rawWrite(T!, { id }));
      return value;
    });
    const watched = await reporting(schema);
    ({ T, id } = watched);
    const before = stackReadCount();
    await writes['Model.updateOne']!(T, { token, id, opts: {} }); // sets user: 'u2': no setter write
    expect(stackReadCount() - before).toBe(1);
    await T.updateOne({ _id: id }, { $set: { user: 'from-setter' } }); // this file is not approved: rogue too
    await Promise.all(pending);
    await waitFor(() => watched.reports.length >= 2, 'two reports');
    await settle();
    expect(watched.reports.map((r) => r.operation).sort()).toEqual(['collection.updateOne', 'updateOne']);
    expect(watched.reports.find((r) => r.operation === 'collection.updateOne')!.callSite).toMatchObject(site);
  });

  it('a filter built with doc.$__where() outside a save is no mark', async () => {
    const { T, reports, id } = await reporting(tokenSchema() as mongoose.Schema);
    const doc = (await T.findById(id).orFail()) as unknown as { $__where(): object };
    const where = doc.$__where();
    await T.collection.updateOne(where, { $set: { user: 'where' } }); // from this file: not approved
    await waitFor(() => reports.length > 0, 'the report');
    await settle();
    expect(reports.map((r) => r.operation)).toEqual(['collection.updateOne']);
  });
});
