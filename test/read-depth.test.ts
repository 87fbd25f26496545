/**
 * Issue 28: a stack read costs by the frame, so from a wrapper's third call on its first read goes only
 * as deep as its past calls needed to decide. Who decides is unchanged: a call that needs more frames
 * (a deeper Mongoose route into the same wrapper, rogue code anywhere) is read further and judged as before.
 */
import mongoose from 'mongoose';
import { describe, expect, it } from 'vitest';
import { stackFramesRead, stackReadCount } from '../src/attribution/call-site.js';
import { tripwire } from '../src/plugin.js';
import type { BypassReport } from '../src/types.js';
// @ts-expect-error plain ESM fixtures without types
import * as service from './fixtures/app/auth/service.mjs';
// @ts-expect-error plain ESM fixtures without types
import * as approved from './fixtures/app/auth/writes.mjs';
// @ts-expect-error plain ESM fixtures without types
import * as legacy from './fixtures/app/legacy/writes.mjs';
// @ts-expect-error plain ESM fixtures without types
import { fixtureDir, siteLine } from './fixtures/app/matrix.mjs';
// @ts-expect-error plain ESM fixtures without types
import { tokenSchema } from './fixtures/app/models.mjs';
import { listenerSuite } from './support/listener-suite.js';
import { waitFor } from './support/wait.js';

type Model = mongoose.Model<Record<string, unknown>>;
type Write = (T: Model, c: object) => Promise<unknown>;
const writes = approved.writes as Record<string, Write>;
const rogueWrites = legacy.writes as Record<string, Write>;

const suite = listenerSuite(() => mongoose.createConnection(process.env.MONGODB_URI!, { dbName: `depth_${process.pid}` }).asPromise());
let count = 0;
const token = () => `tok_${Math.random().toString(36).slice(2)}`;

async function watched(reports: BypassReport[], passThrough: string[] = []): Promise<{ T: Model; id: unknown }> {
  const schema = tokenSchema() as mongoose.Schema;
  schema.plugin(tripwire, {
    approved: ['auth/**'],
    passThrough,
    root: fixtureDir as string,
    statsd: { host: '127.0.0.1', port: suite.listener.port },
    rateLimit: false,
    onBypass: (report: BypassReport) => void reports.push(report),
    onError: () => undefined,
  });
  const T = suite.connection.model(`Depth${++count}`, schema) as unknown as Model;
  await T.init();
  const seeded = (await writes['Model.create(single)']!(T, { token })) as { _id: unknown };
  return { T, id: seeded._id };
}

/** Reads and frames read while `write` ran. */
async function cost(T: Model, id: unknown, write: Write): Promise<{ reads: number; frames: number }> {
  const reads = stackReadCount();
  const frames = stackFramesRead();
  await write(T, { token, id, opts: {} });
  return { reads: stackReadCount() - reads, frames: stackFramesRead() - frames };
}

describe('the first stack read goes as deep as the calls of a wrapper needed', () => {
  it('an approved updateOne reads up to 8 frames on its first two calls, then the 2 that decide it, one read each', async () => {
    const reports: BypassReport[] = [];
    const { T, id } = await watched(reports);
    const seen = [];
    for (let i = 0; i < 5; i++) seen.push(await cost(T, id, writes['Model.updateOne']!));
    expect(seen.map((c) => c.reads)).toEqual([1, 1, 1, 1, 1]);
    // Read above the model's own updateOne (its static hands the verdict to the query it builds): the auth
    // module's line is the first frame; two are read at the least.
    expect(seen.slice(2).map((c) => c.frames)).toEqual([2, 2, 2]);
    expect(seen[0]!.frames).toBeGreaterThan(2);
    expect(reports).toEqual([]);
  });

  it('a deeper route into the same wrapper reads further once, stays approved, and raises the depth', async () => {
    const reports: BypassReport[] = [];
    const { T, id } = await watched(reports, ['shared/**']);
    for (let i = 0; i < 3; i++) await cost(T, id, writes['Model.updateOne']!);
    const learned = await cost(T, id, writes['Model.updateOne']!);
    expect(learned).toEqual({ reads: 1, frames: 2 });
    // The same static, three pass-through frames (shared/deep.mjs) below the auth module's.
    const near: Write = (M, c) => service.nearApproved(M, (c as { id: unknown }).id) as Promise<unknown>;
    const first = await cost(T, id, near);
    expect(first.reads).toBe(2);
    expect(await cost(T, id, near)).toEqual({ reads: 1, frames: 4 });
    expect(await cost(T, id, writes['Model.updateOne']!)).toEqual({ reads: 1, frames: 4 });
    expect(reports).toEqual([]);
  });

  it('a rogue write through a wrapper that learned a shallow depth is reported at its own line', async () => {
    const reports: BypassReport[] = [];
    const { T, id } = await watched(reports);
    for (let i = 0; i < 3; i++) await cost(T, id, writes['Model.updateOne']!);
    await cost(T, id, rogueWrites['Model.updateOne']!);
    await waitFor(() => reports.length === 1, 'one report');
    expect(reports[0]!.callSite).toMatchObject({
      file: `${fixtureDir as string}legacy/writes.mjs`,
      line: siteLine('legacy/writes.mjs', 'Model.updateOne'),
    });
    // The report carries the whole stack (the test runner's frames too), not the learned few frames.
    expect(reports[0]!.stack.length + reports[0]!.framesOmitted).toBeGreaterThan(3);
  });
});
