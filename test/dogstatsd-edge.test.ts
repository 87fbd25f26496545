/** Edge cases of the DogStatsD format: surrogate pairs, lone surrogates, random byte limits, parser refusals. */
import { describe, expect, it } from 'vitest';
import { DatagramError } from '../src/errors.js';
import {
  formatCount,
  formatEvent,
  formatGauge,
  parseDatagram,
  parsePacket,
  sanitizeMetricName,
  sanitizeTag,
  utf8Bytes,
} from '../src/report/dogstatsd.js';

const event = (datagram: string) => {
  const parsed = parseDatagram(datagram);
  if (parsed.type !== 'event') throw new Error('not an event');
  return parsed;
};

describe('events (extra)', () => {
  it('round-trips every field of an ASCII event', () => {
    const d = formatEvent({
      title: 'Rogue write',
      text: 'body',
      dateHappened: new Date(1_700_000_000_999),
      hostname: 'h|1',
      aggregationKey: 'k',
      priority: 'low',
      sourceTypeName: 'mongoose-tripwire',
      alertType: 'warning',
    });
    expect(d).toBe('_e{11,4}:Rogue write|body|d:1700000000|h:h_1|k:k|p:low|s:mongoose-tripwire|t:warning');
    expect(parseDatagram(`${d}|#a:b,c`)).toEqual({
      type: 'event',
      title: 'Rogue write',
      text: 'body',
      dateHappened: 1_700_000_000,
      hostname: 'h_1',
      aggregationKey: 'k',
      priority: 'low',
      sourceTypeName: 'mongoose-tripwire',
      alertType: 'warning',
      tags: ['a:b', 'c'],
    });
  });

  it('rejects the hot-shots (UTF-16) header for src/legacy/jetons-été.ts / 发放令牌 / 🔑', () => {
    const title = 'Rogue write in src/legacy/jetons-été.ts';
    const escapedText = 'at 发放令牌 🔑\\nnext';
    const hotShots = `_e{${title.length},${escapedText.length}}:${title}|${escapedText}`;
    expect(() => parseDatagram(hotShots)).toThrow(DatagramError);
    const ours = formatEvent({ title, text: 'at 发放令牌 🔑\nnext' });
    expect(ours.startsWith(`_e{${utf8Bytes(title)},${utf8Bytes(escapedText)}}:`)).toBe(true);
    expect(event(ours)).toMatchObject({ title, text: 'at 发放令牌 🔑\nnext' });
  });

  it('refuses a slice that ends inside a multi-byte character, and a raw newline', () => {
    expect(() => parseDatagram('_e{1,1}:a|é')).toThrow(/multi-byte/); // 'é' is 2 bytes: a 1-byte text slice ends inside it
    expect(() => parseDatagram(Buffer.from('_e{3,1}:a\nb|c'))).toThrow(DatagramError);
  });

  it('keeps structured text within maxTextChars and 500 frames within 8192 bytes', () => {
    const trace = Array.from({ length: 500 }, (_, i) => `    at handler${i} (src/x/été-${i}.ts:${i}:1)`);
    const text = { head: '%%%\nsummary', trace, tail: '```\n%%%' };
    const big = event(formatEvent({ title: 't', text }, { maxDatagramBytes: 1_000_000 }));
    expect([...big.text].length).toBeLessThanOrEqual(4000);
    const d = formatEvent({ title: 't', text });
    expect(utf8Bytes(d)).toBeLessThanOrEqual(8192);
    const lines = event(d).text.split('\n');
    const n = Number(/^… (\d+) more frames$/.exec(lines.at(-3) ?? '')?.[1]);
    expect(lines.slice(2, -3)).toEqual(trace.slice(0, 500 - n));
    expect(lines.length - 5 + n).toBe(500);
  });

  it('cuts the head, keeping the tail, when no frame fits', () => {
    const parsed = event(
      formatEvent({ title: 't', text: { head: 'é'.repeat(500), trace: ['a', 'b'], tail: 'END' } }, { maxDatagramBytes: 200 }),
    );
    expect(parsed.text).toMatch(/^é+…\n… 2 more frames\nEND$/);
  });

  it('throws for an impossible limit, naming it', () => {
    expect(() =>
      formatEvent({ title: 'title', text: { head: 'h', trace: [], tail: 'a long closing tail' } }, { maxDatagramBytes: 30 }),
    ).toThrow(/30 bytes/);
  });

  it('round-trips random unicode (surrogate pairs, lone surrogates, | \\n \\r) within the byte bound', () => {
    const pieces = ['a', ' ', '|', '\n', '\r', '\r\n', 'é', '令', '🔑', '𝄞', '\uD800', '\uDC00', '\\', '%'];
    let seed = 42;
    const rand = (n: number) => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
    const random = (n: number) => Array.from({ length: n }, () => pieces[rand(pieces.length)]).join('');
    const fix = (s: string) =>
      s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD').replaceAll('|', '¦');
    for (let i = 0; i < 2000; i++) {
      const title = random(rand(90));
      const text = random(rand(300));
      const limit = 400 + rand(2000);
      const d = formatEvent({ title, text, aggregationKey: random(5) }, { maxDatagramBytes: limit });
      expect(utf8Bytes(d)).toBeLessThanOrEqual(limit);
      const parsed = event(d);
      expect(parsed.title).toBe(fix(title).replace(/\r\n|\n|\r/g, ' '));
      const expected = fix(text).replace(/\r\n?/g, '\n');
      if (parsed.text.endsWith('…') && parsed.text !== expected.replaceAll('\\n', '\n')) {
        expect(expected.startsWith(parsed.text.slice(0, -1))).toBe(true); // cut, so a prefix (no literal \n sequences: no 'n' piece)
      } else expect(parsed.text).toBe(expected);
    }
  });
});

