/**
 * A query is judged where the app built it and keeps that verdict until it runs, however the queries
 * of approved and rogue code interleave: hooks/query.ts keeps the verdict of the query judged last in
 * a slot and moves it to a WeakMap when another query is judged. Each case fails if a query runs with
 * another query's verdict.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import mongoose from 'mongoose';
import { afterAll, describe, expect, it } from 'vitest';
import { flush } from '../src/index.js';
import { tripwire } from '../src/plugin.js';
import type { BypassReport } from '../src/types.js';
import { listenerSuite } from './support/listener-suite.js';

type Model = mongoose.Model<Record<string, unknown>>;
type Build = (T: Model, id: unknown) => mongoose.Query<unknown, unknown>;

const root = mkdtempSync(join(tmpdir(), 'tripwire-query-verdicts-'));
for (const owner of ['auth', 'legacy']) {
  mkdirSync(join(root, owner));
  writeFileSync(
    join(root, owner, 'build.mjs'),
    `export const build = (T, id) => T.updateOne({ _id: id }, { $set: { user: '${owner}' } });\n` +
      `export const buildDelete = (T, id) => T.deleteOne({ _id: id });\n`,
  );
}
afterAll(() => rmSync(root, { recursive: true, force: true }));

const suite = listenerSuite(() => mongoose.createConnection(process.env.MONGODB_URI!, { dbName: `verdicts_${process.pid}` }).asPromise());
let count = 0;

async function setUp(): Promise<{ T: Model; reports: BypassReport[]; approved: Build; rogue: Build; id: unknown }> {
  const reports: BypassReport[] = [];
  const schema = new mongoose.Schema({ user: String });
  schema.plugin(tripwire, {
    approved: ['auth/**'],
    root,
    statsd: false,
    rateLimit: false,
    onError: () => undefined,
    onBypass: (r) => {
      reports.push(r);
    },
  });
  const T = suite.connection.model(`Verdicts${++count}`, schema) as unknown as Model;
  await T.init();
  const { _id: id } = await T.collection.insertOne({ user: 'seed' }).then((r) => ({ _id: r.insertedId }));
  const approved = ((await import(pathToFileURL(join(root, 'auth', 'build.mjs')).href)) as { build: Build }).build;
  const rogue = ((await import(pathToFileURL(join(root, 'legacy', 'build.mjs')).href)) as { build: Build }).build;
  return { T, reports, approved, rogue, id };
}

/** Where the reported `updateOne` writes were built (the seed, a `collection.insertOne` from this file, is left out). */
async function rogueSites(reports: BypassReport[]): Promise<string[]> {
  await flush();
  return reports.filter((r) => r.operation === 'updateOne').map((r) => r.callSite.file.replace(`${root}/`, ''));
}

describe('a query keeps the verdict of where it was built', () => {
  it.each([
    ['approved', 'rogue', 'built order'],
    ['approved', 'rogue', 'reverse order'],
    ['rogue', 'approved', 'built order'],
    ['rogue', 'approved', 'reverse order'],
  ] as const)('%s built first, %s second, run in %s', async (firstBuilder, secondBuilder, order) => {
    const setup = await setUp();
    const { T, reports, id } = setup;
    const first = setup[firstBuilder](T, id);
    const second = setup[secondBuilder](T, id);
    for (const query of order === 'built order' ? [first, second] : [second, first]) await query;
    expect(await rogueSites(reports)).toEqual(['legacy/build.mjs']);
  });

  it('many built at once and run together: each counted as its builder', async () => {
    const { T, reports, approved, rogue, id } = await setUp();
    const queries = Array.from({ length: 20 }, (_, i) => (i % 3 === 0 ? rogue(T, id) : approved(T, id)));
    await Promise.all(queries);
    expect(await rogueSites(reports)).toEqual(Array(7).fill('legacy/build.mjs'));
  });

  it('a query built and never run leaves the next ones their own verdicts', async () => {
    const { T, reports, approved, rogue, id } = await setUp();
    rogue(T, id); // never run: no write, no report
    await approved(T, id);
    const later = rogue(T, id);
    approved(T, id); // never run
    await later;
    expect(await rogueSites(reports)).toEqual(['legacy/build.mjs']);
  });

  it('a query run twice rejects as Mongoose does, and is reported once', async () => {
    const { T, reports, rogue, id } = await setUp();
    const query = rogue(T, id);
    await query.exec();
    const again = await query.exec().then(
      () => 'resolved',
      (error: Error) => error.message,
    );
    expect(again).toMatch(/Query was already executed/);
    expect(await rogueSites(reports)).toEqual(['legacy/build.mjs']);
  });
});
