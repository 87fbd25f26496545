import { existsSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { BaselineError } from '../errors.js';
import type { BaselineEntry, LoadedBaseline } from '../types.js';
import { type FileRead, readRegularFile } from '../util/files.js';
import { clip } from '../util/text.js';
import type { RecordLine } from './recorder.js';
import { describeKey, isBaselinable, keyOf, type SiteKey } from './site-key.js';

export const BASELINE_VERSION = 1;
export const DEFAULT_BASELINE_FILE = 'tripwire-baseline.json';
export const DEFAULT_RECORD_FILE = 'tripwire-record.jsonl';
/** Largest baseline read: a real one is a few hundred lines; more is a wrong file, refused before it is read. */
export const MAX_BASELINE_BYTES = 16 * 1024 * 1024;

const ENTRY_KEYS = ['model', 'operation', 'file', 'function', 'count'] as const;
const ENTRY_KEY_SET: ReadonlySet<string> = new Set(ENTRY_KEYS);
const STRING_KEYS = ['model', 'operation', 'file', 'function'] as const;
const TOP_KEYS = new Set(['$comment', 'version', 'entries']);
const COMMENT =
  'Known rogue writes (mongoose-tripwire). Written by `npx mongoose-tripwire baseline`; it should only shrink. See the README, ' +
  '"Ratcheting a migration".';

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean'
    ? clip(JSON.stringify(value), 200)
    : typeof value;
}

/** Parses a baseline file's text; throws `BaselineError` naming `source` and the first problem. */
export function parseBaseline(text: string, source: string): BaselineEntry[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new BaselineError(`baseline ${source} is not valid JSON (${clip((error as Error).message, 300)})`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new BaselineError(
      `baseline ${source} must be an object { "version": ${BASELINE_VERSION}, "entries": [...] }, got ${typeName(data)}`,
    );
  }
  const top = data as Record<string, unknown>;
  for (const key of Object.keys(top)) {
    if (!TOP_KEYS.has(key)) throw new BaselineError(`baseline ${source} has an unknown key "${key}" (known: ${[...TOP_KEYS].join(', ')})`);
  }
  if (top.version !== BASELINE_VERSION) {
    throw new BaselineError(
      `baseline ${source} has version ${typeName(top.version)}; this mongoose-tripwire reads version ${BASELINE_VERSION}`,
    );
  }
  if (!Array.isArray(top.entries)) throw new BaselineError(`baseline ${source}: "entries" must be an array, got ${typeName(top.entries)}`);
  // Linear, and cheap per entry: a baseline of 100,000 entries is read at every boot.
  const seen = new Set<string>();
  return top.entries.map((raw: unknown, index): BaselineEntry => {
    const at = () => `baseline ${source}, entries[${index}]`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
      throw new BaselineError(`${at()} must be an object, got ${typeName(raw)}`);
    const entry = raw as Record<string, unknown>;
    for (const key in entry) {
      if (!ENTRY_KEY_SET.has(key)) throw new BaselineError(`${at()} has an unknown key "${key}" (known: ${ENTRY_KEYS.join(', ')})`);
    }
    for (const key of STRING_KEYS) {
      if (typeof entry[key] !== 'string' || entry[key] === '')
        throw new BaselineError(`${at()}: "${key}" must be a non-empty string, got ${typeName(entry[key])}`);
    }
    if (typeof entry.count !== 'number' || !Number.isInteger(entry.count) || entry.count < 1) {
      throw new BaselineError(`${at()}: "count" must be a positive integer (distinct call sites), got ${typeName(entry.count)}`);
    }
    const parsed: BaselineEntry = {
      model: entry.model as string,
      operation: entry.operation as string,
      file: entry.file as string,
      function: entry.function as string,
      count: entry.count,
    };
    if (!isBaselinable(parsed.file))
      throw new BaselineError(`${at()}: "file" ${typeName(parsed.file)} is not a file: a call site without a file cannot be baselined`);
    const key = keyOf(parsed);
    if (seen.has(key)) throw new BaselineError(`${at()} repeats the entry for ${describeKey(parsed)}`);
    seen.add(key);
    return parsed;
  });
}

/**
 * Reads a baseline file; a missing or unreadable file is a `BaselineError` too. What the path is, is
 * looked at first: a FIFO, socket, device or directory is refused unopened (opening a FIFO blocks,
 * reading /dev/zero never ends), and so is a file over `MAX_BASELINE_BYTES`.
 */
