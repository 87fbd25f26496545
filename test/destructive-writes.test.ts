/**
 * Writes that replace, rename or drop the whole watched collection: an aggregation ending in `$out`
 * or `$merge` (from any model, a Mongoose `Aggregate` however built, the driver's collection), a
 * rename onto or away from it, a drop of it or of its database, and a base-class
 * `Model.prototype.save.call(doc)`. Each is judged where it is called, approved and rogue, in report
 * and throw mode, in process and in plain node against the built package
 * (test/fixtures/destructive/). Command monitoring counts the same commands sent raw, by database
 * and collection.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mongoose from 'mongoose';
import { describe, expect, it } from 'vitest';
import { flush } from '../src/index.js';
import { tripwire } from '../src/plugin.js';
import { renderAlert } from '../src/report/alert.js';
import type { BypassReport } from '../src/types.js';
// @ts-expect-error plain ESM fixture without types
import { fixtureDir, ROUTES, runDestructive, siteLine } from './fixtures/destructive/run.mjs';
import { listenerSuite } from './support/listener-suite.js';

interface Summary {
  model: string;
  operation: string;
  kind: string;
  file: string;
  line: number;
  blocked: boolean;
  bypassedMiddleware: boolean;
}
interface Result {
  route: string;
  dir: 'auth' | 'legacy';
  error?: string;
  tokens: string[];
  reports: Summary[];
}

// What each route is reported as, and what the tokens collection holds after it ran (seeded with
// t1, t2; the audits collection holds a1, the staging collection s1).
const EXPECTED: Record<string, { operation: string; kind: string; bypassedMiddleware: boolean; after: string[] }> = {
  'Model.aggregate $out': { operation: 'aggregate.$out', kind: 'create', bypassedMiddleware: false, after: ['a1'] },
  'Model.aggregate $merge': { operation: 'aggregate.$merge', kind: 'update', bypassedMiddleware: false, after: ['a1', 't1', 't2'] },
  '$merge as a string': { operation: 'aggregate.$merge', kind: 'update', bypassedMiddleware: false, after: ['a1', 't1', 't2'] },
  '$merge into {db,coll}': { operation: 'aggregate.$merge', kind: 'update', bypassedMiddleware: false, after: ['a1', 't1', 't2'] },
  'Aggregate.out()': { operation: 'aggregate.$out', kind: 'create', bypassedMiddleware: false, after: ['a1'] },
  'new Aggregate().model()': { operation: 'aggregate.$out', kind: 'create', bypassedMiddleware: false, after: ['a1'] },
  'Model.collection.aggregate': { operation: 'aggregate.$out', kind: 'create', bypassedMiddleware: true, after: ['a1'] },
  'Collection#aggregate': { operation: 'aggregate.$out', kind: 'create', bypassedMiddleware: true, after: ['s1'] },
  'Db#renameCollection onto': { operation: 'renameCollection', kind: 'delete', bypassedMiddleware: true, after: ['s1'] },
  'Collection#rename onto': { operation: 'renameCollection', kind: 'delete', bypassedMiddleware: true, after: ['s1'] },
  'Collection#rename away': { operation: 'renameCollection', kind: 'delete', bypassedMiddleware: true, after: [] },
  'Collection#drop': { operation: 'drop', kind: 'delete', bypassedMiddleware: true, after: [] },
  'Db#dropCollection': { operation: 'dropCollection', kind: 'delete', bypassedMiddleware: true, after: [] },
  'Db#dropDatabase': { operation: 'dropDatabase', kind: 'delete', bypassedMiddleware: true, after: [] },
  'Model.prototype.save.call': { operation: 'save', kind: 'update', bypassedMiddleware: false, after: ['t1', 't2'] },
  'Model.prototype.$save.apply': { operation: 'save', kind: 'update', bypassedMiddleware: false, after: ['t1', 't2'] },
};

function check(results: Result[], mode: 'report' | 'throw'): void {
  expect(new Set(ROUTES as string[])).toEqual(new Set(Object.keys(EXPECTED)));
  expect(results).toHaveLength(2 * Object.keys(EXPECTED).length);
  for (const result of results) {
    const label = `${result.dir} ${result.route} (${mode})`;
    const expected = EXPECTED[result.route]!;
    if (result.dir === 'auth') {
      expect({ reports: result.reports, error: result.error, tokens: result.tokens }, label).toEqual({
        reports: [],
        error: undefined,
        tokens: expected.after,
      });
      continue;
    }
    expect(result.reports, label).toEqual([
      {
        model: 'AccessToken',
        operation: expected.operation,
        kind: expected.kind,
        file: 'legacy/writes.mjs',
        line: siteLine('legacy/writes.mjs', result.route),
        blocked: mode === 'throw',
        bypassedMiddleware: expected.bypassedMiddleware,
      },
    ]);
    if (mode === 'throw') {
      // Refused before it ran: the collection and every token survive.
      expect({ error: result.error, tokens: result.tokens }, label).toEqual({ error: 'RogueWriteError', tokens: ['t1', 't2'] });
    } else {
      expect({ error: result.error, tokens: result.tokens }, label).toEqual({ error: undefined, tokens: expected.after });
    }
  }
}

const uri = () => process.env.MONGODB_URI!;

describe('whole-collection writes are judged where they are called', () => {
  it('in process, report mode: each rogue route reported once at its call site, with its operation and kind; approved never', async () => {
    check((await runDestructive({ mongoose, tripwire, uri: uri(), label: 'destructive_report' })) as Result[], 'report');
  }, 60_000);

  it('in process, throw mode: each rogue route refused before it runs, the collection intact', async () => {
    check((await runDestructive({ mongoose, tripwire, uri: uri(), label: 'destructive_throw', mode: 'throw' })) as Result[], 'throw');
  }, 60_000);

  it.each(['report', 'throw'] as const)(
    'in a plain node process against the built package (%s mode), the same',
    async (mode) => {
      const script = join(fixtureDir as string, 'main.mjs');
      const { stdout } = await promisify(execFile)(process.execPath, [script, join(process.cwd(), 'dist', 'index.js'), mode], {
        env: { ...process.env },
        maxBuffer: 16 * 1024 * 1024,
      });
      check(JSON.parse(stdout) as Result[], mode);
    },
    120_000,
  );
});

describe('command monitoring counts the same commands sent raw, by database and collection', () => {
  let count = 0;
  const suite = listenerSuite(() =>
    mongoose.createConnection(uri(), { dbName: `destructive_wire_${process.pid}`, monitorCommands: true }).asPromise(),
  );
  const counter = (...tags: string[]) =>
    [...suite.listener.counters()]
      .filter(([key]) => key.startsWith('tripwire.unattributed_writes|') && tags.every((tag) => key.split(/[|,#]/).includes(tag)))
      .reduce((n, [, v]) => n + v, 0);

  async function watched() {
    const reports: BypassReport[] = [];
    const schema = new mongoose.Schema({ token: String });
    schema.plugin(tripwire, {
      // The test's own seeding is approved code; every other call of this file is rogue.
      approved: ['auth/**', (frame) => frame.function === 'seed'],
      root: fixtureDir as string,
      statsd: { host: '127.0.0.1', port: suite.listener.port },
      rateLimit: false,
      onBypass: (report) => void reports.push(report),
      onError: () => undefined,
    });
    const collection = `wiretokens${++count}`;
    const T = suite.connection.model(`WireToken${count}`, schema, collection);
    await T.init();
    const db = suite.connection.db!;
    const seed = async () => {
      await db.collection(collection).insertMany([{ token: 't1' }, { token: 't2' }]);
      await db.collection('wirestaging').deleteMany({});
      await db.collection('wirestaging').insertOne({ token: 's1' });
    };
    await seed();
    return { reports, collection, db, seed, dbName: suite.connection.name };
  }

  it('aggregate $out/$merge, renameCollection, drop and dropDatabase sent as commands are each counted once', async () => {
    const { reports, collection, db, seed, dbName } = await watched();
    const admin = suite.connection.getClient().db('admin');
    const wire = (command: string) => counter(`collection:${collection}`, 'route:command_monitoring', `command:${command}`);
    await db.command({ aggregate: 'wirestaging', pipeline: [{ $match: {} }, { $out: collection }], cursor: {} });
    await db.command({ aggregate: 'wirestaging', pipeline: [{ $merge: { into: { db: dbName, coll: collection } } }], cursor: {} });
    await seed();
    await admin.command({ renameCollection: `${dbName}.wirestaging`, to: `${dbName}.${collection}`, dropTarget: true });
    await seed();
    await admin.command({ renameCollection: `${dbName}.${collection}`, to: `${dbName}.wireaway` });
    await seed();
    await db.command({ drop: collection });
    await seed();
    await suite.listener.waitFor(() => wire('aggregate') === 2 && wire('renameCollection') === 2 && wire('drop') === 1);
    expect({ aggregate: wire('aggregate'), rename: wire('renameCollection'), drop: wire('drop') }).toEqual({
      aggregate: 2,
      rename: 2,
      drop: 1,
    });
    expect(reports).toEqual([]); // no call site: counted only
  });

  it('dropDatabase of the watched collection’s database is counted', async () => {
    const { collection } = await watched();
    const other = await mongoose
      .createConnection(uri(), { dbName: `destructive_dropdb_${process.pid}`, monitorCommands: true })
      .asPromise();
    try {
      const schema = new mongoose.Schema({ token: String });
      schema.plugin(tripwire, {
        approved: ['auth/**'],
        root: fixtureDir as string,
        statsd: { host: '127.0.0.1', port: suite.listener.port },
        onError: () => undefined,
      });
      const T = other.model('DropDbToken', schema, collection);
      await T.init();
      await other.db!.collection(collection).insertOne({ token: 't' });
      await other.db!.command({ dropDatabase: 1 });
      const dropped = () => counter(`collection:${collection}`, 'route:command_monitoring', 'command:dropDatabase');
      await suite.listener.waitFor(() => dropped() === 1);
      expect(dropped()).toBe(1);
    } finally {
      await other.close();
    }
  });

  it('a write to the same collection name in another database is not counted, nor reported', async () => {
    const { reports, collection } = await watched();
    const otherDb = suite.connection.getClient().db(`otherdb_${process.pid}`);
    await otherDb.collection(collection).insertOne({ token: 'elsewhere' });
    await otherDb.collection('source').insertOne({ token: 'source' });
    await otherDb.command({ aggregate: 'source', pipeline: [{ $out: collection }], cursor: {} });
    await otherDb
      .collection('source')
      .aggregate([{ $merge: collection }])
      .toArray();
    await suite.connection
      .getClient()
      .db('admin')
      .command({ renameCollection: `${otherDb.databaseName}.source`, to: `${otherDb.databaseName}.${collection}`, dropTarget: true });
    await otherDb.command({ drop: collection });
    await otherDb.collection(collection).insertOne({ token: 'again' });
    await otherDb.collection(collection).drop();
    // A write that is counted, after them: once it arrived, the ones before would have too.
    await suite.connection.db!.command({ drop: collection });
    await suite.listener.waitFor(() => counter(`collection:${collection}`) >= 1);
    expect(counter(`collection:${collection}`)).toBe(1);
    expect(counter(`collection:${collection}`, 'command:drop', 'route:command_monitoring')).toBe(1);
    expect(reports).toEqual([]);
  });

  it('a judged call is reported, not also counted; a call with no application frame is counted once, on the driver route', async () => {
    const { reports, collection, db, seed } = await watched();
    await db.dropCollection(collection); // rogue: this test file is not approved code
    await seed();
    await db
      .collection('wirestaging')
      .aggregate([{ $out: collection }])
      .toArray();
    await seed();
    // Mongoose's own `connection.dropCollection` drops after an await: its awaiting caller decides.
    await suite.connection.dropCollection(collection);
    await seed();
    // Called by Node's timers, with no frame of the app on the stack and none awaiting it.
    setTimeout(db.dropCollection.bind(db, collection), 0);
    const driver = () => counter(`collection:${collection}`, 'route:driver', 'command:drop');
    await suite.listener.waitFor(() => driver() === 1);
    await flush(); // any other count is sent now
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(reports.map((r) => r.operation)).toEqual(['dropCollection', 'aggregate.$out', 'dropCollection']);
    expect({ all: counter(`collection:${collection}`), driver: driver() }).toEqual({ all: 1, driver: 1 });
  });
});

describe('the event says how a write skipped Mongoose', () => {
  const report = (operation: string) =>
    ({
      model: 'AccessToken',
      operation,
      kind: 'delete',
      callSite: { file: '/srv/app/legacy/x.js', line: 1, column: 1 },
      stack: [],
      framesOmitted: 0,
      fingerprint: '0123456789abcdef',
      documentIds: [],
      documentIdsOmitted: 0,
      outcome: {},
      at: new Date(0),
      suppressed: 0,
      blocked: false,
      location: 'legacy/x.js:1:1',
      bypassedMiddleware: true,
      baselined: false,
    }) as BypassReport;
  const head = (operation: string) => renderAlert(report(operation), { root: '/srv/app', notify: [], environment: [] }).head;

  it.each(['driver.deleteMany', 'client.bulkWrite', 'aggregate.$out', 'renameCollection', 'drop', 'dropCollection', 'dropDatabase'])(
    '%s: "with the MongoDB driver directly"',
    (operation) => {
      expect(head(operation)).toContain('with the MongoDB driver directly');
      expect(head(operation)).not.toContain('Model.collection');
    },
  );

  it('collection.* says "through `Model.collection`"; a hand-built query says so', () => {
    expect(head('collection.deleteMany')).toContain('through `Model.collection`');
    expect(head('deleteMany')).toContain("built by hand on Mongoose's base `Query` class");
  });
});
