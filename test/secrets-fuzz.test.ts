/**
 * The fuzz the issue asks for: 10 000 real rogue writes (TRIPWIRE_TEST_SCALE=1; fewer by default) through Mongoose (and `Model.collection`)
 * to models keyed by string, compound, binary and UUID `_id`s that hold secrets, with secrets in
 * filters and updates too; every report, every datagram received over UDP and every warning is then
 * searched for every secret, in clear, hex and base64. None may be found.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import mongoose from 'mongoose';
import { describe, expect, it } from 'vitest';
import { close } from '../src/index.js';
import { tripwire } from '../src/plugin.js';
import type { BypassReport } from '../src/types.js';
// @ts-expect-error plain ESM fixtures without types
import { fixtureDir } from './fixtures/app/matrix.mjs';
import { connect } from './support/connect.js';
import { listenerSuite } from './support/listener-suite.js';
import { scaled, TEST_SCALE } from './support/scale.js';
import { settle } from './support/wait.js';

type Model = mongoose.Model<Record<string, unknown>>;

const suite = listenerSuite(() => connect('secrets_fuzz'));

const BASE62 = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
/** A secret: `sk_` and 20 random base62 characters, so every clear-text copy is found by one regex. */
function secret(): string {
  return `sk_${Array.from(randomBytes(20), (byte) => BASE62[byte % 62]).join('')}`;
}

/** Every place a secret could hide, by the forms it could take. */
class Secrets {
  /** In clear: `sk_…` secrets and UUIDs (as Mongoose takes them, with dashes). */
  readonly clear = new Set<string>();
  readonly hex = new Set<string>();
  readonly base64 = new Set<string>();
  private readonly hexLengths = new Set<number>();
  private readonly base64Lengths = new Set<number>();

  add(value: string | Buffer): void {
    if (typeof value === 'string') {
      this.clear.add(value);
      this.add(Buffer.from(value));
      return;
    }
    const forms: Array<[Set<string>, Set<number>, string]> = [
      [this.hex, this.hexLengths, value.toString('hex')],
      [this.base64, this.base64Lengths, value.toString('base64').replace(/=+$/, '')],
      [this.base64, this.base64Lengths, value.toString('base64url')],
    ];
    for (const [set, lengths, form] of forms) {
      set.add(form);
      lengths.add(form.length);
    }
  }

  get size(): number {
    return this.clear.size;
  }

  /** Secrets found in `text`: every clear copy, and every run of hex or base64 checked at every offset and length. */
  leaks(text: string): string[] {
    const found = new Set<string>();
    for (const [match] of text.matchAll(/sk_[A-Za-z0-9]{20}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi)) {
      if (this.clear.has(match) || this.clear.has(match.toLowerCase())) found.add(match);
    }
    const scan = (pattern: RegExp, set: Set<string>, lengths: Set<number>, label: string, normalise: (s: string) => string) => {
      for (const [match] of text.matchAll(pattern)) {
        const run = normalise(match);
        for (const length of lengths) {
          for (let i = 0; i + length <= run.length; i++)
            if (set.has(run.slice(i, i + length))) found.add(`${label} ${run.slice(i, i + length)}`);
        }
      }
    };
    scan(/[0-9a-fA-F]{32,}/g, this.hex, this.hexLengths, 'hex', (s) => s.toLowerCase());
    scan(/[A-Za-z0-9+/_-]{21,}/g, this.base64, this.base64Lengths, 'base64', (s) => s);
    return [...found];
  }
}

/** The secret's bytes as a binary `_id`: its clear text, hex and base64 are all searched for. */
const binary = (value: string) => Buffer.from(value);