export function readBaseline(file: string, shown = file): BaselineEntry[] {
  let read: FileRead;
  try {
    read = readRegularFile(file, MAX_BASELINE_BYTES);
  } catch (error) {
    throw new BaselineError(`baseline ${shown} cannot be read (${(error as Error).message})`);
  }
  if (read.kind === 'missing') throw new BaselineError(`baseline ${shown} does not exist`);
  if (read.kind === 'notAFile') throw new BaselineError(`baseline ${shown} is ${read.what}, not a file: name the baseline's JSON file`);
  const { data } = read;
  // Over the limit when looked at, or grown past it while being read.
  if (data === undefined) throw tooLarge(shown, read.size > MAX_BASELINE_BYTES ? read.size : undefined);
  return parseBaseline(data.toString('utf8'), shown);
}

function tooLarge(shown: string, size: number | undefined): BaselineError {
  const mb = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
  return new BaselineError(
    `baseline ${shown} is ${size === undefined ? 'more than 16 MB' : mb(size)}: a baseline is at most ${mb(MAX_BASELINE_BYTES)} (one ` +
      `short line per known rogue call site); is this the right file?`,
  );
}

/**
 * The option `baseline`, read once at registration. A missing file in a recording run
 * (`TRIPWIRE_RECORD` set: `recording`) is an empty baseline, marked `missing`, so the first run that
 * records the baseline needs no change to the setup that names it.
 */
export function loadBaseline(path: string, root: string, recording = false): LoadedBaseline {
  const started = performance.now();
  const file = isAbsolute(path) ? resolve(path) : resolve(root, path);
  const shown = file === path ? path : `${path} (${file})`;
  try {
    const entries = readBaseline(file, shown);
    return { path, file, entries, loadMs: performance.now() - started };
  } catch (error) {
    if (error instanceof BaselineError && !existsSync(file)) {
      if (recording) return { path, file, entries: [], missing: true, loadMs: performance.now() - started };
      throw new BaselineError(
        `${error.message}: the option baseline is relative to root (${root}); create it by running the tests once with ` +
          `TRIPWIRE_RECORD=${DEFAULT_RECORD_FILE} (a missing baseline is then taken as empty), then \`npx mongoose-tripwire baseline ` +
          `${DEFAULT_RECORD_FILE} --out ${path}\``,
      );
    }
    throw error;
  }
}

function compare(a: BaselineEntry, b: BaselineEntry): number {
  for (const key of ['file', 'function', 'model', 'operation'] as const) {
    if (a[key] !== b[key]) return a[key] < b[key] ? -1 : 1;
  }
  return 0;
}

/** The file's text: stable order (file, function, model, operation), one entry per line, a final newline. */
export function formatBaseline(entries: readonly BaselineEntry[]): string {
  const lines = [...entries]
    .sort(compare)
    .map(({ model, operation, file, function: fn, count }) => `    ${JSON.stringify({ model, operation, file, function: fn, count })}`);
  const list = lines.length === 0 ? '[]' : `[\n${lines.join(',\n')}\n  ]`;
  return `{\n  "$comment": ${JSON.stringify(COMMENT)},\n  "version": ${BASELINE_VERSION},\n  "entries": ${list}\n}\n`;
}

/** What a rogue write's call site is, against the baseline. */
export interface BaselineVerdict {
  baselined: boolean;
  /** Distinct call sites the baseline allows for this key (0: no entry). */
  allowed: number;
}

/**
 * Matches rogue writes against a baseline in one process. Memory is bounded by the sum of the
 * counts: only call sites that were let in are remembered.
 */
export class BaselineMatcher {
  private allowedByKey: Map<string, number> | undefined;
  private readonly admitted = new Map<string, Set<string>>();

  constructor(readonly baseline: LoadedBaseline) {}

  /** Built at the first rogue write, not at registration: most processes of a large app never need it. */
  private get allowed(): Map<string, number> {
    if (!this.allowedByKey) {
      this.allowedByKey = new Map();
      for (const entry of this.baseline.entries) this.allowedByKey.set(keyOf(entry), entry.count);
    }
    return this.allowedByKey;
  }

  /**
   * Is this call site (`location`, `path:line:column`) known? The first `count` distinct ones seen
   * for the key are; the same call site gets the same answer every time.
   */
  check(site: SiteKey, location: string): BaselineVerdict {
    if (!isBaselinable(site.file)) return { baselined: false, allowed: 0 };
    const key = keyOf(site);
    const allowed = this.allowed.get(key) ?? 0;
    if (allowed === 0) return { baselined: false, allowed };
    let admitted = this.admitted.get(key);
    if (admitted?.has(location)) return { baselined: true, allowed };
    if ((admitted?.size ?? 0) >= allowed) return { baselined: false, allowed };
    if (!admitted) this.admitted.set(key, (admitted = new Set()));
    admitted.add(location);
    return { baselined: true, allowed };
  }

