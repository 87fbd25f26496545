/**
 * Coverage beyond middleware and beyond writes: `Model.collection.*` writes (attributed, flagged,
 * never double-reported), driver writes by other routes (counted through command monitoring), and
 * opt-in read detection — each entry point from approved and from legacy code.
 */
import mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flush } from '../src/index.js';
import { tripwire } from '../src/plugin.js';
import type { BypassReport, TripwireOptions } from '../src/types.js';
import { verify } from '../src/verify.js';
// @ts-expect-error plain ESM fixtures without types
import * as approvedRaw from './fixtures/app/auth/raw.mjs';
// @ts-expect-error plain ESM fixtures without types
import * as approvedWrites from './fixtures/app/auth/writes.mjs';
// @ts-expect-error plain ESM fixtures without types
import * as legacyRaw from './fixtures/app/legacy/raw.mjs';
// @ts-expect-error plain ESM fixtures without types
import * as legacyWrites from './fixtures/app/legacy/writes.mjs';
// @ts-expect-error plain ESM fixtures without types
import { fixtureDir, siteLine } from './fixtures/app/matrix.mjs';
// @ts-expect-error plain ESM fixtures without types
import { tokenSchema } from './fixtures/app/models.mjs';
import { listenerSuite } from './support/listener-suite.js';
import { settle, waitFor } from './support/wait.js';

// Mongoose's base Query class, built by hand as an app can (its types declare no constructor arguments).
const BaseQuery = mongoose.Query as unknown as new (
  filter: object,
  options: object,
  model: unknown,
  collection: unknown,
) => mongoose.Query<unknown, unknown>;

type Model = mongoose.Model<Record<string, unknown>>;
type Entry = (T: Model, c: { token(): string; id: unknown; client: mongoose.mongo.MongoClient; other: Model }) => Promise<unknown>;

let count = 0;

// monitorCommands: the driver reports each command, so writes that bypass Mongoose can be counted.
const suite = listenerSuite(() =>
  mongoose.createConnection(process.env.MONGODB_URI!, { dbName: `beyond_${process.pid}`, monitorCommands: true }).asPromise(),
);

// A second client of the driver Mongoose uses, as an app or a script would open one.
let client: mongoose.mongo.MongoClient;
beforeAll(async () => {
  client = await new mongoose.mongo.MongoClient(process.env.MONGODB_URI!).connect();
});
afterAll(() => client?.close());

// run() returns what an entry reported: its awaited writes' reports are delivered on setImmediate,
// before a timer fires; the pause makes an empty result mean "nothing reported".
const token = () => `tok_${Math.random().toString(36).slice(2)}`;

async function model(options: Partial<TripwireOptions> = {}) {
  const reports: BypassReport[] = [];
  const schema = tokenSchema() as mongoose.Schema;
  schema.plugin(tripwire, {
    approved: ['auth/**'],
    root: fixtureDir as string,
    statsd: { host: '127.0.0.1', port: suite.listener.port },
    onBypass: (r) => void reports.push(r),
    rateLimit: false,
    onError: () => undefined,
    ...options,
  });
  const T = suite.connection.model(`Beyond${++count}`, schema) as unknown as Model;
  await T.init();
  const seed = async () =>
    (await suite.connection.db!.collection(T.collection.collectionName).insertOne({ token: token(), user: 'u1' })).insertedId;
  const run = async (entry: Entry) => {
    const id = await seed();
    await settle(10);
    reports.length = 0;
    await entry(T, { token, id, client, other: plainModel() });
    await settle(10);
    return reports.splice(0);
  };
  return { T, reports, run };
}

/** A model nobody watches, on a collection of its own. */
function plainModel(): Model {
  return (suite.connection.models.BeyondPlain ??
    suite.connection.model('BeyondPlain', tokenSchema() as mongoose.Schema)) as unknown as Model;
}

