/**
 * Coverage beyond middleware and beyond writes: `Model.collection.*` writes (attributed, flagged,
 * never double-reported), driver writes by other routes (counted through command monitoring), and
 * opt-in read detection — each entry point from approved and from legacy code.
 */
import mongoose from 'mongoose';
import { describe, expect, it } from 'vitest';
import { flush, tripwire, verify, type BypassReport, type TripwireOptions } from '../src/index.js';
import { listenerSuite } from './support/listener-suite.js';
// @ts-expect-error plain ESM fixtures without types
import { fixtureDir, siteLine } from './fixtures/app/matrix.mjs';
// @ts-expect-error plain ESM fixtures without types
import * as approvedRaw from './fixtures/app/auth/raw.mjs';
// @ts-expect-error plain ESM fixtures without types
import * as legacyRaw from './fixtures/app/legacy/raw.mjs';
// @ts-expect-error plain ESM fixtures without types
import { tokenSchema } from './fixtures/app/models.mjs';

type Model = mongoose.Model<Record<string, unknown>>;
type Entry = (T: Model, c: { token(): string; id: unknown }) => Promise<unknown>;

let count = 0;

// monitorCommands: the driver reports each command, so writes that bypass Mongoose can be counted.
const suite = listenerSuite(() => mongoose.createConnection(process.env.MONGODB_URI!, { dbName: `beyond_${process.pid}`, monitorCommands: true }).asPromise());

const settle = () => new Promise((resolve) => setTimeout(resolve, 10));
const token = () => `tok_${Math.random().toString(36).slice(2)}`;

async function model(options: Partial<TripwireOptions> = {}) {
  const reports: BypassReport[] = [];
  const schema = tokenSchema() as mongoose.Schema;
  schema.plugin(tripwire, {
    approved: ['auth/**'], root: fixtureDir as string, statsd: { host: '127.0.0.1', port: suite.listener.port },
    onBypass: (r) => void reports.push(r), rateLimit: false, onError: () => undefined, ...options,
  });
  const T = suite.connection.model(`Beyond${++count}`, schema) as unknown as Model;
  await T.init();
  const seed = async () => (await suite.connection.db!.collection(T.collection.collectionName).insertOne({ token: token(), user: 'u1' })).insertedId;
  const run = async (entry: Entry) => {
    const id = await seed();
    await settle();
    reports.length = 0;
    await entry(T, { token, id });
    await settle();
    return reports.splice(0);
  };
  return { T, reports, run };
}

const counter = (name: string, tag: string) =>
  [...suite.listener.counters()].filter(([key]) => key.startsWith(`${name}|`) && key.includes(tag)).reduce((n, [, v]) => n + v, 0);

describe('Model.collection writes skip middleware, and are still attributed', () => {
  it.each(Object.keys(legacyRaw.raw as object))('%s from legacy code is reported at its call site, flagged; from the auth module it is not', async (name) => {
    const { run } = await model();
    expect(await run((approvedRaw.raw as Record<string, Entry>)[name]!)).toEqual([]);
    const reports = await run((legacyRaw.raw as Record<string, Entry>)[name]!);
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({ operation: name, bypassedMiddleware: true });
    expect(reports[0]!.callSite).toMatchObject({ file: `${fixtureDir as string}legacy/raw.mjs`, line: siteLine('legacy/raw.mjs', name) });
  });

  it('never double-reports a Mongoose write that went through the wrapped collection', async () => {
    const { T, run } = await model();
    const reports = await run((Tk, c) => Tk.updateOne({ _id: c.id }, { $set: { user: 'x' } }));
    expect(reports.map((r) => r.operation)).toEqual(['updateOne']);
    expect(reports[0]!.bypassedMiddleware).toBe(false);
    const saved = await run((Tk) => Tk.create({ token: token() }));
    expect(saved.map((r) => r.operation)).toEqual(['create']);
    void T;
  });

  it('counts writes through any other driver route as tripwire.unattributed_writes, and only those', async () => {
    const { T, run } = await model();
    const name = T.collection.collectionName;
    await run((Tk, c) => Tk.updateOne({ _id: c.id }, { $set: { user: 'mw' } }));
    await run((legacyRaw.raw as Record<string, Entry>)['collection.updateOne']!);
    // Every other shape a Mongoose write takes on the wire: insert documents, findAndModify's query, bulk ops.
    await run((Tk) => Tk.create({ token: token() }));
    await run((Tk) => Tk.insertMany([{ token: token() }, { token: token() }]));
    await run((Tk, c) => Tk.findOneAndUpdate({ _id: c.id }, { $set: { user: 'f' } }));
    await run((Tk, c) => Tk.bulkWrite([{ insertOne: { document: { token: token() } } }, { updateOne: { filter: { _id: c.id }, update: { $set: { user: 'b' } } } }, { deleteMany: { filter: { user: 'nobody' } } }]));
    await run((legacyRaw.raw as Record<string, Entry>)['collection.bulkWrite']!);
    const viaDriver = await run(async (_Tk, c) => suite.connection.db!.collection(name).updateOne({ _id: c.id as never }, { $set: { user: 'driver' } }));
    expect(viaDriver).toEqual([]); // no call site to report
    await suite.connection.db!.collection(name).deleteMany({ user: 'nobody' });
    flush();
    // 8 seeds + 1 update + 1 delete went straight to the driver; the Mongoose and Model.collection writes did not.
    await suite.listener.waitFor(() => counter('tripwire.unattributed_writes', `collection:${name}`) === 10);
    expect(counter('tripwire.unattributed_writes', 'command:update')).toBe(1);
    expect(counter('tripwire.unattributed_writes', 'command:delete')).toBe(1);
    const registration = verify().registrations.find((r) => r.models.some((m) => m.model === T.modelName))!;
    expect(registration.unattributedWrites).toEqual({ [name]: 'counted' });
  });
});

describe('reads outside the auth module (opt-in)', () => {
  const expectedOperation: Record<string, string> = { findById: 'findOne', exists: 'findOne' };

  it.each(Object.keys(legacyRaw.reads as object))('%s from legacy code is reported as a read; from the auth module it is not', async (name) => {
    const { run } = await model({ operations: ['create', 'update', 'delete', 'read'] });
    expect(await run((approvedRaw.reads as Record<string, Entry>)[name]!)).toEqual([]);
    const reports = await run((legacyRaw.reads as Record<string, Entry>)[name]!);
    expect(reports.map((r) => [r.operation, r.kind])).toEqual([[expectedOperation[name] ?? name, 'read']]);
    expect(reports[0]!.callSite).toMatchObject({ file: `${fixtureDir as string}legacy/raw.mjs`, line: siteLine('legacy/raw.mjs', name) });
  });

  it('reads are not reported (nor instrumented) by default, and are counted in tripwire.reads when on', async () => {
    const off = await model();
    for (const entry of Object.values(legacyRaw.reads as Record<string, Entry>)) expect(await off.run(entry)).toEqual([]);
    const on = await model({ operations: ['read'] });
    await on.run((legacyRaw.reads as Record<string, Entry>).findOne!);
    await on.run((approvedRaw.reads as Record<string, Entry>).findOne!);
    // Writes are not checked with operations: ['read'].
    expect(await on.run((legacyRaw.raw as Record<string, Entry>)['collection.updateOne']!)).toEqual([]);
    flush();
    await suite.listener.waitFor(() => counter('tripwire.reads', `model:${on.T.modelName}`) === 2);
    expect(counter('tripwire.reads', 'approved:false')).toBe(1);
  });
});
