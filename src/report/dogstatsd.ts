/**
 * DogStatsD datagrams, formatted and parsed here instead of by hot-shots.
 *
 * Why: hot-shots 17 writes the event header `_e{title.length,text.length}` in UTF-16 code units, but
 * the agent reads those numbers as UTF-8 byte counts, so one accented path, CJK function name or emoji
 * in a call site makes the agent reject or mis-slice the event. The agent also reads into an
 * 8192-byte buffer (`dogstatsd_buffer_size`) and drops a larger datagram whole, and Datadog cuts
 * titles past 100 and text past 4000 characters from the end, which would lose the closing markdown:
 * so we shorten the caller trace ourselves and keep the summary and the tail. Every format has a strict
 * parser (used by the listener and the tests) so a datagram is proven to round-trip byte-exactly
 * rather than merely to look right.
 */
import { DatagramError } from '../errors.js';
import { cutEnd, cutStart, graphemes } from '../util/text.js';

export interface EventText {
  head: string;
  trace: readonly string[];
  tail: string;
}
export interface EventFields {
  title: string;
  text: string | EventText;
  dateHappened?: Date;
  hostname?: string;
  aggregationKey?: string;
  priority?: 'normal' | 'low';
  sourceTypeName?: string;
  alertType?: 'error' | 'warning' | 'info' | 'success';
}
export interface FormatEventOptions {
  maxDatagramBytes?: number;
  maxTitleChars?: number;
  maxTextChars?: number;
}

type EventDatagram = {
  type: 'event';
  title: string;
  text: string;
  dateHappened?: number;
  hostname?: string;
  aggregationKey?: string;
  priority?: string;
  sourceTypeName?: string;
  alertType?: string;
  tags: string[];
};
export type ParsedDatagram =
  | EventDatagram
  | { type: 'metric'; name: string; value: number; metricType: 'c' | 'g' | 'ms' | 'h' | 'd' | 's'; sampleRate?: number; tags: string[] }
  | { type: 'service_check'; raw: string };

export const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

// A lone surrogate has no UTF-8 form (Buffer would send U+FFFD anyway): send U+FFFD on purpose so it is counted.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const wellFormed = (s: string) => s.replace(LONE_SURROGATE, '\uFFFD');
// '|' separates fields: a reader that splits before honouring the lengths would break the event; '¦' reads the same.
const cleanTitle = (s: string) =>
  wellFormed(s)
    .replace(/\r\n|\n|\r/g, ' ')
    .replace(/\|/g, '¦');
const cleanText = (s: string) => wellFormed(s).replace(/\r\n?/g, '\n').replace(/\|/g, '¦');
const cleanField = (s: string) => wellFormed(s).replace(/[|\r\n]/g, '_');

