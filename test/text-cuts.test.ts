/**
 * Every cut of text keeps whole characters: at every cut position, with surrogate pairs, combining
 * marks (é as e + U+0301) and ZWJ sequences, no piece ends or starts inside a character (no lone
 * surrogate, shown as U+FFFD; no combining mark or ZWJ cut off from its character). And the issue's
 * row: a rogue file under 12 folders named with emoji gets an event title of whole characters.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import mongoose from 'mongoose';
import { afterAll, describe, expect, it } from 'vitest';
import { tripwire } from '../src/plugin.js';
import { alertTitle, inert } from '../src/report/alert.js';
import { fitTag, formatEvent, type ParsedDatagram, parseDatagram } from '../src/report/dogstatsd.js';
import type { BypassReport } from '../src/types.js';
import { firstLines, firstOf } from '../src/util/list.js';
import { clip, cutEnd, cutStart } from '../src/util/text.js';
import { connect } from './support/connect.js';
import { listenerSuite } from './support/listener-suite.js';

const E_ACUTE = 'e\u0301'; // e + combining acute accent
const ZWJ_EMOJI = '\u{1F469}\u200D\u{1F4BB}'; // woman technologist: two pairs joined by a ZWJ
const SAMPLES = [
  `a${E_ACUTE}\u{1F600}b${ZWJ_EMOJI}c\u{1F1EB}\u{1F1F7}x\u0327\u0308${E_ACUTE}${E_ACUTE}\u{1F600}\u{1F600}z`,
  `${ZWJ_EMOJI}${E_ACUTE}`.repeat(6),
  `\u{1F4C1}/`.repeat(12),
];

const segmenter = new Intl.Segmenter(undefined, { granularity: 'grapheme' });
/** Where characters begin and end in `text`. */
function boundaries(text: string): Set<number> {
  const at = new Set([text.length]);
  for (const { index } of segmenter.segment(text)) at.add(index);
  return at;
}
const LONE_MARK_AT_START = /^(?:\p{M}|\u200D|[\uDC00-\uDFFF])/u;
const CUT_AT_END = /[\u200D\uD800-\uDBFF]$/;

/** `piece` is whole characters of `text`: a prefix or a suffix cut at a boundary, and well-formed. */
function expectWhole(piece: string, text: string, side: 'start' | 'end', context: string): void {
  expect(piece.isWellFormed(), `${context}: lone surrogate in ${JSON.stringify(piece)}`).toBe(true);
  expect(piece.includes('\uFFFD'), context).toBe(false);
  const cutAt = side === 'start' ? piece.length : text.length - piece.length;
  expect(side === 'start' ? text.startsWith(piece) : text.endsWith(piece), context).toBe(true);
  expect(boundaries(text).has(cutAt), `${context}: cut at ${cutAt} is inside a character`).toBe(true);
  if (side === 'end') expect(LONE_MARK_AT_START.test(piece), `${context}: starts with an orphan mark`).toBe(false);
  else expect(CUT_AT_END.test(piece) || LONE_MARK_AT_START.test(text.slice(piece.length)), `${context}: cut before a mark`).toBe(false);
}

describe('util/text.ts: cuts from the left and from the right', () => {
  it('cutStart and cutEnd keep whole characters at every cut position, and take as many as fit', () => {
    for (const text of SAMPLES) {
      const at = boundaries(text);
      for (let max = 0; max <= text.length + 1; max++) {
        const start = cutStart(text, max);
        const end = cutEnd(text, max);
        expectWhole(start, text, 'start', `cutStart(${max})`);
        expectWhole(end, text, 'end', `cutEnd(${max})`);
        expect(start.length).toBeLessThanOrEqual(max);
        expect(end.length).toBeLessThanOrEqual(max);
        // The longest: the next boundary would not fit.
        const longestStart = Math.max(...[...at].filter((b) => b <= max));
        expect(start.length, `cutStart(${max})`).toBe(longestStart);
        const longestEnd = Math.max(...[...at].map((b) => text.length - b).filter((n) => n <= max));
        expect(end.length, `cutEnd(${max})`).toBe(longestEnd);
      }
    }
  });

  it('clip adds … where it cut, and keeps whole characters', () => {
    for (const text of SAMPLES) {
      for (let max = 1; max <= text.length; max++) {
        const clipped = clip(text, max);
        expect(clipped.length).toBeLessThanOrEqual(max);
        if (clipped !== text) expectWhole(clipped.slice(0, -1), text, 'start', `clip(${max})`);
      }
    }
  });
});

describe('util/list.ts: first N, and K more', () => {
  it('lists the first items, then how many more', () => {
    const items = Array.from({ length: 25 }, (_, i) => `f${i}`);
    expect(firstOf(items.slice(0, 3))).toBe('f0, f1, f2');
    expect(firstOf(items)).toBe('f0, f1, f2, f3, f4, f5, f6, f7, f8, f9 and 15 more');
    expect(firstOf(items, 2, '; ')).toBe('f0; f1 and 23 more');
    expect(firstLines(items, 3)).toEqual(['f0', 'f1', 'f2', '… and 22 more']);
    expect(firstLines(items.slice(0, 3), 3)).toEqual(['f0', 'f1', 'f2']);
  });
});