  /**
   * Entries whose file no longer exists under `root` (moved or deleted code: the entry is stale).
   * Each file is looked up once, and each folder: the files of a folder that is gone are not looked up.
   */
  missingFiles(root: string): string[] {
    const folders = new Map<string, boolean>();
    const folderExists = (folder: string): boolean => {
      let exists = folders.get(folder);
      if (exists === undefined) {
        const parent = dirname(folder);
        exists = (parent === folder || folderExists(parent)) && existsSync(folder);
        folders.set(folder, exists);
      }
      return exists;
    };
    // By the folder as written in the entry first: no path is resolved for the files of a folder that is gone.
    const written = new Map<string, boolean>();
    const missing: string[] = [];
    const seen = new Set<string>();
    for (const { file } of this.baseline.entries) {
      if (seen.has(file)) continue;
      seen.add(file);
      const folder = file.slice(0, Math.max(file.lastIndexOf('/'), file.lastIndexOf('\\'), 0));
      let there = written.get(folder);
      if (there === undefined) {
        there = folderExists(isAbsolute(folder) ? resolve(folder) : resolve(root, folder));
        written.set(folder, there);
      }
      if (!there || !existsSync(isAbsolute(file) ? file : resolve(root, file))) missing.push(file);
    }
    return missing.sort();
  }
}

// ---- Building a baseline from records (the CLI) ----

/** Distinct call sites seen per key in a set of records. */
export interface Observed {
  site: SiteKey;
  locations: Set<string>;
}

/** Groups records by key, counting distinct call sites; records without a file are returned apart. */
export function observedSites(records: Iterable<RecordLine>): { observed: Map<string, Observed>; unbaselinable: RecordLine[] } {
  const observed = new Map<string, Observed>();
  const unbaselinable: RecordLine[] = [];
  for (const record of records) {
    if (!isBaselinable(record.file)) {
      unbaselinable.push(record);
      continue;
    }
    const site: SiteKey = { model: record.model, operation: record.operation, file: record.file, function: record.function };
    const key = keyOf(site);
    let entry = observed.get(key);
    if (!entry) observed.set(key, (entry = { site, locations: new Set() }));
    entry.locations.add(record.location);
  }
  return { observed, unbaselinable };
}

/** How records compare with a baseline. */
export interface Comparison {
  /** Keys seen with more distinct call sites than the baseline allows (or with no entry). */
  grown: Array<{ site: SiteKey; allowed: number; locations: string[] }>;
  /** Entries allowing more call sites than were seen (or none seen): what `--prune` would drop or lower. */
  shrinkable: Array<{ entry: BaselineEntry; seen: number }>;
}

export function compareWithBaseline(entries: readonly BaselineEntry[], observed: ReadonlyMap<string, Observed>): Comparison {
  const byKey = new Map(entries.map((entry) => [keyOf(entry), entry]));
  const grown: Comparison['grown'] = [];
  const shrinkable: Comparison['shrinkable'] = [];
  for (const [key, { site, locations }] of observed) {
    const allowed = byKey.get(key)?.count ?? 0;
    if (locations.size > allowed) grown.push({ site, allowed, locations: [...locations].sort() });
  }
  for (const entry of entries) {
    const seen = observed.get(keyOf(entry))?.locations.size ?? 0;
    if (seen < entry.count) shrinkable.push({ entry, seen });
  }
  grown.sort((a, b) => compare({ ...a.site, count: 0 }, { ...b.site, count: 0 }));
  shrinkable.sort((a, b) => compare(a.entry, b.entry));
  return { grown, shrinkable };
}

/**
 * The next baseline: every key seen, with its distinct call sites; without `prune`, entries not
 * seen are kept and no count goes down (records may cover part of the app); with `prune`, exactly
 * what was seen.
 */
export function nextBaseline(entries: readonly BaselineEntry[], observed: ReadonlyMap<string, Observed>, prune: boolean): BaselineEntry[] {
  const next = new Map<string, BaselineEntry>();
  if (!prune) for (const entry of entries) next.set(keyOf(entry), { ...entry });
  for (const [key, { site, locations }] of observed) {
    const count = Math.max(next.get(key)?.count ?? 0, locations.size);
    next.set(key, { ...site, count });
  }
  return [...next.values()].sort(compare);
}
