/**
 * `TRIPWIRE_RECORD=<file>`: every rogue write is appended to that file as one JSON line, in any
 * mode, with no change to the app, so running its test suite once records what it exercises.
 * `npx mongoose-tripwire baseline <file>` turns records into a baseline.
 *
 * Each line is written with one `appendFileSync` (O_APPEND), so test workers in parallel processes
 * can share a file. Recording never throws into the app: a failure is a fault (`record_failed`).
 * A record carries a hash of the source file it names, so a record that no longer describes the
 * code (the file changed since) is refused by the CLI instead of keeping a fixed call site alive.
 */
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { BaselineError } from '../errors.js';
import type { FaultReporter, Frame } from '../types.js';
import { isBaselinable, siteOf, sourceHash } from './site-key.js';

export const RECORD_VERSION = 1;
export const RECORD_ENV = 'TRIPWIRE_RECORD';

/** One rogue write, as one line of a record file. */
export interface RecordLine {
  /** Always `"mongoose-tripwire"`: a line from anything else is an error, not a guess. */
  tripwire: 'mongoose-tripwire';
  v: typeof RECORD_VERSION;
  /** When the write happened (ISO 8601). */
  at: string;
  pid: number;
  /** The plugin's `root`, absolute: `file` is relative to it. */
  root: string;
  model: string;
  operation: string;
  kind: string;
  /** The deciding frame's file relative to `root` (absolute when outside it; `<unknown>` when none). */
  file: string;
  /** Its enclosing function, or `<anonymous>`. */
  function: string;
  /** `path:line:column` relative to `root`: one distinct call site. */
  location: string;
  /** Short sha256 of `file`'s content when the write happened; null when it could not be read. */
  source: string | null;
  baselined: boolean;
  blocked: boolean;
}

export interface RecordedWrite {
  model: string;
  operation: string;
  kind: string;
  frame: Frame | undefined;
  location: string;
  baselined: boolean;
  blocked: boolean;
  at: Date;
}

export class Recorder {
  private readonly hashes = new Map<string, string | null>();

  constructor(
    readonly path: string,
    private readonly root: string,
    private readonly reportFault: FaultReporter,
  ) {
    // Created at once: an empty file then means "recorded, nothing rogue", and a missing one that
    // recording never happened (the CLI says so instead of taking it as a clean run).
    try {
      mkdirSync(dirname(path), { recursive: true });
      appendFileSync(path, '');
    } catch (error) {
      this.fail(error);
    }
  }

  record(write: RecordedWrite): void {
    try {
      const { file, function: fn } = siteOf(write.frame, this.root);
      const line: RecordLine = {
        tripwire: 'mongoose-tripwire',
        v: RECORD_VERSION,
        at: write.at.toISOString(),
        pid: process.pid,
        root: this.root,
        model: write.model,
        operation: write.operation,
        kind: write.kind,
        file,
        function: fn,
        location: write.location,
        source: isBaselinable(file) && write.frame ? this.hashOf(write.frame.file) : null,
        baselined: write.baselined,
        blocked: write.blocked,
      };
      appendFileSync(this.path, `${JSON.stringify(line)}\n`);
    } catch (error) {
      this.fail(error);
    }
  }

  private hashOf(file: string): string | null {
    let hash = this.hashes.get(file);
    if (hash === undefined) {
      try {
        hash = sourceHash(readFileSync(file));
      } catch {
        hash = null;
      }
      if (this.hashes.size < 10_000) this.hashes.set(file, hash);
    }
    return hash;
  }

  private fail(error: unknown): void {
    this.reportFault('record_failed', `could not append to the ${RECORD_ENV} file ${this.path}`, error);
  }
}

/** The recorder for `TRIPWIRE_RECORD`, or undefined when it is unset (or empty). Relative to the working directory. */
export function createRecorder(setting: string | undefined, root: string, reportFault: FaultReporter): Recorder | undefined {
  if (setting === undefined || setting.trim() === '') return undefined;
  const path = isAbsolute(setting) ? setting : resolve(process.cwd(), setting);
  return new Recorder(path, root, reportFault);
}

