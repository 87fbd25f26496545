/** Every datagram format we emit round-trips through the strict parser, at every size. */
import { describe, expect, it } from 'vitest';
import { DatagramError } from '../src/errors.js';
import { formatCount, formatEvent, formatGauge, parseDatagram, parsePacket, sanitizeTag, utf8Bytes } from '../src/report/dogstatsd.js';

const event = (datagram: string) => {
  const parsed = parseDatagram(datagram);
  if (parsed.type !== 'event') throw new Error('not an event');
  return parsed;
};

describe('events', () => {
  it('write UTF-8 byte lengths into the header, and round-trip non-ASCII titles and text', () => {
    const title = 'Rogue write: AccessToken.save from src/légacy/jetons-été.ts:3';
    const text = 'in 发放令牌 🔑\nsecond line';
    const datagram = formatEvent({ title, text, aggregationKey: 'abc', alertType: 'warning', dateHappened: new Date(1_700_000_000_500) });
    expect(datagram.startsWith(`_e{${utf8Bytes(title)},${utf8Bytes('in 发放令牌 🔑\\nsecond line')}}:`)).toBe(true);
    expect(event(datagram)).toMatchObject({ title, text, aggregationKey: 'abc', alertType: 'warning', dateHappened: 1_700_000_000 });
  });

  it('refuse what hot-shots 17 sends for the same event: UTF-16 lengths in the header', () => {
    const title = 'Rogue write from légacy/jetons-été.mjs';
    const text = 'in 发放令牌';
    const hotShots = `_e{${title.length},${text.length}}:${title}|${text}`;
    expect(() => parseDatagram(hotShots)).toThrow(DatagramError);
  });

  it('keep titles on one line and pipes out of every field', () => {
    const parsed = event(formatEvent({ title: 'a|b\nc\r\nd', text: 'x|y\r\nz\rw', aggregationKey: 'k|1\n' }));
    expect(parsed.title).toBe('a¦b c d');
    expect(parsed.text).toBe('x¦y\nz\nw');
    expect(parsed.aggregationKey).toBe('k_1_');
  });

  it('cut a long trace from its far end, keeping head and tail, within the byte limit', () => {
    const trace = Array.from({ length: 500 }, (_, i) => `src/deep/module-${i}.ts:${i}:7 handler${i}`);
    const datagram = formatEvent(
      { title: 't', text: { head: '%%%\n@slack-x\nsummary', trace, tail: '```\n%%%' } },
      { maxDatagramBytes: 8192 },
    );
    expect(utf8Bytes(datagram)).toBeLessThanOrEqual(8192);
    const text = event(datagram).text;
    const lines = text.split('\n');
    const dropped = Number(/… (\d+) more frames/.exec(text)?.[1]);
    expect(lines.slice(0, 3)).toEqual(['%%%', '@slack-x', 'summary']);
    expect(text.endsWith('```\n%%%')).toBe(true);
    expect(lines.length - 3 - 2 - 1 + dropped).toBe(500);
    expect(lines[3]).toBe(trace[0]);
    expect(text.length).toBeLessThanOrEqual(4000);
  });

  it('never split a multi-byte character, at any limit', () => {
    const trace = Array.from({ length: 80 }, (_, i) => `légacy/jetons-été-${i}.mjs:1:1 发放令牌🔑${'é'.repeat(i % 7)}`);
    for (let limit = 200; limit <= 1400; limit += 7) {
      const datagram = formatEvent(
        { title: 'Rogue write 🔑 été', text: { head: '%%%\nhead 令牌', trace, tail: '%%%' }, aggregationKey: 'k' },
        { maxDatagramBytes: limit },
      );
      expect(utf8Bytes(datagram), `limit ${limit}`).toBeLessThanOrEqual(limit);
      const parsed = event(datagram);
      expect(parsed.text.endsWith('%%%'), `limit ${limit}`).toBe(true);
      expect(parsed.text).not.toContain('\uFFFD');
    }
  });

  it('cut a 300-character title to 100 code points, and plain text to 4000 characters', () => {
    const parsed = event(formatEvent({ title: '🔑'.repeat(300), text: 'é'.repeat(5000) }, { maxDatagramBytes: 65_000 }));
    expect([...parsed.title]).toHaveLength(100);
    expect(parsed.title.endsWith('…')).toBe(true);
    expect([...parsed.text]).toHaveLength(4000);
  });

  it('throw when not even the title fits', () => {
    expect(() => formatEvent({ title: 'x'.repeat(100), text: 'y' }, { maxDatagramBytes: 50 })).toThrow(DatagramError);
  });

  it('round-trip 2 000 random titles and texts', () => {
    const alphabet = ['a', 'Z', '9', ' ', '|', '\n', '\r', '\\', 'é', '漢', '🔑', '@', '#', ',', ':'];
    const random = (n: number) => Array.from({ length: n }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join('');
    for (let i = 0; i < 2000; i++) {
      const title = random(1 + (i % 60));
      const text = random(i % 200);
      const parsed = event(formatEvent({ title, text }));
      const expectedText = text.replace(/\r\n?/g, '\n').replaceAll('|', '¦');
      expect(parsed.title).toBe(title.replace(/\r\n?/g, '\n').replaceAll('\n', ' ').replaceAll('|', '¦'));
      // A literal backslash-n in the input reads back as a line break: DogStatsD has no escape for it.
      expect(parsed.text).toBe(expectedText.replaceAll('\\n', '\n'));
    }
  });
});

describe('metrics and the parser', () => {
  it('round-trips counters and gauges with tags', () => {
    expect(parseDatagram(`${formatCount('tripwire.writes', 3)}|#model:A,approved:true`)).toEqual({
      type: 'metric',
      name: 'tripwire.writes',
      value: 3,
      metricType: 'c',
      tags: ['model:A', 'approved:true'],
    });
    expect(parseDatagram(formatCount('x', 1, 0.5))).toMatchObject({ sampleRate: 0.5 });
    expect(parseDatagram(formatGauge('tripwire.watching', 1))).toMatchObject({ metricType: 'g', value: 1 });
    expect(formatCount('bad name:|x', 1)).toBe('bad_name__x:1|c');
  });

  it('sanitises tags for the format', () => {
    expect(sanitizeTag(' callsite:src/a|b,c#d\ne:1 ')).toBe('callsite:src/a_b_c_d_e:1');
  });

  it.each([
    ['_e{3,1}:ab|c', /cuts|past|"\|"/],
    ['_e{1,1}:a|b|x:1', /unknown event field/],
    ['_e{1,1}:a|bjunk', /followed by/],
    ['_e{1,1}:a|b|t:fatal', /alert type/],
    ['metric:1', /unknown type/],
    ['metric:NaN|c', /non-numeric/],
    ['metric:1|c|#', /empty tag/],
  ])('rejects %s', (datagram, message) => {
    expect(() => parseDatagram(datagram)).toThrow(message);
  });

  it('splits a buffered packet into its datagrams', () => {
    const packet = `a:1|c\n${formatEvent({ title: 't', text: 'x\ny' })}|#k:v\nb:2|g\n`;
    expect(parsePacket(packet).map((d) => d.type)).toEqual(['metric', 'event', 'metric']);
  });
});