const counter = (name: string, ...tags: string[]) =>
  [...suite.listener.counters()]
    .filter(([key]) => key.startsWith(`${name}|`) && tags.every((tag) => key.split(/[|,#]/).includes(tag)))
    .reduce((n, [, v]) => n + v, 0);

describe('Model.collection writes skip middleware, and are still attributed', () => {
  it.each(Object.keys(legacyRaw.raw as object))(
    '%s from legacy code is reported at its call site, flagged; from the auth module it is not',
    async (name) => {
      const { run } = await model();
      expect(await run((approvedRaw.raw as Record<string, Entry>)[name]!)).toEqual([]);
      const reports = await run((legacyRaw.raw as Record<string, Entry>)[name]!);
      expect(reports).toHaveLength(1);
      expect(reports[0]).toMatchObject({ operation: name, bypassedMiddleware: true });
      expect(reports[0]!.callSite).toMatchObject({ file: `${fixtureDir as string}legacy/raw.mjs`, line: siteLine('legacy/raw.mjs', name) });
    },
  );

  it('never double-reports a Mongoose write that went through the wrapped collection', async () => {
    const { T, run } = await model();
    const reports = await run((Tk, c) => Tk.updateOne({ _id: c.id }, { $set: { user: 'x' } }));
    expect(reports.map((r) => r.operation)).toEqual(['updateOne']);
    expect(reports[0]!.bypassedMiddleware).toBe(false);
    const saved = await run((Tk) => Tk.create({ token: token() }));
    expect(saved.map((r) => r.operation)).toEqual(['create']);
    void T;
  });

  it('counts as tripwire.unattributed_writes only the writes no call site accounts for, each once', async () => {
    const { T, run } = await model();
    const name = T.collection.collectionName;
    const unattributed = (route: string, ...tags: string[]) =>
      counter('tripwire.unattributed_writes', `collection:${name}`, `route:${route}`, ...tags);
    const before = { driver: unattributed('driver'), wire: unattributed('command_monitoring') };
    // Every shape a Mongoose write and an attributed driver write take on the wire: not counted.
    await run((Tk, c) => Tk.updateOne({ _id: c.id }, { $set: { user: 'mw' } }));
    await run((legacyRaw.raw as Record<string, Entry>)['collection.updateOne']!);
    await run((Tk) => Tk.create({ token: token() }));
    await run((Tk) => Tk.insertMany([{ token: token() }, { token: token() }]));
    await run((Tk, c) => Tk.findOneAndUpdate({ _id: c.id }, { $set: { user: 'f' } }));
    await run((Tk, c) =>
      Tk.bulkWrite([
        { insertOne: { document: { token: token() } } },
        { updateOne: { filter: { _id: c.id }, update: { $set: { user: 'b' } } } },
        { deleteMany: { filter: { user: 'nobody' } } },
      ]),
    );
    for (const entry of Object.values(legacyRaw.driver as Record<string, Entry>)) await run(entry);
    // A model nobody watches, on another connection to the same database, its write issued with
    // .then(): no frame of the app is left when it reaches the driver.
    const other = await mongoose.createConnection(process.env.MONGODB_URI!, { dbName: suite.connection.name }).asPromise();
    const Unwatched = other.model(`Unwatched${count}`, new mongoose.Schema({ token: String, user: String }), name);
    // Nothing awaits it either (an awaiting async function would show in V8's async stack trace, and decide).
    const issued = await run(async (_Tk, c) => {
      let landed = false;
      void Promise.resolve().then(() =>
        Unwatched.updateOne({ _id: c.id }, { $set: { user: 'unwatched' } }).then(() => void (landed = true)),
      );
      await waitFor(() => landed, 'the unwatched update to land');
    });
    expect(issued).toEqual([]);
    await other.close();
    // A raw command: only the wire shows it.
    await run(async (_Tk, c) => suite.connection.db!.command({ delete: name, deletes: [{ q: { _id: c.id }, limit: 1 }] }));
    await flush();
    await suite.listener.waitFor(
      () => unattributed('driver') - before.driver === 1 && unattributed('command_monitoring') - before.wire === 1,
    );
    expect(unattributed('driver', 'command:updateOne') - before.driver).toBe(1);
    expect(unattributed('command_monitoring', 'command:delete') - before.wire).toBe(1);
    const registration = verify().registrations.find((r) => r.models.some((m) => m.model === T.modelName))!;
    expect(registration.driverRoutes).toEqual({ [name]: { driverCalls: 'attributed', rawCommands: 'counted' } });
  });
});

describe('writes made with the driver itself are attributed where they are called', () => {
  it('watches the collection, not only the model: another model compiled onto it, before or after, is watched too', async () => {
    const legacySchema = () => new mongoose.Schema({ token: String, user: String });
    const name = `beyond${count + 1}`;
    const Before = suite.connection.model(`LegacyBefore${count}`, legacySchema(), name);
    const { T, run } = await model({ models: [`Beyond${count + 1}`] });
    expect(T.collection.collectionName).toBe(name);
    const After = suite.connection.model(`LegacyAfter${count}`, legacySchema(), name);
    for (const Legacy of [Before, After] as unknown as Model[]) {
      expect(await run((_Tk, c) => (approvedWrites.writes as Record<string, Entry>)['Model.updateOne']!(Legacy, c))).toEqual([]);
      const reports = await run((_Tk, c) => (legacyWrites.writes as Record<string, Entry>)['Model.updateOne']!(Legacy, c));
      expect(reports.map((r) => [r.model, r.operation, r.callSite?.file])).toEqual([
        [Legacy.modelName, 'updateOne', `${fixtureDir as string}legacy/writes.mjs`],
      ]);
    }
  });

  it('a collection of the same name in another database is not watched', async () => {
    const { T, run } = await model();
    expect(
      await run(() => client.db(`other_${process.pid}`).collection(T.collection.collectionName).insertOne({ token: token() })),
    ).toEqual([]);
  });

  it.each(Object.keys(legacyRaw.driver as object))(
    '%s from legacy code is reported at its call site; from the auth module it is not',
    async (name) => {
      const { T, run } = await model();
      expect(await run((approvedRaw.driver as Record<string, Entry>)[name]!)).toEqual([]);
      const reports = await run((legacyRaw.driver as Record<string, Entry>)[name]!);
      expect(reports).toHaveLength(1);
      expect(reports[0]).toMatchObject({ model: T.modelName, operation: name, bypassedMiddleware: true });
      expect(reports[0]!.callSite).toMatchObject({ file: `${fixtureDir as string}legacy/raw.mjs`, line: siteLine('legacy/raw.mjs', name) });
    },
  );
});

describe('client-level bulk writes (MongoDB 8.0) are judged where they are called', () => {
  const ns = (T: Model) => `${T.db.name}.${T.collection.collectionName}`;
  const models = (list: object[]) => list as Parameters<typeof client.bulkWrite>[0];

  it('client.bulkWrite and connection.bulkWrite are reported once, with what they wrote to the watched collection', async () => {
    const { T, run } = await model();
    const [clientWrite] = await run((legacyRaw.driver as Record<string, Entry>)['client.bulkWrite']!);
    expect(clientWrite).toMatchObject({ kind: 'update', outcome: { inserted: 1, matched: 1, modified: 1, deleted: 0, upserted: 0 } });
    expect(clientWrite!.documentIds).toHaveLength(2); // the inserted document's id (given by the driver), the updated one's
    expect(await T.countDocuments({ user: 'cbw' })).toBe(1);
    const [connectionWrite] = await run((legacyRaw.driver as Record<string, Entry>)['connection.bulkWrite']!);
    expect(connectionWrite).toMatchObject({ kind: 'delete', outcome: { inserted: 1, deleted: 1 } });
    expect(connectionWrite!.documentIds).toHaveLength(2);
  });

  it('a client bulk write to other collections only is not judged; one that also writes a watched collection is, once', async () => {
    const { T, run } = await model();
    const elsewhere = `${T.db.name}.elsewhere_${count}`;
    expect(await run(() => client.bulkWrite(models([{ name: 'insertOne', namespace: elsewhere, document: { token: token() } }])))).toEqual(
      [],
    );
    expect(
      await run(() =>
        client.bulkWrite(
          models([{ name: 'insertOne', namespace: `other_${process.pid}.${T.collection.collectionName}`, document: { token: token() } }]),
        ),
      ),
    ).toEqual([]);
    const reports = await run((_Tk, c) =>
      client.bulkWrite(
        models([
          { name: 'insertOne', namespace: elsewhere, document: { token: token() } },
          { name: 'deleteMany', namespace: ns(T), filter: { _id: c.id } },
          { name: 'insertOne', namespace: ns(T), document: { token: token() } },
        ]),
      ),
    );
    expect(reports.map((r) => [r.operation, r.kind, r.outcome])).toEqual([
      ['client.bulkWrite', 'delete', { inserted: 2, matched: 0, modified: 0, deleted: 1, upserted: 0 }],
    ]);
  });

  it('what a client bulk write that failed part-way wrote is reported; with no frame of the app on its stack it is counted', async () => {
    const { T, run } = await model();
    await T.collection.createIndex({ token: 1 }, { unique: true });
    const reports = await run(async (_Tk, c) => {
      const dup = token();
      const failed = await client
        .bulkWrite(
          models([
            { name: 'insertOne', namespace: ns(T), document: { token: dup } },
            { name: 'insertOne', namespace: ns(T), document: { token: dup } },
            { name: 'deleteOne', namespace: ns(T), filter: { _id: c.id } },
          ]),
        )
        .catch((error: Error) => error);
      expect(failed).toMatchObject({ name: 'MongoClientBulkWriteError' });
    });
    expect(reports.map((r) => [r.operation, r.outcome.inserted])).toEqual([['client.bulkWrite', 1]]);
    const unattributed = () =>
      counter('tripwire.unattributed_writes', `collection:${T.collection.collectionName}`, 'route:driver', 'command:bulkWrite');
    const before = unattributed();
    // Called by the event loop (a bound function adds no frame): nothing of the app on the stack.
    const issued = await run(async () => {
      const written = await T.countDocuments();
      setImmediate(client.bulkWrite.bind(client, models([{ name: 'insertOne', namespace: ns(T), document: { token: token() } }])));
      await waitFor(async () => (await T.countDocuments()) !== written, 'the client.bulkWrite insert to land');
    });
    expect(issued).toEqual([]);
    await flush();
    await suite.listener.waitFor(() => unattributed() - before === 1);
  });
});

describe('queries built by hand on the watched collection are judged where they are built', () => {
  // Mongoose's clone() of a hand-built query is a query of the model (its middleware runs): it is
  // judged where clone() is called.
  const expected: Record<string, { operation: string; bypassedMiddleware: boolean }> = {
    'Query.updateMany': { operation: 'updateMany', bypassedMiddleware: true },
    'Query.deleteOne().exec()': { operation: 'deleteOne', bypassedMiddleware: true },
    'Query.findOneAndUpdate().then()': { operation: 'findOneAndUpdate', bypassedMiddleware: true },
    'Query.clone()': { operation: 'updateOne', bypassedMiddleware: false },
    'otherModel.Query.replaceOne': { operation: 'replaceOne', bypassedMiddleware: true },
  };
  it.each(Object.keys(legacyRaw.handBuilt as object))(
    '%s from legacy code is reported at its call site; from the auth module it is not',
    async (name) => {
      const { T, run } = await model();
      expect(await run((approvedRaw.handBuilt as Record<string, Entry>)[name]!)).toEqual([]);
      const reports = await run((legacyRaw.handBuilt as Record<string, Entry>)[name]!);
      expect(reports).toHaveLength(1);
      // Reported under the watched model's name; its middleware did not run for a query of another class.
      expect(reports[0]).toMatchObject({ model: T.modelName, ...expected[name] });
      expect(reports[0]!.callSite).toMatchObject({ file: `${fixtureDir as string}legacy/raw.mjs`, line: siteLine('legacy/raw.mjs', name) });
    },
  );

  it('is refused in throw mode, and a hand-built query on a collection nobody watches is left alone', async () => {
    const { T } = await model({ mode: 'throw', onBypass: undefined });
    const seeded = (await (approvedWrites.writes as Record<string, Entry>)['Model.create(single)']!(T, { token } as never)) as {
      _id: unknown;
    };
    const refused = (legacyRaw.handBuilt as Record<string, Entry>)['Query.deleteOne().exec()']!;
    await expect(refused(T, { token, id: seeded._id, client, other: plainModel() })).rejects.toMatchObject({
      name: 'RogueWriteError',
      report: { operation: 'deleteOne', bypassedMiddleware: true },
    });
    expect(await T.countDocuments({ _id: seeded._id })).toBe(1);
    await (approvedRaw.handBuilt as Record<string, Entry>)['Query.deleteOne().exec()']!(T, {
      token,
      id: seeded._id,
      client,
      other: plainModel(),
    });
    expect(await T.countDocuments({ _id: seeded._id })).toBe(0);
    const other = plainModel();
    const made = await new BaseQuery({}, {}, other, other.collection).updateMany({}, { $set: { user: 'elsewhere' } });
    expect(made).toMatchObject({ acknowledged: true });
  });
});

describe('reads outside the auth module (opt-in)', () => {
  const expectedOperation: Record<string, string> = { findById: 'findOne', exists: 'findOne', 'new Model.Query(filter)': 'find' };

  it.each(Object.keys(legacyRaw.reads as object))(
    '%s from legacy code is reported as a read; from the auth module it is not',
    async (name) => {
      const { run } = await model({ operations: ['create', 'update', 'delete', 'read'] });
      expect(await run((approvedRaw.reads as Record<string, Entry>)[name]!)).toEqual([]);
      const reports = await run((legacyRaw.reads as Record<string, Entry>)[name]!);
      expect(reports.map((r) => [r.operation, r.kind])).toEqual([[expectedOperation[name] ?? name, 'read']]);
      expect(reports[0]!.callSite).toMatchObject({ file: `${fixtureDir as string}legacy/raw.mjs`, line: siteLine('legacy/raw.mjs', name) });
    },
  );

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