const STRING_FIELDS = ['at', 'root', 'model', 'operation', 'kind', 'file', 'function', 'location'] as const;

/** A record line as read back, with its line number in its file. */
export interface ParsedRecord extends RecordLine {
  line: number;
}

/** Parses a record file's text; throws `BaselineError` naming `source:line` and the problem. Blank lines are skipped. */
export function parseRecords(text: string, source: string): ParsedRecord[] {
  const records: ParsedRecord[] = [];
  const lines = text.split('\n');
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '') continue;
    const at = `record ${source}:${index + 1}`;
    let data: unknown;
    try {
      data = JSON.parse(line);
    } catch (error) {
      // A last line cut short by a killed process is still an error: the record is incomplete.
      throw new BaselineError(`${at} is not valid JSON (${(error as Error).message}); is this a ${RECORD_ENV} file, written completely?`);
    }
    if (data === null || typeof data !== 'object' || (data as Partial<RecordLine>).tripwire !== 'mongoose-tripwire') {
      throw new BaselineError(`${at} is not a mongoose-tripwire record line`);
    }
    const record = data as Record<string, unknown>;
    if (record.v !== RECORD_VERSION)
      throw new BaselineError(
        `${at} has record version ${JSON.stringify(record.v)}; this mongoose-tripwire reads version ${RECORD_VERSION}`,
      );
    for (const field of STRING_FIELDS) {
      if (typeof record[field] !== 'string' || record[field] === '')
        throw new BaselineError(`${at}: "${field}" must be a non-empty string`);
    }
    if (Number.isNaN(Date.parse(record.at as string))) throw new BaselineError(`${at}: "at" is not a date`);
    if (record.source !== null && typeof record.source !== 'string') throw new BaselineError(`${at}: "source" must be a string or null`);
    if (typeof record.baselined !== 'boolean' || typeof record.blocked !== 'boolean')
      throw new BaselineError(`${at}: "baselined" and "blocked" must be booleans`);
    records.push({ ...(data as RecordLine), line: index + 1 });
  }
  return records;
}

/** Reads a record file; a missing one is an error (the plugin creates it at registration, even when nothing is rogue). */
export function readRecords(path: string): ParsedRecord[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new BaselineError(
      code === 'ENOENT'
        ? `record ${path} does not exist: run the app or its tests with ${RECORD_ENV}=${path} first (the plugin creates the file when it ` +
            `is registered)`
        : `record ${path} cannot be read (${(error as Error).message})`,
    );
  }
  return parseRecords(text, path);
}

/**
 * Refuses records that no longer describe the code: their file was deleted, moved, or changed since
 * the write was recorded (line numbers, and so distinct call sites, may no longer match). `root`
 * overrides the records' own (records made on another machine or checkout).
 */
export function checkRecordsFresh(records: readonly ParsedRecord[], source: string, root: string | undefined): void {
  const current = new Map<string, string | null>();
  for (const record of records) {
    if (record.source === null || !isBaselinable(record.file)) continue;
    const file = isAbsolute(record.file) ? record.file : resolve(root ?? record.root, record.file);
    let hash = current.get(file);
    if (hash === undefined) {
      try {
        hash = sourceHash(readFileSync(file));
      } catch {
        hash = null;
      }
      current.set(file, hash);
    }
    const where = `record ${source}:${record.line} (${record.model}.${record.operation} at ${record.location}, ${record.at})`;
    if (hash === null) {
      throw new BaselineError(
        `${where} is stale: ${file} no longer exists${root ? '' : ' (made under another root? pass --root)'}; delete the record and ` +
          `record again`,
      );
    }
    if (hash !== record.source) {
      throw new BaselineError(`${where} is stale: ${record.file} changed since it was recorded; delete the record and record again`);
    }
  }
}