describe('no secret in any datagram, report or warning', () => {
  it('the leak finder finds a secret in clear, hex and base64, anywhere in a text', () => {
    const secrets = new Secrets();
    const value = secret();
    secrets.add(value);
    const uuid = randomUUID();
    secrets.clear.add(uuid);
    const bytes = Buffer.from(uuid.replaceAll('-', ''), 'hex');
    secrets.add(bytes);
    const planted = [
      value,
      Buffer.from(value).toString('hex'),
      Buffer.from(value).toString('hex').toUpperCase(),
      Buffer.from(value).toString('base64'),
      Buffer.from(value).toString('base64url'),
      uuid,
      uuid.toUpperCase(),
      bytes.toString('hex'),
      bytes.toString('base64'),
      bytes.toString('base64url'),
    ];
    for (const form of planted) {
      expect(secrets.leaks(`{"documentIds":["x${form}"],"text":"- documents: \`${form}\`"}`), form).toHaveLength(1);
    }
    expect(secrets.leaks(`hmac:${'a'.repeat(32)} 65f0c0ffee00000000000001 sk_${'x'.repeat(20)}`)).toEqual([]);
  });

  // Batches of 250 units of 4 writes; TRIPWIRE_TEST_SCALE=1 (CI): 10 batches, 10 000 writes.
  const BATCHES = scaled(10);
  const WRITES = BATCHES * 1000;
  it(
    `${WRITES} rogue writes keyed by string, compound, binary and UUID _ids holding secrets`,
    async () => {
      const reports: BypassReport[] = [];
      const warnings: string[] = [];
      const onWarning = (warning: Error) => void warnings.push(`${warning.message}\n${warning.stack ?? ''}`);
      process.on('warning', onWarning);
      const options = {
        approved: ['auth/**'], // this file is not approved: every write here is rogue
        root: fixtureDir as string,
        statsd: { host: '127.0.0.1', port: suite.listener.port },
        rateLimit: false as const, // an event for every write: every id reaches a datagram
        onBypass: (report: BypassReport) => void reports.push(report),
        onError: (error: Error) => void warnings.push(`${error.message}\n${String((error as { cause?: unknown }).cause ?? '')}`),
      };
      const models: Record<string, Model> = {};
      for (const [name, idType] of [
        ['Str', String],
        ['Compound', Object],
        ['Bin', Buffer],
        ['Uuid', mongoose.Schema.Types.UUID],
      ] as const) {
        const schema = new mongoose.Schema({ _id: idType, user: String, secret: String, scopes: [String] });
        schema.plugin(tripwire, options);
        models[name] = suite.connection.model(`Fuzz${name}`, schema) as unknown as Model;
        await models[name]!.init();
      }

      const secrets = new Secrets();
      /** A fresh `_id` holding a secret, for the model of unit `n`. */
      const idFor = (n: number): [Model, unknown] => {
        const value = secret();
        secrets.add(value);
        switch (n % 5) {
          case 0:
            return [models.Str!, value];
          case 1:
            return [models.Str!, `user${n}:${value}`];
          case 2:
            return [models.Compound!, { user: `user${n}`, token: value }];
          case 3:
            return [models.Bin!, binary(value)];
          default: {
            const uuid = randomUUID(); // random, but a secret all the same (some apps use one as the token)
            secrets.clear.add(uuid);
            secrets.add(Buffer.from(uuid.replaceAll('-', ''), 'hex'));
            return [models.Uuid!, uuid];
          }
        }
      };
      const fieldSecret = () => {
        const value = secret();
        secrets.add(value);
        return value;
      };

      // Each unit: 4 writes on one secret-keyed document, by a path chosen in rotation.
      const unit = async (n: number): Promise<number> => {
        const [T, id] = idFor(n);
        const [, other] = idFor(n);
        const v = fieldSecret();
        switch (n % 4) {
          case 0:
            await T.create({ _id: id, user: `u${n}`, secret: v });
            await T.updateOne({ _id: id }, { $set: { secret: fieldSecret() } });
            await T.findByIdAndUpdate(id, { $set: { scopes: [fieldSecret()] } });
            await T.deleteOne({ _id: id });
            return 4;
          case 1: {
            await T.insertMany([
              { _id: id, secret: v },
              { _id: other, secret: fieldSecret() },
            ]);
            await T.findOneAndUpdate({ _id: id, secret: v }, { $set: { secret: fieldSecret() } }, { returnDocument: 'after' });
            await T.replaceOne({ _id: other }, { secret: fieldSecret(), user: v });
            await T.findOneAndDelete({ _id: id });
            return 4;
          }
          case 2: {
            const doc = new T({ _id: id, secret: v });
            await doc.save();
            doc.set('secret', fieldSecret());
            await doc.save();
            await T.bulkWrite([
              { insertOne: { document: { _id: other, secret: fieldSecret() } } },
              { updateOne: { filter: { _id: id }, update: { $set: { secret: fieldSecret() } } } },
            ] as never);
            await doc.deleteOne();
            return 4;
          }
          default:
            await T.collection.insertOne({ _id: id, secret: v } as never);
            await T.collection.updateOne({ _id: id } as never, { $set: { secret: fieldSecret() } });
            await T.updateOne({ secret: v }, { $set: { user: fieldSecret() } }, { upsert: true });
            await T.collection.deleteOne({ _id: id } as never);
            return 4;
        }
      };

      let writes = 0;
      for (let batch = 0; batch < BATCHES; batch++) {
        const done = await Promise.all(Array.from({ length: 250 }, (_, i) => unit(batch * 250 + i)));
        writes += done.reduce((sum, n) => sum + n, 0);
      }
      await settle();
      await close();
      // Every event, or as many as UDP delivered: a bounded wait, then the search runs on what arrived.
      await suite.listener.waitFor((all) => all.filter((d) => d.type === 'event').length >= WRITES, 10_000).catch(() => undefined);
      process.off('warning', onWarning);

      expect(writes).toBe(WRITES);
      expect(secrets.size).toBeGreaterThan(WRITES); // at least one distinct secret per write
      expect(reports).toHaveLength(WRITES);
      const events = suite.listener.datagrams.filter((d) => d.type === 'event');
      // UDP: a loaded machine may drop some; most must arrive for the search to mean something.
      expect(events.length).toBeGreaterThan(WRITES / 2);
      expect(suite.listener.malformed).toEqual([]);
      const leaked = [
        ...secrets.leaks(JSON.stringify(reports)),
        ...secrets.leaks(JSON.stringify(suite.listener.datagrams)),
        ...secrets.leaks(warnings.join('\n')),
      ];
      expect(leaked.slice(0, 20), `${leaked.length} secrets leaked`).toEqual([]);

      // Ids are shown, hashed: the secret-keyed documents are still told apart.
      const ids = reports.flatMap((r) => r.documentIds);
      expect(ids.length).toBeGreaterThan(WRITES * 0.9);
      // (an upsert without an _id gets an ObjectId from the server: shown as it is)
      expect(ids.filter((id) => !/^(hmac:[0-9a-f]{32}|[0-9a-f]{24})$/.test(id))).toEqual([]);
      expect(ids.filter((id) => id.startsWith('hmac:')).length).toBeGreaterThan(WRITES * 0.9);
    },
    60_000 + TEST_SCALE * 540_000,
  ); // bounded work: 10 minutes at full size on a loaded machine
});