describe('every cut in an event keeps whole characters', () => {
  it('fitTag, keeping the start or the end, at every length', () => {
    for (const text of SAMPLES) {
      const tag = `callsite:${text}`;
      for (let max = 4; max < tag.length; max++) {
        const start = fitTag(tag, max, 'start');
        expect(start.length, `start ${max}`).toBeLessThanOrEqual(max);
        expect(start.endsWith('...')).toBe(true);
        expectWhole(start.slice(0, -3), tag, 'start', `fitTag start ${max}`);
        const end = fitTag(tag, max, 'end');
        expect(end.length, `end ${max}`).toBeLessThanOrEqual(max);
        if (end.startsWith('callsite:...')) expectWhole(end.slice('callsite:...'.length), tag, 'end', `fitTag end ${max}`);
      }
    }
  });

  it('the alert title, shortened from the left, at every width', () => {
    for (const text of SAMPLES) {
      const location = `${text}/login.mjs:12:3`;
      const where = inert(`${text}/login.mjs:12`);
      for (let maxChars = 50; maxChars <= 120; maxChars++) {
        const title = alertTitle({ model: 'AccessToken', operation: 'create', location } as BypassReport, maxChars);
        expect(title.length, `${maxChars}`).toBeLessThanOrEqual(maxChars);
        const shown = title.slice('Rogue write: AccessToken.create from '.length);
        if (shown.startsWith('…')) expectWhole(shown.slice(1), where, 'end', `alertTitle(${maxChars})`);
        else expect(shown).toBe(where);
      }
    }
  });

  it('the alert title, cut from the right when the model name is long', () => {
    for (const text of SAMPLES) {
      for (let maxChars = 20; maxChars <= 60; maxChars++) {
        const title = alertTitle({ model: text.repeat(4), operation: 'create', location: 'a.mjs:1:1' } as BypassReport, maxChars);
        expectWhole(title, `Rogue write: ${inert(text.repeat(4))}.create`, 'start', `alertTitle(${maxChars})`);
      }
    }
  });

  it('the DogStatsD title and text, cut to their limits at every length', () => {
    for (const text of SAMPLES) {
      for (let max = 2; max <= [...text].length; max++) {
        const titled = parseDatagram(formatEvent({ title: text, text: 'x' }, { maxTitleChars: max })) as Extract<
          ParsedDatagram,
          { type: 'event' }
        >;
        if (titled.title !== text) expectWhole(titled.title.slice(0, -1), text, 'start', `title ${max}`);
        const texted = parseDatagram(formatEvent({ title: 't', text }, { maxTextChars: max })) as Extract<
          ParsedDatagram,
          { type: 'event' }
        >;
        if (texted.text !== text) expectWhole(texted.text.slice(0, -1), text, 'start', `text ${max}`);
      }
    }
  });
});

describe('a rogue file under 12 folders named with emoji', () => {
  const suite = listenerSuite(() => connect('text_cuts'));
  const work = mkdtempSync(join(tmpdir(), 'tripwire-emoji-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('gets an event title of whole characters (one carried U+FFFD: shortenPath cut inside a surrogate pair)', async () => {
    const titles: string[] = [];
    // The cut at every offset inside a folder name (8 UTF-16 units at most): file names 0 to 7 units longer.
    for (const [index, name] of Array.from({ length: 8 }, (_, k) => `rogue${'_'.repeat(k)}`).entries()) {
      const root = join(work, `app${index}`);
      mkdirSync(join(root, 'auth'), { recursive: true });
      writeFileSync(join(root, 'auth', 'tokens.mjs'), '');
      const folders = Array.from({ length: 12 }, (_, i) => `${['\u{1F4C1}', ZWJ_EMOJI, `caf${E_ACUTE}`][i % 3]}\u{1F600}`);
      const dir = join(root, ...folders);
      mkdirSync(dir, { recursive: true });
      const file = join(dir, `${name}.mjs`);
      writeFileSync(file, 'export function rogue(T, token) {\n  return T.create({ token });\n}\n');
      const schema = new mongoose.Schema({ token: String });
      schema.plugin(tripwire, { approved: ['auth/**'], root, statsd: { host: '127.0.0.1', port: suite.listener.port }, rateLimit: false });
      const T = suite.connection.model(`EmojiToken${index}`, schema);
      const { rogue } = (await import(pathToFileURL(file).href)) as { rogue: (model: unknown, token: string) => Promise<unknown> };
      await rogue(T, `tok_emoji_${process.pid}_${index}`);
      await suite.listener.waitFor((all) => all.filter((d) => d.type === 'event').length > index, 10_000);
      const events = suite.listener.datagrams.filter((d): d is Extract<ParsedDatagram, { type: 'event' }> => d.type === 'event');
      const title = events[index]!.title;
      titles.push(title);
      expect(title.startsWith(`Rogue write: EmojiToken${index}.create from …`), title).toBe(true);
      expect(title.length).toBeLessThanOrEqual(100);
      const shown = title.slice(title.indexOf('…') + 1);
      const where = `${folders.join('/')}/${name}.mjs:2`;
      expectWhole(shown, where, 'end', title);
    }
    expect(titles).toHaveLength(8);
  });
});
