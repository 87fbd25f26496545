/**
 * Document ids in reports and events: an ObjectId as it is, any other `_id` (string, number, date,
 * binary, compound) only as an HMAC keyed per process or by `idHashKey`; `documentIds: false` sends
 * none. Real Mongoose writes on a token schema keyed by the token, real UDP datagrams.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mongoose from 'mongoose';
import { describe, expect, it } from 'vitest';
import { TripwireConfigError } from '../src/errors.js';
import { tripwire } from '../src/plugin.js';
import { buildReport, IdReader, idToString } from '../src/report/bypass-report.js';
import type { ParsedDatagram } from '../src/report/dogstatsd.js';
import type { BypassReport, TripwireOptions } from '../src/types.js';
// @ts-expect-error plain ESM fixtures without types
import { fixtureDir } from './fixtures/app/matrix.mjs';
import { connect } from './support/connect.js';
import { listenerSuite } from './support/listener-suite.js';
import { settle, waitFor } from './support/wait.js';

type EventDatagram = Extract<ParsedDatagram, { type: 'event' }>;
type Model = mongoose.Model<Record<string, unknown>>;

const HASHED = /^hmac:[0-9a-f]{32}$/;
const suite = listenerSuite(() => connect('ids'));
let count = 0;

async function model(schema: mongoose.Schema, options: Partial<TripwireOptions> = {}) {
  const reports: BypassReport[] = [];
  const faults: Error[] = [];
  schema.plugin(tripwire, {
    approved: ['auth/**'], // this test file is not approved: every write here is rogue
    root: fixtureDir as string,
    statsd: { host: '127.0.0.1', port: suite.listener.port },
    rateLimit: false,
    onBypass: (report) => void reports.push(report),
    onError: (error) => void faults.push(error),
    ...options,
  });
  const T = suite.connection.model(`IdToken${++count}`, schema) as unknown as Model;
  await T.init();
  return { T, reports, faults };
}

const events = () => suite.listener.datagrams.filter((d): d is EventDatagram => d.type === 'event');
const token = () => `tok_${randomBytes(12).toString('hex')}`;

describe('_id in reports and events', () => {
  it('a token schema keyed by the token: the token is never sent, in any write or filter', async () => {
    const { T, reports } = await model(new mongoose.Schema({ _id: String, user: String, scopes: [String] }));
    const plain = token();
    const compound = `user42:${token()}`;
    await T.create({ _id: plain, user: 'u' });
    await T.create({ _id: compound, user: 'u' });
    await T.updateOne({ _id: plain }, { $set: { scopes: ['a'] } });
    await T.findByIdAndUpdate(plain, { $set: { scopes: ['b'] } });
    await T.deleteOne({ _id: compound });
    await T.collection.deleteOne({ _id: plain } as never);
    await suite.listener.waitFor(() => events().length === 6);
    await settle();
    expect(reports.map((r) => r.kind)).toEqual(['create', 'create', 'update', 'update', 'delete', 'delete']);
    expect(reports.slice(2).map((r) => r.operation)).toEqual(['updateOne', 'findOneAndUpdate', 'deleteOne', 'collection.deleteOne']);
    for (const report of reports) {
      expect(report.documentIds).toHaveLength(1);
      expect(report.documentIds[0]).toMatch(HASHED);
    }
    // One token, one hash within the process: its writes can still be told apart and followed.
    const [created, createdCompound, updated, found, deleted, rawDeleted] = reports.map((r) => r.documentIds[0]);
    expect(new Set([created, updated, found, rawDeleted]).size).toBe(1);
    expect(deleted).toBe(createdCompound);
    expect(created).not.toBe(createdCompound);
    const sent = JSON.stringify(reports) + JSON.stringify(suite.listener.datagrams) + JSON.stringify(suite.listener.malformed);
    for (const secret of [plain, compound, compound.split(':')[1]!]) expect(sent).not.toContain(secret);
    expect(events()[0]!.text).toContain(`- documents: \`${created}\``);
  });

  it('an ObjectId _id is sent as it is (a random value the server made)', async () => {
    const { T, reports } = await model(new mongoose.Schema({ token: String }));
    const doc = await T.create({ token: token() });
    await waitFor(() => reports.length > 0, 'the report');
    await settle();
    expect(reports[0]!.documentIds).toEqual([String(doc._id)]);
  });

  it('numbers, dates, binary, UUIDs and compound _ids are hashed too, none shown in any encoding', async () => {
    const code = 483_920;
    const bytes = randomBytes(16);
    const uuid = new mongoose.mongo.BSON.UUID();
    const ids: Array<[unknown, string[]]> = [
      [code, [String(code)]],
      [new Date(1_700_000_123_456), ['1700000123456', '2023-11-14']],
      [bytes, [bytes.toString('hex'), bytes.toString('base64')]],
      [new mongoose.mongo.BSON.Binary(bytes, 4), [bytes.toString('hex'), bytes.toString('base64')]],
      [uuid, [uuid.toHexString(), uuid.toHexString(true), uuid.toString('base64')]],
      [{ user: 'alice', code: 'secret-code-9' }, ['alice', 'secret-code-9']],
      [[1, 'nested-secret'], ['nested-secret']],
    ];
    for (const [id, forms] of ids) {
      const shown = idToString(id)!;
      expect(shown, String(forms[0])).toMatch(HASHED);
      for (const form of forms) expect(shown).not.toContain(form);
      expect(idToString(id)).toBe(shown); // stable within the process
    }
    // Typed: the string '483920' and the number 483920 are different _ids, and hash differently.
    expect(idToString(String(code))).not.toBe(idToString(code));
    // A Buffer and the Binary (subtype 0) it is stored as are the same _id.
    expect(idToString(new mongoose.mongo.BSON.Binary(bytes, 0))).toBe(idToString(bytes));
    // Field order counts, as in MongoDB.
    expect(idToString({ a: 1, b: 2 })).not.toBe(idToString({ b: 2, a: 1 }));
    expect(idToString(new mongoose.Types.ObjectId('65f0c0ffee00000000000001'))).toBe('65f0c0ffee00000000000001');
    expect(idToString(undefined)).toBeUndefined();
    expect(idToString(null)).toBeUndefined();
  });

  it('a binary _id (UUID) written and filtered through Mongoose: one hash, no bytes shown', async () => {
    const { T, reports } = await model(new mongoose.Schema({ _id: mongoose.Schema.Types.UUID, user: String }));
    const id = '0f8fad5b-d9cb-469f-a165-70867728950e';
    await T.create({ _id: id, user: 'u' });
    await T.updateOne({ _id: id }, { $set: { user: 'v' } });
    await T.deleteOne({ _id: id });
    await waitFor(() => reports.length >= 3, 'three reports');
    await settle();
    expect(reports).toHaveLength(3);
    expect(new Set(reports.map((r) => r.documentIds[0])).size).toBe(1);
    expect(reports[0]!.documentIds[0]).toMatch(HASHED);
    const sent = JSON.stringify(reports);
    for (const form of [id, id.replaceAll('-', ''), Buffer.from(id.replaceAll('-', ''), 'hex').toString('base64')])
      expect(sent).not.toContain(form);
  });

  it('an unreadable _id (a throwing getter) is hashed as unreadable, never thrown into the write', () => {
    const hostile = {
      get secret(): string {
        throw new Error('no');
      },
    };
    expect(idToString(hostile)).toMatch(HASHED);
    const deep: Record<string, unknown> = {};
    let cursor = deep;
    for (let i = 0; i < 100; i++) cursor = (cursor.next = {}) as Record<string, unknown>;
    expect(idToString(deep)).toMatch(HASHED);
  });

  it('lists at most maxDocumentIds, hashing only those, and counts the rest', () => {
    const capture = { approved: false as const, frames: [], framesOmitted: 0 };
    const ids = Array.from({ length: 1000 }, (_, i) => `tok_${i}`);
    const report = buildReport({
      model: 'T',
      operation: 'insertMany',
      kind: 'create',
      capture,
      ids: [...ids, ...ids],
      outcome: {},
      at: new Date(),
      blocked: false,
      root: '/',
      maxDocumentIds: 3,
    });
    expect(report.documentIds).toHaveLength(3);
    expect(report.documentIdsOmitted).toBe(997);
  });
});

describe('idHashKey: hashes that match across processes', () => {
  const run = async (id: string, key?: string) => {
    const args = [join(fixtureDir as string, 'run-id-hash.mjs'), join(process.cwd(), 'dist', 'index.js'), id, ...(key ? [key] : [])];
    const { stdout } = await promisify(execFile)(process.execPath, args, { env: process.env });
    return JSON.parse(stdout) as string[];
  };

  it('with the same key, two processes (and this one) hash an _id the same; without one, they do not', async () => {
    const key = randomBytes(32).toString('base64');
    const id = `user7:${token()}`;
    const [a, b, c, d] = await Promise.all([run(id, key), run(id, key), run(id), run(id)]);
    expect(a).toHaveLength(1);
    expect(a![0]).toMatch(HASHED);
    expect(b).toEqual(a);
    expect(c![0]).toMatch(HASHED);
    expect(d![0]).not.toBe(c![0]); // a random key per process
    expect(c![0]).not.toBe(a![0]);
    expect(new IdReader(Buffer.from(key)).show(id)).toBe(a![0]);
    expect(idToString(id)).not.toBe(a![0]);
  });

  it('accepts a string or a Buffer of 16 bytes or more; the event carries the keyed hash', async () => {
    const key = randomBytes(16);
    const { T, reports } = await model(new mongoose.Schema({ _id: String, user: String }), { idHashKey: key });
    const id = token();
    await T.create({ _id: id, user: 'u' });
    await suite.listener.waitFor(() => events().length === 1);
    const expected = new IdReader(key).show(id)!;
    expect(reports[0]!.documentIds).toEqual([expected]);
    expect(events()[0]!.text).toContain(expected);
    key.fill(0); // the plugin kept its own copy
    await T.create({ _id: `${id}x`, user: 'u' });
    await T.deleteOne({ _id: id });
    await waitFor(() => reports.length >= 3, 'three reports');
    await settle();
    expect(reports[2]!.documentIds).toEqual([expected]);
    const schema = new mongoose.Schema({ _id: String });
    expect(() =>
      schema.plugin(tripwire, { approved: ['auth/**'], root: fixtureDir as string, statsd: false, idHashKey: 'a'.repeat(16) }),
    ).not.toThrow();
  });

  it('refuses a key that is too short or not a string/Buffer, without echoing the key', () => {
    const register = (idHashKey: unknown) => () =>
      new mongoose.Schema({ _id: String }).plugin(tripwire, {
        approved: ['auth/**'],
        root: fixtureDir as string,
        statsd: false,
        idHashKey,
      } as never);
    for (const bad of ['s3cret-short', Buffer.alloc(15), '', 'ééééééé']) {
      expect(register(bad)).toThrow(TripwireConfigError);
      expect(register(bad)).toThrow(/"idHashKey" is \d+ bytes? long: it must be at least 16/);
      if (typeof bad === 'string' && bad !== '') expect(register(bad)).not.toThrow(new RegExp(bad));
    }
    // 8 two-byte characters: 16 UTF-8 bytes.
    expect(register('éééééééé')).not.toThrow();
    // biome-ignore lint/correctness/noPrecisionLoss: a number too large to be a key, on purpose
    for (const bad of [12345678901234567890, null, ['k'.repeat(16)], { key: 'k'.repeat(16) }]) {
      expect(register(bad)).toThrow(/option "idHashKey" must be a string or a Buffer of at least 16 bytes/);
    }
  });
});

describe('documentIds: false', () => {
  it('sends no _id at all, in reports or events, only how many documents', async () => {
    const { T, reports } = await model(new mongoose.Schema({ token: String }), { documentIds: false });
    const docs = await T.insertMany([{ token: 'a' }, { token: 'b' }, { token: 'c' }]);
    await T.deleteOne({ _id: docs[0]!._id });
    await suite.listener.waitFor(() => events().length === 2);
    expect(reports.map((r) => [r.documentIds, r.documentIdsOmitted])).toEqual([
      [[], 3],
      [[], 1],
    ]);
    expect(events()[0]!.text).toContain('- documents: 3 (ids not sent)');
    const sent = JSON.stringify(reports) + JSON.stringify(suite.listener.datagrams);
    for (const doc of docs) expect(sent).not.toContain(String(doc._id));
  });

  it('must be a boolean', () => {
    const register = (documentIds: unknown) => () =>
      new mongoose.Schema({}).plugin(tripwire, { approved: ['auth/**'], root: fixtureDir as string, statsd: false, documentIds } as never);
    expect(register('no')).toThrow(/option "documentIds" must be true or false, got "no"/);
    expect(register(0)).toThrow(TripwireConfigError);
    expect(register(true)).not.toThrow();
  });
});
