/**
 * The `mongoose-tripwire:rogue-write` diagnostics channel: every rogue write's report for whoever
 * subscribes (throw-mode refusals marked `blocked`), a subscriber that throws reaches nothing but
 * `onError`, and nothing is read or built for it while nobody subscribes. The trace read is what is
 * counted: a stand-in dd-trace global handle (`global._ddtrace`) counts how often it is asked.
 */
import { execFileSync } from 'node:child_process';
import diagnosticsChannel from 'node:diagnostics_channel';
import { join } from 'node:path';
import mongoose from 'mongoose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { flush, ROGUE_WRITE_CHANNEL, RogueWriteError, type TripwireFault } from '../src/index.js';
import { tripwire } from '../src/plugin.js';
import type { BypassReport, TripwireOptions } from '../src/types.js';
// @ts-expect-error plain ESM fixture without types
import { ownerWrite } from './fixtures/trace/approved/owner.mjs';
import { connect } from './support/connect.js';

type Model = mongoose.Model<Record<string, unknown>>;

const ROOT = join(process.cwd(), 'test', 'fixtures', 'trace');
let connection: mongoose.Connection;
let modelCount = 0;
const subscribed: Array<(message: unknown) => void> = [];

function subscribe(subscriber: (message: unknown) => void): void {
  diagnosticsChannel.subscribe(ROGUE_WRITE_CHANNEL, subscriber);
  subscribed.push(subscriber);
}

function model(options: Partial<TripwireOptions>): Model {
  const schema = new mongoose.Schema({ token: String });
  schema.plugin(tripwire, { approved: ['approved/**'], root: ROOT, statsd: false, onError: () => {}, ...options });
  return connection.model(`ChannelToken${++modelCount}`, schema) as unknown as Model;
}

/** A stand-in for dd-trace's global handle: how often the plugin asked for the active span. */
const traceReads = { count: 0 };
const fakeTracer = {
  scope: () => {
    traceReads.count++;
    return { active: () => ({ context: () => ({ toTraceId: () => '42', toSpanId: () => '7', _trace: { started: [] } }) }) };
  },
};

beforeAll(async () => {
  connection = await connect('rogue_write_channel');
  (globalThis as { _ddtrace?: unknown })._ddtrace = fakeTracer;
});

afterEach(() => {
  for (const subscriber of subscribed.splice(0)) diagnosticsChannel.unsubscribe(ROGUE_WRITE_CHANNEL, subscriber);
});

afterAll(async () => {
  delete (globalThis as { _ddtrace?: unknown })._ddtrace;
  await connection?.close();
});

