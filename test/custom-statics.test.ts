/**
 * A schema static named like one of Mongoose's (`schema.statics.updateOne`, `schema.statics.create`;
 * Mongoose's gh-7698) is the app's code: with the plugin it still runs, exactly once per call, and the
 * writes it makes are still judged. Real Mongoose on the test server.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import mongoose, { type Connection } from 'mongoose';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { tripwire } from '../src/plugin.js';
import type { BypassReport } from '../src/types.js';
import { verify } from '../src/verify.js';
import { waitFor } from './support/wait.js';

let connection: Connection;
beforeAll(async () => {
  connection = await mongoose.createConnection(process.env.MONGODB_URI!, { dbName: `statics_${process.pid}` }).asPromise();
});
afterAll(() => connection.close());

it('schema statics named create and updateOne run with the plugin, and their writes are reported', async () => {
  const calls: string[] = [];
  const reports: BypassReport[] = [];
  const schema = new mongoose.Schema({ name: String }, { timestamps: true });
  schema.statics.create = function (this: mongoose.Model<unknown>, ...args: unknown[]) {
    calls.push('create');
    return (mongoose.Model.create as (...a: unknown[]) => unknown).apply(this, args);
  };
  schema.statics.updateOne = function (this: mongoose.Model<unknown>, ...args: unknown[]) {
    calls.push('updateOne');
    return (mongoose.Model.updateOne as (...a: unknown[]) => unknown).apply(this, args); // @site static.updateOne
  };
  schema.plugin(tripwire, { approved: ['nothing-approved/**'], statsd: false, rateLimit: false, onBypass: (r) => void reports.push(r) });
  const M = connection.model('CustomStatics', schema);
  await M.init();

  const created = await M.create({ name: 'a' });
  await M.updateOne({ _id: created._id }, { name: 'b' });
  expect(calls).toEqual(['create', 'updateOne']);
  expect((await M.findById(created._id).lean())?.name).toBe('b');

  await waitFor(() => reports.length === 2, 'two reports');
  expect(reports.map((r) => r.operation)).toEqual(['create', 'updateOne']);
  // The updateOne static is the innermost application frame of its write: it decides, as without the static wrapper.
  const staticLine =
    readFileSync(fileURLToPath(import.meta.url), 'utf8')
      .split('\n')
      .findIndex((l) => l.endsWith('// @site static.updateOne')) + 1;
  expect(reports[1]!.callSite).toMatchObject({ file: expect.stringMatching(/custom-statics\.test\.ts$/), line: staticLine });
  expect(verify().problems.filter((p) => p.startsWith('CustomStatics'))).toEqual([]);
});
