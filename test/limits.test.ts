/**
 * Within Datadog's limits: every datagram at most 8192 bytes, every tag at most 200 characters (a
 * long call site keeps its file name and line), no event dropped for its tags (the trace, then
 * tags, are cut first), and a bounded number of `callsite` series. Property tests with long,
 * non-ASCII paths and many tags, checked on the raw UDP packets by the strict parser.
 */
import { execFile } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFaultReporter } from '../src/core/faults.js';
import { TripwireConfigError, type TripwireFault } from '../src/errors.js';
import { resolveOptions } from '../src/options.js';
import { tripwire } from '../src/plugin.js';
import { createSink, MAX_DATAGRAM_BYTES } from '../src/report/datadog-sink.js';
import { fitTag, MAX_TAG_CHARS, type ParsedDatagram, parsePacket, sanitizeTag } from '../src/report/dogstatsd.js';
import type { BypassReport } from '../src/types.js';
// @ts-expect-error plain ESM fixtures without types
import { fixtureDir } from './fixtures/app/matrix.mjs';
import { scaled } from './support/scale.js';
import { waitFor } from './support/wait.js';
import { captureWarnings } from './support/warnings.js';

/** A raw UDP receiver: packet sizes as sent, every packet through the strict parser. */
interface Receiver {
  port: number;
  packets: Buffer[];
  datagrams: ParsedDatagram[];
  malformed: string[];
  socket: Socket;
}
let receiver: Receiver;
beforeAll(async () => {
  const socket = createSocket('udp4');
  receiver = { port: 0, packets: [], datagrams: [], malformed: [], socket };
  socket.on('message', (packet) => {
    receiver.packets.push(packet);
    try {
      receiver.datagrams.push(...parsePacket(packet));
    } catch (error) {
      receiver.malformed.push(`${String(error)}: ${packet.toString('utf8', 0, 200)}`);
    }
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  socket.setRecvBufferSize(8 * 1024 * 1024);
  receiver.port = socket.address().port;
});
afterAll(() => receiver.socket.close());
const reset = () => {
  receiver.packets.length = 0;
  receiver.datagrams.length = 0;
  receiver.malformed.length = 0;
};

/** Seeded, so a failure can be replayed. */
function random(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (min: number, max: number) => min + Math.floor(next() * (max - min + 1));
  const ALPHABET = [...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-_. éüçØ漢字令牌🔑🚀|,#@'];
  const text = (min: number, max: number, alphabet = ALPHABET) =>
    Array.from({ length: int(min, max) }, () => alphabet[int(0, alphabet.length - 1)]).join('');
  return { next, int, text };
}

/** UTF-16 units, code points and well-formedness of a tag as received. */
function checkTag(tag: string, label: string): void {
  expect(tag.length, `${label}: ${tag}`).toBeLessThanOrEqual(MAX_TAG_CHARS);
  expect(tag.length, label).toBeGreaterThan(0);
  expect(tag.isWellFormed(), `${label}: a surrogate pair was split`).toBe(true);
}
function checkPackets(label: string): void {
  expect(receiver.malformed, label).toEqual([]);
  for (const packet of receiver.packets) expect(packet.length, label).toBeLessThanOrEqual(MAX_DATAGRAM_BYTES);
  for (const datagram of receiver.datagrams) if (datagram.type !== 'service_check') for (const tag of datagram.tags) checkTag(tag, label);
}

describe('fitTag', () => {
  const CASES = scaled(5_000, 500); // 5 000 at TRIPWIRE_TEST_SCALE=1
  it(`keeps every tag to 200 characters, never splits a character, and a call site keeps its end (property, ${CASES} cases)`, () => {
    const r = random(16);
    for (let i = 0; i < CASES; i++) {
      const tail = `${r.text(1, 40)}.mjs:${r.int(1, 99_999)}`;
      const tag = `callsite:${r.text(0, 600)}/${tail}`;
      const end = fitTag(tag, MAX_TAG_CHARS, 'end');
      checkTag(end, tag);
      expect(end.startsWith('callsite:'), end).toBe(true);
      expect(end.endsWith(tail), end).toBe(true);
      expect(fitTag(end, MAX_TAG_CHARS, 'end')).toBe(end);
      const start = fitTag(`k${i}:${r.text(0, 600)}`);
      checkTag(start, start);
      expect(start.startsWith(`k${i}:`)).toBe(true);
      if (tag.length <= MAX_TAG_CHARS) expect(end).toBe(tag);
    }
  });
});

describe('the sink, with long non-ASCII paths, deep traces and many tags (property, real UDP)', () => {
  it('sends every event and every exact count in datagrams of at most 8192 bytes and tags of at most 200 characters', async () => {
    reset();
    const r = random(1616);
    const ROUNDS = 120;
    const expectedSites: string[] = [];
    const expectedTagCounts: number[] = [];
    const expectedTags: string[][] = [];
    const faults: TripwireFault[] = [];
    const sinks: Array<NonNullable<ReturnType<typeof createSink>>> = [];
    for (let round = 0; round < ROUNDS; round++) {
      const root = '/srv/app';
      const dirs = Array.from({ length: r.int(0, 40) }, () => r.text(1, 80)).join('/');
      const file = `${r.text(1, 40)}.mjs`;
      const line = r.int(1, 99_999);
      const rel = dirs ? `${dirs}/${file}` : file;
      const small = r.next() < 0.4; // a short trace and few tags, or a long one and many
      const tags = Array.from({ length: small ? r.int(0, 10) : r.int(0, 90) }, (_, i) => `t${i}:${r.text(1, 400)}`);
      const options = resolveOptions({
        approved: ['auth/**'],
        root,
        statsd: { host: '127.0.0.1', port: receiver.port, maxBufferSize: r.next() < 0.5 ? 0 : 8192 },
        tags,
        rateLimit: false,
      });
      const sink = createSink(
        options,
        createFaultReporter((error) => void faults.push(error as TripwireFault)),
        () => ['Token'],
      )!;
      const frames = Array.from({ length: small ? r.int(1, 6) : r.int(1, 120) }, (_, i) => ({
        file: `${root}/${i === 0 ? rel : `${r.text(1, small ? 30 : 300)}/${r.text(1, 20)}.mjs`}`,
        line: line + i,
        column: 7,
        function: r.text(0, 60),
      }));
      const location = `${rel}:${line}:7`;
      const report: BypassReport = {
        model: 'Token',
        operation: 'updateMany',
        kind: 'update',
        callSite: frames[0]!,
        stack: frames,
        framesOmitted: r.int(0, 3),
        fingerprint: '0123456789abcdef',
        documentIds: Array.from({ length: r.int(0, 20) }, () => r.text(1, 24)),
        documentIdsOmitted: 0,
        outcome: { matched: 1, modified: 1 },
        at: new Date(),
        suppressed: 0,
        blocked: false,
        location,
        bypassedMiddleware: false,
        baselined: false,
      };
      sink.write('Token', 'updateMany', 'update', false);
      sink.bypass({ model: 'Token', operation: 'updateMany', kind: 'update', location, fingerprint: report.fingerprint }, report);
      // As sent: '|', ',', '#' (ours) and '@' (hot-shots) become '_' in tags.
      expectedSites.push(`${file}:${line}`.replace(/[|,#@]/g, '_'));
      expectedTagCounts.push(5 + tags.length);
      expectedTags.push(tags);
      await sink.flush();
      sinks.push(sink);
    }
    await Promise.all(sinks.map((sink) => sink.close()));
    const events = () => receiver.datagrams.filter((d) => d.type === 'event');
    const bypasses = () => receiver.datagrams.filter((d) => d.type === 'metric' && d.name === 'tripwire.bypasses');
    await waitFor(() => events().length === ROUNDS && bypasses().length === ROUNDS, `${ROUNDS} events and bypass counters`);
    checkPackets('sink property');
    expect(faults.filter((f) => f.reason !== 'tags_dropped' && f.reason !== 'approved_matches_nothing').map((f) => f.message)).toEqual([]);
    let dropped = 0;
    let whole = 0;
    for (const [i, event] of events().entries()) {
      if (event.type !== 'event') continue;
      const site = expectedSites[i]!;
      // The plugin's own tags come first and are kept; the call site keeps its file name and line.
      expect(event.tags.slice(0, 3)).toEqual(['model:Token', 'operation:updateMany', 'kind:update']);
      expect(event.tags.find((t) => t.startsWith('callsite:'))?.endsWith(site), `${event.tags[3]} vs ${site}`).toBe(true);
      expect(event.text).toContain('**Rogue write**');
      expect(event.text.endsWith('```\n%%%')).toBe(true);
      // A tag is left off only when it would not fit even with the trace cut to its marker: the
      // frames still shown take less room than the first tag left off.
      if (event.tags.length < expectedTagCounts[i]!) {
        dropped += 1;
        expect(event.text).toMatch(/\n… \d+ more frames\n```\n%%%$/);
        const trace = event.text
          .slice(event.text.indexOf('Caller trace (innermost first):\n```\n') + 36)
          .split('\n')
          .slice(0, -3);
        const traceBytes = trace.reduce((sum, line) => sum + Buffer.byteLength(line) + 2, 0);
        const firstLeftOff = fitTag(sanitizeTag(expectedTags[i]![event.tags.length - 5]!));
        expect(traceBytes, `${trace.length} frames kept instead of ${firstLeftOff}`).toBeLessThan(Buffer.byteLength(firstLeftOff) + 1 + 4);
      } else if (!/… \d+ more frames/.test(event.text)) whole += 1;
    }
    // The generated cases cover both ends: events sent whole, and events whose tags had to be cut.
    expect(dropped).toBeGreaterThan(5);
    expect(whole).toBeGreaterThan(5);
    const counted = bypasses().map((d) => (d.type === 'metric' ? d.tags.find((t) => t.startsWith('callsite:')) : undefined));
    expect(counted.every((tag, i) => tag?.endsWith(expectedSites[i]!))).toBe(true);
    expect(bypasses().reduce((sum, d) => sum + (d.type === 'metric' ? d.value : 0), 0)).toBe(ROUNDS);
  }, 60_000);
});

describe('a rogue write from a 3 KB non-ASCII path, as a plain node process', () => {
  let base: string;
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'tripwire-long-'));
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  it(
    'arrives whole: a callsite tag of at most 200 characters ending in the file name and line, every packet within 8192 ' + 'bytes',
    async () => {
      reset();
      const r = random(42);
      const dirs = Array.from({ length: 50 }, () => r.text(30, 45, [...'abcdefé漢字令牌🔑_-'])).join('/');
      const dir = join(base, dirs);
      mkdirSync(dir, { recursive: true });
      const moduleFile = join(dir, 'jetons-été.mjs');
      writeFileSync(
        moduleFile,
        `const deeper = (T, n) => (n === 0 ? T.updateMany({ user: 'nobody' }, { $set: { scopes: ['x'] } }) : deeper(T, n - 1));\nexport ` +
          `const write = (T) => deeper(T, 60);\n`,
      );
      const tagsFile = join(base, 'tags.json');
      writeFileSync(tagsFile, JSON.stringify(Array.from({ length: 60 }, (_, i) => `team${i}:${r.text(150, 300)}`)));
      expect(Buffer.byteLength(moduleFile)).toBeGreaterThan(2_500);
      const stdout = await new Promise<string>((resolve, reject) => {
        execFile(
          process.execPath,
          [join(fixtureDir as string, 'scripts', 'long-path.mjs'), join(process.cwd(), 'dist', 'index.js'), base, moduleFile, tagsFile],
          { env: { ...process.env, TRIPWIRE_PORT: String(receiver.port) }, timeout: 45_000 },
          (error, out, err) => (error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out)),
        );
      });
      const events = () => receiver.datagrams.filter((d) => d.type === 'event');
      const bypass = () => receiver.datagrams.find((d) => d.type === 'metric' && d.name === 'tripwire.bypasses');
      await waitFor(() => events().length === 1 && bypass() !== undefined, 'the event and the bypass counter');
      checkPackets('long path');
      const callsite = (d: ParsedDatagram | undefined) =>
        d && d.type !== 'service_check' ? d.tags.find((t) => t.startsWith('callsite:')) : undefined;
      expect(callsite(bypass())).toMatch(/^callsite:\.\.\..*\/jetons-été\.mjs:1$/);
      expect(callsite(events()[0])).toBe(callsite(bypass()));
      expect(stdout).toContain('tags_dropped'); // 60 tags of ~200 characters cannot all fit: some were left off, visibly
    },
  );
});

describe('bounded callsite series', () => {
  it('at most maxCallSiteTags distinct callsite values, then callsite:other with one warning; totals stay exact', async () => {
    reset();
    const faults: TripwireFault[] = [];
    const options = resolveOptions({
      approved: ['auth/**'],
      root: '/srv/app',
      statsd: { host: '127.0.0.1', port: receiver.port },
      maxCallSiteTags: 5,
    });
    const sink = createSink(
      options,
      createFaultReporter((error) => void faults.push(error as TripwireFault)),
      () => [],
    )!;
    for (let site = 0; site < 12; site++) {
      for (let n = 0; n < 3; n++)
        sink.bypass(
          { model: 'Token', operation: 'deleteMany', kind: 'delete', location: `jobs/cleanup.mjs:${site + 1}:5`, fingerprint: `f${site}` },
          undefined,
        );
    }
    await sink.close();
    const series = () => receiver.datagrams.filter((d) => d.type === 'metric' && d.name === 'tripwire.bypasses');
    const total = () => series().reduce((sum, d) => sum + (d.type === 'metric' ? d.value : 0), 0);
    await waitFor(() => total() === 36, '36 bypasses');
    const bySite = new Map(
      series().map((d) => [d.type === 'metric' ? d.tags.find((t) => t.startsWith('callsite:')) : '', d.type === 'metric' ? d.value : 0]),
    );
    expect([...bySite.keys()]).toEqual([1, 2, 3, 4, 5].map((line) => `callsite:jobs/cleanup.mjs:${line}`).concat('callsite:other'));
    expect(bySite.get('callsite:other')).toBe(21);
    expect(faults.filter((f) => f.reason === 'callsite_tags_capped')).toHaveLength(1);
    expect(faults.find((f) => f.reason === 'callsite_tags_capped')!.message).toMatch(
      /more than 5 call sites.*maxCallSiteTags.*callsite:other/,
    );
  });

  it('keeps each series across flushes: counts after a flush go to the same series, a capped call site stays callsite:other', async () => {
    reset();
    const options = resolveOptions({
      approved: ['auth/**'],
      root: '/srv/app',
      statsd: { host: '127.0.0.1', port: receiver.port },
      maxCallSiteTags: 1,
      onError: () => {},
    });
    const sink = createSink(
      options,
      createFaultReporter(() => undefined),
      () => [],
    )!;
    const bypass = (line: number, baselined: boolean) =>
      sink.bypass(
        {
          model: 'Token',
          operation: 'deleteMany',
          kind: 'delete',
          location: `jobs/cleanup.mjs:${line}:5`,
          fingerprint: `f${line}`,
          baselined,
        },
        undefined,
      );
    for (let round = 0; round < 3; round++) {
      bypass(1, false);
      bypass(2, false);
      bypass(1, true);
      sink.write('Token', 'deleteMany', 'delete', round === 1);
      sink.flushCounters();
    }
    await sink.close();
    const metrics = () => receiver.datagrams.filter((d): d is Extract<ParsedDatagram, { type: 'metric' }> => d.type === 'metric');
    await waitFor(
      () =>
        metrics()
          .filter((d) => d.name === 'tripwire.bypasses')
          .reduce((n, d) => n + d.value, 0) === 9,
      '9 bypasses',
    );
    const sum = (name: string, ...tags: string[]) =>
      metrics()
        .filter((d) => d.name === name && tags.every((t) => d.tags.includes(t)))
        .reduce((n, d) => n + d.value, 0);
    expect(sum('tripwire.bypasses', 'callsite:jobs/cleanup.mjs:1', 'baselined:false')).toBe(3);
    expect(sum('tripwire.bypasses', 'callsite:jobs/cleanup.mjs:1', 'baselined:true')).toBe(3);
    expect(sum('tripwire.bypasses', 'callsite:other', 'baselined:false')).toBe(3);
    expect(sum('tripwire.events_suppressed', 'model:Token', 'operation:deleteMany', 'kind:delete')).toBe(9);
    expect(sum('tripwire.writes', 'approved:true')).toBe(1);
    expect(sum('tripwire.writes', 'approved:false')).toBe(2);
    expect(metrics().filter((d) => d.name === 'tripwire.bypasses')).toHaveLength(9); // three series, each flushed three times
  });

  it('defaults to 1 000: 5 000 call sites make 1 001 series per flush, and the exact total', async () => {
    reset();
    const options = resolveOptions({
      approved: ['auth/**'],
      root: '/srv/app',
      statsd: { host: '127.0.0.1', port: receiver.port },
      onError: () => {},
    });
    expect(options.maxCallSiteTags).toBe(1_000);
    const sink = createSink(
      options,
      createFaultReporter(() => {}),
      () => [],
    )!;
    for (let site = 0; site < 5_000; site++)
      sink.bypass(
        { model: 'Token', operation: 'updateOne', kind: 'update', location: `scripts/s${site}.mjs:1:1`, fingerprint: `f${site}` },
        undefined,
      );
    await sink.close();
    const series = () => receiver.datagrams.filter((d) => d.type === 'metric' && d.name === 'tripwire.bypasses');
    await waitFor(() => series().reduce((sum, d) => sum + (d.type === 'metric' ? d.value : 0), 0) === 5_000, '5 000 bypasses');
    expect(series()).toHaveLength(1_001);
    checkPackets('default bound');
  });

  it('validates the option at registration', async () => {
    for (const bad of [0, -1, 1.5, '10', null, Number.NaN]) {
      const register = () =>
        new mongoose.Schema({ token: String }).plugin(tripwire, { approved: ['auth/**'], statsd: false, maxCallSiteTags: bad as number });
      expect(register, String(bad)).toThrow(TripwireConfigError);
      expect(register, String(bad)).toThrow(/option "maxCallSiteTags" must be a positive integer/);
    }
    // Registered under the project's root, where auth/** matches nothing: that boot notice is expected here.
    const warnings = await captureWarnings(() => {
      expect(() =>
        new mongoose.Schema({ token: String }).plugin(tripwire, { approved: ['auth/**'], statsd: false, maxCallSiteTags: 50 }),
      ).not.toThrow();
    });
    expect(warnings.map((w) => (w as { code?: string }).code)).toEqual(['TRIPWIRE_APPROVED_MATCHES_NOTHING']);
  });
});