describe('the rogue-write diagnostics channel', () => {
  it('receives a report for every rogue write, also those whose event the rate limit holds back', async () => {
    const Token = model({ rateLimit: { perCallSite: { events: 1, intervalMs: 600_000 } } });
    const received: BypassReport[] = [];
    subscribe((message) => received.push(message as BypassReport));
    for (let i = 0; i < 3; i++) await Token.updateOne({ token: `t${i}` }, { $set: { token: 'x' } });
    await ownerWrite(Token, 'approved');
    await flush();
    expect(received).toHaveLength(3);
    expect(received.map((report) => [report.operation, report.blocked, report.trace?.traceId])).toEqual([
      ['updateOne', false, '42'],
      ['updateOne', false, '42'],
      ['updateOne', false, '42'],
    ]);
    expect(received[1]!.location).toBe(received[0]!.location);
  });

  it('receives a throw-mode refusal, marked blocked: the report the RogueWriteError carries', async () => {
    const Token = model({ mode: 'throw' });
    const received: BypassReport[] = [];
    subscribe((message) => received.push(message as BypassReport));
    const error = await Token.deleteOne({ token: 'a' }).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(RogueWriteError);
    expect(received).toHaveLength(1);
    expect(received[0]).toBe((error as RogueWriteError).report);
    expect(received[0]).toMatchObject({ operation: 'deleteOne', blocked: true, trace: { traceId: '42', spanId: '7', source: 'datadog' } });
  });

  it('keeps a throwing subscriber from the app: onError gets subscriber_threw, no uncaught exception, others still receive', async () => {
    const faults: TripwireFault[] = [];
    const Token = model({ onError: (fault) => void faults.push(fault as TripwireFault) });
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => void uncaught.push(error);
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.on('uncaughtException', onUncaught);
    const received: BypassReport[] = [];
    try {
      subscribe(() => {
        throw new Error('the log pipeline is down');
      });
      subscribe((message) => received.push(message as BypassReport));
      await expect(Token.updateOne({ token: 'b' }, { $set: { token: 'c' } })).resolves.toMatchObject({ acknowledged: true });
      await flush();
      await new Promise((resolve) => setTimeout(resolve, 20)); // Node re-throws on process.nextTick
    } finally {
      process.off('uncaughtException', onUncaught);
      for (const listener of listeners) process.on('uncaughtException', listener);
    }
    expect(uncaught).toEqual([]);
    expect(received).toHaveLength(1);
    expect(faults.map((fault) => fault.reason)).toEqual(['subscriber_threw']);
    expect(String(faults[0]!.cause)).toContain('the log pipeline is down');
  });

  it('unsubscribes a subscriber by the function it subscribed', async () => {
    const Token = model({});
    const received: unknown[] = [];
    const subscriber = (message: unknown) => void received.push(message);
    diagnosticsChannel.subscribe(ROGUE_WRITE_CHANNEL, subscriber);
    expect(diagnosticsChannel.unsubscribe(ROGUE_WRITE_CHANNEL, subscriber)).toBe(true);
    expect(diagnosticsChannel.channel(ROGUE_WRITE_CHANNEL).hasSubscribers).toBe(false);
    await Token.updateOne({ token: 'd' }, { $set: { token: 'e' } });
    await flush();
    expect(received).toEqual([]);
  });

  it('reads nothing for it while nobody subscribes: a held-back rogue write and an approved write read no trace', async () => {
    const Token = model({ rateLimit: { perCallSite: { events: 1, intervalMs: 600_000 } } });
    const rogue = (token: string) => Token.updateOne({ token }, { $set: { token: 'y' } });
    traceReads.count = 0;
    await rogue('first'); // its event is sent: its report (and trace) are built
    await flush();
    expect(traceReads.count).toBe(1);
    await rogue('second'); // held back by the rate limit, no onBypass, no subscriber: nothing built
    await ownerWrite(Token, 'approved');
    await flush();
    expect(traceReads.count).toBe(1);
    const received: BypassReport[] = [];
    subscribe((message) => received.push(message as BypassReport));
    await rogue('third'); // the same call site, now with a subscriber: read and built
    await flush();
    expect(traceReads.count).toBe(2);
    expect(received).toHaveLength(1);
    expect(received[0]!.trace).toEqual({ traceId: '42', spanId: '7', source: 'datadog' });
  });

  it('guards a subscriber that subscribed before the plugin was loaded too', () => {
    // A fresh process: the subscriber comes first, by the channel's name, then the built module.
    const script = `
      const dc = require('node:diagnostics_channel');
      let uncaught = 0;
      process.on('uncaughtException', () => uncaught++);
      const received = [];
      dc.subscribe('${ROGUE_WRITE_CHANNEL}', () => { throw new Error('early subscriber'); });
      dc.subscribe('${ROGUE_WRITE_CHANNEL}', (message) => received.push(message));
      import(${JSON.stringify(join(process.cwd(), 'dist', 'report', 'rogue-write-channel.js'))}).then(({ publishRogueWrite }) => {
        const errors = [];
        publishRogueWrite({ model: 'M' }, (error) => errors.push(error.message));
        setTimeout(() => console.log(JSON.stringify({ uncaught, received: received.length, errors })), 20);
      });
    `;
    const output = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 });
    expect(JSON.parse(output)).toEqual({ uncaught: 0, received: 1, errors: ['early subscriber'] });
  });
});