export const sanitizeTag = (tag: string): string => tag.trim().replace(/[|,#\r\n]/g, '_');

/** Datadog keeps a tag to 200 characters. */
export const MAX_TAG_CHARS = 200;
const TAG_CUT = '...'; // Datadog keeps '.' in tags (it would turn '…' into '_')

/**
 * A tag of at most `max` characters (UTF-16 units, so never more code points either), cut between
 * whole characters (grapheme clusters: no lone surrogate, no combining mark or ZWJ sequence cut
 * from its character) with `...` where it was cut. `keep: 'end'` keeps the key and the end of the
 * value (a path's file name and line); otherwise the start is kept, as Datadog itself would.
 */
export function fitTag(tag: string, max = MAX_TAG_CHARS, keep: 'start' | 'end' = 'start'): string {
  if (tag.length <= max) return tag;
  const colon = tag.indexOf(':');
  if (keep === 'end' && colon >= 0 && colon + 1 + TAG_CUT.length < max) {
    const room = max - colon - 1 - TAG_CUT.length;
    return `${tag.slice(0, colon + 1)}${TAG_CUT}${cutEnd(tag.slice(colon + 1), room)}`;
  }
  if (max <= TAG_CUT.length) return TAG_CUT.slice(0, Math.max(0, max));
  return `${cutStart(tag, max - TAG_CUT.length)}${TAG_CUT}`;
}
export const sanitizeMetricName = (name: string): string => name.replace(/[^A-Za-z0-9_.]/g, '_');

interface Cost {
  chars: number;
  bytes: number;
}

/** UTF-16 width and sent UTF-8 bytes of the code point at i; '\n' goes out as the two bytes `\n`. */
function pointAt(s: string, i: number): [units: number, bytes: number] {
  const c = s.charCodeAt(i);
  if (c >= 0xd800 && c < 0xdc00) return [2, 4]; // strings are well-formed by now: a high surrogate starts a pair
  return [1, c === 10 ? 2 : c < 0x80 ? 1 : c < 0x800 ? 2 : 3];
}

function measure(s: string): Cost {
  let chars = 0;
  let bytes = 0;
  for (let i = 0; i < s.length; chars++) {
    const [units, size] = pointAt(s, i);
    i += units;
    bytes += size;
  }
  return { chars, bytes };
}

const within = (cost: Cost, room: Cost) => cost.chars <= room.chars && cost.bytes <= room.bytes;

/** The longest prefix of s, whole characters (grapheme clusters), that still fits with '…' after it; undefined if not even '…' fits. */
function cut(s: string, room: Cost): string | undefined {
  if (!within({ chars: 1, bytes: 3 }, room)) return undefined;
  let chars = 1;
  let bytes = 3;
  let end = 0;
  for (const character of graphemes(s)) {
    const cost = measure(character);
    if (chars + cost.chars > room.chars || bytes + cost.bytes > room.bytes) break;
    chars += cost.chars;
    bytes += cost.bytes;
    end += character.length;
  }
  return `${s.slice(0, end)}…`;
}

/**
 * The text as it fits the room, unescaped. Trace lines go first, from the far (outermost) end, one
 * running total at a time: each dropped line frees at least 2 bytes while the marker grows by at most
 * one digit, so the first fit found from the end is the longest.
 */
function fitText(text: string | EventText, room: Cost): string | undefined {
  if (typeof text === 'string') {
    const clean = cleanText(text);
    return within(measure(clean), room) ? clean : cut(clean, room);
  }
  const head = cleanText(text.head);
  const tail = cleanText(text.tail);
  const trace = text.trace.map(cleanText);
  const costs = trace.map(measure);
  const fixed = [measure(head), measure(tail)];
  // Every '\n' separator is one character, sent as two bytes.
  let chars = 1 + fixed.reduce((sum, cost) => sum + cost.chars, 0);
  let bytes = 2 + fixed.reduce((sum, cost) => sum + cost.bytes, 0);
  for (const cost of costs) {
    chars += cost.chars + 1;
    bytes += cost.bytes + 2;
  }
  if (within({ chars, bytes }, room)) return [head, ...trace, tail].join('\n');
  for (let keep = trace.length - 1; keep >= 0; keep--) {
    const dropped = costs[keep]!;
    chars -= dropped.chars + 1;
    bytes -= dropped.bytes + 2;
    const marker = `… ${trace.length - keep} more frames`;
    const added = measure(marker);
    if (within({ chars: chars + added.chars + 1, bytes: bytes + added.bytes + 2 }, room)) {
      return [head, ...trace.slice(0, keep), marker, tail].join('\n');
    }
  }
  const after = `\n${trace.length > 0 ? `… ${trace.length} more frames\n` : ''}${tail}`;
  const rest = measure(after);
  const shortHead = cut(head, { chars: room.chars - rest.chars, bytes: room.bytes - rest.bytes });
  return shortHead === undefined ? undefined : shortHead + after;
}

/** The most text bytes x with x + digits(x) <= room: the text's byte count is itself in the header. */
function textBytesFor(room: number): number {
  for (let digits = 1; digits <= 16; digits++) {
    if (room - digits >= 0 && String(room - digits).length <= digits) return room - digits;
  }
  return -1;
}

/** An event datagram without tags (hot-shots appends `|#…` and its extension fields). */
export function formatEvent(event: EventFields, options: FormatEventOptions = {}): string {
  const { maxDatagramBytes = 8192, maxTitleChars = 100, maxTextChars = 4000 } = options;
  let title = cleanTitle(event.title);
  if (measure(title).chars > maxTitleChars) title = cut(title, { chars: maxTitleChars, bytes: Infinity }) ?? '';
  const fields: string[] = [];
  const time = event.dateHappened?.getTime();
  // An unparseable `d:` makes the agent drop the whole event; without it, the agent stamps arrival time.
  if (time !== undefined && Number.isFinite(time)) fields.push(`|d:${Math.floor(time / 1000)}`);
  const optional = { h: event.hostname, k: event.aggregationKey, p: event.priority, s: event.sourceTypeName, t: event.alertType };
  for (const [key, value] of Object.entries(optional)) if (value) fields.push(`|${key}:${cleanField(value)}`);
  const suffix = fields.join('');
  const titleBytes = utf8Bytes(title);
  const room = maxDatagramBytes - (`_e{${titleBytes},}:|`.length + titleBytes + utf8Bytes(suffix));
  const text = fitText(event.text, { chars: maxTextChars, bytes: textBytesFor(room) });
  if (text === undefined) {
    throw new DatagramError(`event ${JSON.stringify(title)} cannot fit in ${maxDatagramBytes} bytes even with its text cut`);
  }
  const sent = text.replace(/\n/g, '\\n');
  return `_e{${titleBytes},${utf8Bytes(sent)}}:${title}|${sent}${suffix}`;
}

function formatMetric(name: string, value: number, type: string): string {
  if (!Number.isFinite(value)) throw new DatagramError(`metric ${name}: value ${value} is not a finite number`);
  return `${sanitizeMetricName(name)}:${value}|${type}`;
}
export function formatCount(name: string, value: number, sampleRate?: number): string {
  return formatMetric(name, value, 'c') + (sampleRate !== undefined && sampleRate !== 1 ? `|@${sampleRate}` : '');
}
export const formatGauge = (name: string, value: number): string => formatMetric(name, value, 'g');

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const METRIC_TYPES = ['c', 'g', 'ms', 'h', 'd', 's'] as const;
// Appended by hot-shots (container id, external data, cardinality) after the tags, on any datagram.
const EXTENSION = /^(c|e|card):/;

/**
 * Reads `|field|…|#tags|ext|…` after the fixed part: the caller's fields first, then tags, then
 * extension fields; anything else, or anything out of that order, is refused. Returns the tags.
 */
function parseSuffix(kind: string, rest: string, at: number, field: (segment: string) => boolean): string[] {
  if (rest === '') return [];
  if (!rest.startsWith('|'))
    throw new DatagramError(
      `unexpected ${JSON.stringify(cutStart(rest, 30))} at byte ${at}: a ${kind}'s fixed part must be followed by '|' or nothing`,
    );
  let tags: string[] | undefined;
  let extensions = false;
  for (const segment of rest.slice(1).split('|')) {
    at += 1;
    if (EXTENSION.test(segment)) extensions = true;
    else if (!tags && !extensions && field(segment)) {
      /* taken */
    } else if (!tags && !extensions && segment.startsWith('#')) tags = segment.slice(1).split(',');
    else throw new DatagramError(`unknown ${kind} field (or out of order) ${JSON.stringify(cutStart(segment, 30))} at byte ${at}`);
    if (tags?.includes('')) throw new DatagramError(`empty tag in ${JSON.stringify(cutStart(segment, 60))} at byte ${at}`);
    at += utf8Bytes(segment);
  }
  return tags ?? [];
}

/** Decodes buf[start, end) and refuses a slice whose ends fall inside a multi-byte character. */
function exactSlice(buf: Buffer, start: number, end: number, what: string): string {
  const s = buf.toString('utf8', start, end);
  if (!Buffer.from(s, 'utf8').equals(buf.subarray(start, end))) {
    throw new DatagramError(
      `${what} (bytes ${start}-${end}) starts or ends inside a multi-byte character: wrong byte length in the header?`,
    );
  }
  return s;
}

const EVENT_FIELDS = { d: 'dateHappened', h: 'hostname', k: 'aggregationKey', p: 'priority', s: 'sourceTypeName', t: 'alertType' } as const;
const CHOICES: Partial<Record<string, [name: string, values: readonly string[]]>> = {
  p: ['priority', ['normal', 'low']],
  t: ['alert type', ['error', 'warning', 'info', 'success']],
};

function parseEvent(buf: Buffer): EventDatagram {
  const header = /^_e\{(\d{1,7}),(\d{1,7})\}:/.exec(buf.toString('latin1', 0, 20));
  if (!header)
    throw new DatagramError(`bad event header ${JSON.stringify(buf.toString('utf8', 0, 20))}: expected _e{<title bytes>,<text bytes>}:`);
  const titleEnd = header[0].length + Number(header[1]);
  const textEnd = titleEnd + 1 + Number(header[2]);
  if (textEnd > buf.length) throw new DatagramError(`header's title and text lengths run past the end of the ${buf.length}-byte datagram`);
  if (buf[titleEnd] !== 0x7c)
    throw new DatagramError(`expected '|' after the ${header[1]}-byte title, at byte ${titleEnd}: wrong title length?`);
  const title = exactSlice(buf, header[0].length, titleEnd, 'title');
  const text = exactSlice(buf, titleEnd + 1, textEnd, 'text').replace(/\\n/g, '\n');
  const event: EventDatagram = { type: 'event', title, text, tags: [] };
  event.tags = parseSuffix('event', buf.toString('utf8', textEnd), textEnd, (segment) => {
    const match = /^([dhkpst]):(.*)$/s.exec(segment);
    if (!match) return false;
    const key = match[1] as keyof typeof EVENT_FIELDS;
    const value = match[2] ?? '';
    if (event[EVENT_FIELDS[key]] !== undefined) throw new DatagramError(`event field ${key}: given twice`);
    if (key === 'd') {
      if (!/^-?\d+$/.test(value)) throw new DatagramError(`date d:${value} is not an integer timestamp`);
      event.dateHappened = Number(value);
    } else {
      const choice = CHOICES[key];
      if (choice && !choice[1].includes(value))
        throw new DatagramError(`bad ${choice[0]} ${JSON.stringify(value)}: expected ${choice[1].join(' or ')}`);
      event[EVENT_FIELDS[key]] = value;
    }
    return true;
  });
  return event;
}

function parseMetric(s: string): ParsedDatagram {
  const match = /^([^:|]*):([^|]*)(?:\|([^|]*))?/.exec(s);
  if (!match) throw new DatagramError(`not a metric (expected name:value|type): ${JSON.stringify(cutStart(s, 60))}`);
  const [head, name = '', value = '', type] = match;
  if (name === '') throw new DatagramError('metric with an empty name');
  if (!NUMBER.test(value) || !Number.isFinite(Number(value)))
    throw new DatagramError(`metric ${name}: non-numeric or infinite value ${JSON.stringify(value)}`);
  const metricType = METRIC_TYPES.find((known) => known === type);
  if (!metricType) throw new DatagramError(`metric ${name}: unknown type ${type === undefined ? '(none)' : JSON.stringify(type)}`);
  let sampleRate: number | undefined;
  const tags = parseSuffix('metric', s.slice(head.length), utf8Bytes(head), (segment) => {
    if (!segment.startsWith('@') || sampleRate !== undefined) return false;
    sampleRate = Number(segment.slice(1));
    if (!NUMBER.test(segment.slice(1)) || !(sampleRate > 0 && sampleRate <= 1))
      throw new DatagramError(`metric ${name}: bad sample rate ${segment}`);
    return true;
  });
  return { type: 'metric', name, value: Number(value), metricType, ...(sampleRate === undefined ? {} : { sampleRate }), tags };
}

/** One datagram, strictly: no line breaks (a packet of several goes through parsePacket). */
export function parseDatagram(datagram: string | Buffer): ParsedDatagram {
  const buf = typeof datagram === 'string' ? Buffer.from(datagram, 'utf8') : datagram;
  if (buf.length === 0) throw new DatagramError('empty datagram');
  const newline = buf.indexOf(0x0a);
  if (newline >= 0) throw new DatagramError(`line break at byte ${newline} inside one datagram`);
  if (buf.toString('latin1', 0, 3) === '_e{') return parseEvent(buf);
  if (buf.toString('latin1', 0, 4) === '_sc|') return { type: 'service_check', raw: buf.toString('utf8') };
  return parseMetric(buf.toString('utf8'));
}

/** A UDP packet: hot-shots' buffering joins datagrams with '\n' and may leave one trailing '\n'. */
export function parsePacket(packet: string | Buffer): ParsedDatagram[] {
  const buf = typeof packet === 'string' ? Buffer.from(packet, 'utf8') : packet;
  const parts: Buffer[] = [];
  let start = 0;
  for (let newline = buf.indexOf(0x0a); newline >= 0; newline = buf.indexOf(0x0a, start)) {
    parts.push(buf.subarray(start, newline));
    start = newline + 1;
  }
  if (start < buf.length || parts.length === 0) parts.push(buf.subarray(start));
  return parts.map((part, index) => {
    try {
      return parseDatagram(part);
    } catch (error) {
      if (error instanceof DatagramError && parts.length > 1)
        throw new DatagramError(`datagram ${index + 1} of ${parts.length}: ${error.message}`);
      throw error;
    }
  });
}