describe('metrics and parser (extra)', () => {
  it('formats and parses counters and gauges', () => {
    expect(formatCount('a.b', 2, 0.25)).toBe('a.b:2|c|@0.25');
    expect(parseDatagram('a.b:2|c|@0.25|#x:y|c:ci-123')).toEqual({
      type: 'metric',
      name: 'a.b',
      value: 2,
      metricType: 'c',
      sampleRate: 0.25,
      tags: ['x:y'],
    });
    expect(parseDatagram(formatGauge('g', -1.5))).toEqual({ type: 'metric', name: 'g', value: -1.5, metricType: 'g', tags: [] });
    expect(() => formatGauge('g', Number.NaN)).toThrow(DatagramError);
    expect(sanitizeMetricName('tripwire.écrit-s')).toBe('tripwire.__crit_s'.replace('__', '_'));
  });

  it('sanitizes tags', () => {
    expect(sanitizeTag('  model:A  ')).toBe('model:A');
    expect(sanitizeTag('url:http://x:1/#a')).toBe('url:http://x:1/_a');
    expect(sanitizeTag('a\r\nb')).toBe('a__b');
  });

  it.each([
    '',
    'x:1|zz',
    'x:Infinity|c',
    ':1|c',
    'x:1|c|@2',
    'x:1|c|#a|@0.5',
    '_e{1,1}:a|b|#t|h:x',
    '_e{1,1}:a|b|d:1.5',
    '_e{1,1}:a|b|p:high',
    '_e{1,1}:a|b|k:1|k:2',
  ])('rejects %j', (d) => {
    expect(() => parseDatagram(d)).toThrow(DatagramError);
  });

  it('splits packets and reports which datagram is bad', () => {
    expect(parsePacket('_sc|svc|0\na:1|c|#t\n')).toEqual([
      { type: 'service_check', raw: '_sc|svc|0' },
      { type: 'metric', name: 'a', value: 1, metricType: 'c', tags: ['t'] },
    ]);
    expect(() => parsePacket('a:1|c\n\nb:1|c')).toThrow(/datagram 2 of 3/);
  });
});
