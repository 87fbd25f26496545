/**
 * The write matrix: every write path × every call style, from the approved module, from legacy code
 * and from a look-alike path, on real Mongoose over the wire. Run in process (vitest) and again in a
 * plain `node` child process against the built package.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Connection } from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tripwire } from '../src/plugin.js';
// @ts-expect-error plain ESM fixture without types
import { fixtureDir, modules, QUERY_PATHS, runMatrix, STYLE_NAMES, siteLine } from './fixtures/app/matrix.mjs';
import { connect } from './support/connect.js';

interface Summary {
  model: string;
  operation: string;
  kind: string;
  file: string;
  line: number;
  stackFiles: string[];
  documentIds: string[];
  fingerprint: string;
}
interface Result {
  dir: string;
  path: string;
  style: string;
  id: string;
  reports: Summary[];
}

const EXPECTED: Record<string, { operation: string; kind: string; hasId?: boolean }> = {
  'Model.create': { operation: 'create', kind: 'create' },
  'Model.create(single)': { operation: 'create', kind: 'create' },
  'Model.insertOne': { operation: 'insertOne', kind: 'create' },
  'new Model().save()': { operation: 'save', kind: 'create' },
  'doc.save()': { operation: 'save', kind: 'update', hasId: true },
  'Model.insertMany': { operation: 'insertMany', kind: 'create' },
  'Model.bulkWrite(insert)': { operation: 'bulkWrite', kind: 'create' },
  'Model.bulkWrite(mixed)': { operation: 'bulkWrite', kind: 'delete' },
  'Model.updateOne': { operation: 'updateOne', kind: 'update', hasId: true },
  'Model.updateOne(upsert)': { operation: 'updateOne', kind: 'update' },
  'Model.updateMany': { operation: 'updateMany', kind: 'update' },
  'Model.replaceOne': { operation: 'replaceOne', kind: 'update', hasId: true },
  'Model.findOneAndUpdate': { operation: 'findOneAndUpdate', kind: 'update', hasId: true },
  'Model.findOneAndUpdate(upsert)': { operation: 'findOneAndUpdate', kind: 'update' },
  'Model.findByIdAndUpdate': { operation: 'findOneAndUpdate', kind: 'update', hasId: true },
  'Model.findOneAndReplace': { operation: 'findOneAndReplace', kind: 'update', hasId: true },
  'Model.findOneAndDelete': { operation: 'findOneAndDelete', kind: 'delete', hasId: true },
  'Model.findByIdAndDelete': { operation: 'findOneAndDelete', kind: 'delete', hasId: true },
  'Model.deleteOne': { operation: 'deleteOne', kind: 'delete', hasId: true },
  'Model.deleteMany': { operation: 'deleteMany', kind: 'delete' },
  'doc.updateOne()': { operation: 'updateOne', kind: 'update', hasId: true },
  'doc.deleteOne()': { operation: 'deleteOne', kind: 'delete', hasId: true },
  'find().updateOne()': { operation: 'updateOne', kind: 'update', hasId: true },
  'where().deleteMany()': { operation: 'deleteMany', kind: 'delete' },
  'updateOne().set()': { operation: 'updateOne', kind: 'update', hasId: true },
  'Model.bulkSave': { operation: 'bulkSave', kind: 'update' },
  'Model.updateOne(middleware:false)': { operation: 'updateOne', kind: 'update', hasId: true },
  'Model.updateMany(post:false)': { operation: 'updateMany', kind: 'update' },
  'Model.findOneAndUpdate(middleware:false)': { operation: 'findOneAndUpdate', kind: 'update', hasId: true },
  'Model.deleteMany(middleware:false)': { operation: 'deleteMany', kind: 'delete' },
  'Model.insertMany(middleware:false)': { operation: 'insertMany', kind: 'create' },
  'Model.bulkWrite(middleware:false)': { operation: 'bulkWrite', kind: 'create' },
  'Model.create(middleware:false)': { operation: 'create', kind: 'create' },
  'query.setOptions(middleware:false)': { operation: 'updateOne', kind: 'update', hasId: true },
  'doc.save(middleware:false)': { operation: 'save', kind: 'update', hasId: true },
  'doc.updateOne(middleware:false)': { operation: 'updateOne', kind: 'update', hasId: true },
  'doc.deleteOne(middleware:false)': { operation: 'deleteOne', kind: 'delete', hasId: true },
};

function checkResults(results: Result[]): void {
  const paths = Object.keys(modules.auth as object);
  expect(new Set(paths)).toEqual(new Set(Object.keys(EXPECTED)));
  // Every path × style × module ran.
  const styles = [...(STYLE_NAMES as string[]), 'session'];
  const expectedCases = 3 * paths.reduce((n, p) => n + styles.filter((s) => s !== 'exec' || QUERY_PATHS.has(p)).length, 0);
  expect(results).toHaveLength(expectedCases);

  for (const result of results) {
    const label = `${result.dir} ${result.path} [${result.style}]`;
    if (result.dir === 'auth') {
      expect(result.reports, label).toEqual([]);
      continue;
    }
    const expected = EXPECTED[result.path]!;
    expect(result.reports, label).toHaveLength(1);
    const report = result.reports[0]!;
    expect({ model: report.model, operation: report.operation, kind: report.kind }, label).toEqual({
      model: 'AccessToken',
      operation: expected.operation,
      kind: expected.kind,
    });
    const file = join(fixtureDir as string, result.dir, 'writes.mjs');
    expect({ file: report.file, line: report.line }, label).toEqual({ file, line: siteLine(`${result.dir}/writes.mjs`, result.path) });
    expect(report.stackFiles[0], label).toBe(file);
    // Only application frames: no Mongoose, driver, Node or plugin frames.
    for (const frameFile of report.stackFiles) {
      expect(frameFile, label).not.toMatch(
        /node_modules[\\/](mongoose|mongodb|kareem|mquery)[\\/]|^node:|[\\/]src[\\/](?:[\\w-]+[\\/])?[\\w-]+\.ts$/,
      );
    }
    if (expected.hasId) expect(report.documentIds, label).toContain(result.id);
    expect(report.fingerprint, label).toMatch(/^[0-9a-f]{16}$/);
  }
}

let connection: Connection;
beforeAll(async () => {
  connection = await connect('matrix');
});
afterAll(async () => {
  await connection?.close();
});

describe('write matrix', () => {
  it('reports every rogue write path in every call style, exactly once, at its call site; approved writes never', async () => {
    const results = (await runMatrix(connection, tripwire)) as Result[];
    checkResults(results);
  }, 120_000);

  it('attributes the same way in a plain node process running the built package', async () => {
    const script = join(fixtureDir as string, 'run-matrix.mjs');
    const { stdout } = await promisify(execFile)(process.execPath, [script, join(process.cwd(), 'dist', 'index.js')], {
      env: { ...process.env },
      maxBuffer: 64 * 1024 * 1024,
    });
    const results = JSON.parse(stdout) as Result[];
    checkResults(results);
    // Fingerprints are stable across processes: same call site, same fingerprint.
    const inProcess = (await runMatrix(await connect('matrix2'), tripwire)) as Result[];
    const key = (r: Result) => `${r.dir}|${r.path}|${r.style}`;
    const fingerprints = new Map(inProcess.map((r) => [key(r), r.reports[0]?.fingerprint]));
    for (const r of results) expect(r.reports[0]?.fingerprint).toBe(fingerprints.get(key(r)));
  }, 120_000);
});
