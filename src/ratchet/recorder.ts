/**
 * `TRIPWIRE_RECORD=<file>`: every rogue write is appended to that file as one JSON line, in any
 * mode, with no change to the app, so running its test suite once records what it exercises.
 * `npx mongoose-tripwire baseline <file>` turns records into a baseline.
 *
 * Each line is written with one write to a descriptor opened with O_APPEND, so test workers in
 * parallel processes can share a file. The path is looked at before it is opened and opened with
 * O_NONBLOCK: a FIFO, socket, device or directory is never written to (opening a FIFO would block the
 * app). Recording never throws into the app: a failure is a fault (`record_failed`), and a path that
 * is not a file stops the recording at once.
 * A record carries a hash of the source file it names, so a record that no longer describes the
 * code (the file changed since) is refused by the CLI instead of keeping a fixed call site alive.
 */
import { closeSync, constants, futimesSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { BaselineError } from '../errors.js';
import type { FaultReporter, Frame } from '../types.js';
import { type FileRead, lookAt, NONBLOCK, notAFileDescriptor, readRegularFile } from '../util/files.js';
import { isBaselinable, siteOf, sourceHash } from './site-key.js';

export const RECORD_VERSION = 1;
export const RECORD_ENV = 'TRIPWIRE_RECORD';
/** Largest record file read by the CLI (a string in V8 is at most 512 MB). */
export const MAX_RECORD_BYTES = 256 * 2 ** 20;

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

class NotAFile extends Error {}

const APPEND = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | NONBLOCK;

export class Recorder {
  private readonly hashes = new Map<string, string | null>();
  /** Set when the path turned out not to be a file: nothing more is written. */
  private stopped = false;

  constructor(
    readonly path: string,
    private readonly root: string,
    private readonly reportFault: FaultReporter,
  ) {
    // Created at once: an empty file then means "recorded, nothing rogue", and a missing one that
    // recording never happened (the CLI says so instead of taking it as a clean run). Its modification
    // time is set now: the CLI reads it as "a run recorded after this", so lines of an earlier run
    // about a file changed since are ignored rather than refused (checkRecordsFresh).
    try {
      const look = lookAt(path);
      if (look.exists && look.notAFile) throw new NotAFile(`it is ${look.notAFile}, not a file: nothing is recorded`);
      mkdirSync(dirname(path), { recursive: true });
      this.append('');
    } catch (error) {
      this.fail(error);
    }
  }

  /** Appends `text` through a non-blocking descriptor, after checking it is a regular file. */
  private append(text: string): void {
    const fd = openSync(this.path, APPEND, 0o666);
    try {
      const kind = notAFileDescriptor(fd);
      if (kind) throw new NotAFile(`it is ${kind}, not a file: nothing is recorded`);
      if (text === '') futimesSync(fd, new Date(), new Date());
      else writeSync(fd, text);
    } finally {
      closeSync(fd);
    }
  }

  record(write: RecordedWrite): void {
    if (this.stopped) return;
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
      this.append(`${JSON.stringify(line)}\n`);
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
    if (error instanceof NotAFile) this.stopped = true;
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
  return readRecordFile(path).records;
}

/** A record file's records and its modification time (when a recording run last started or wrote to it). */
export function readRecordFile(path: string): { records: ParsedRecord[]; mtimeMs: number } {
  let read: FileRead;
  try {
    read = readRegularFile(path, MAX_RECORD_BYTES);
  } catch (error) {
    throw new BaselineError(`record ${path} cannot be read (${(error as Error).message})`);
  }
  if (read.kind === 'missing') {
    throw new BaselineError(
      `record ${path} does not exist: run the app or its tests with ${RECORD_ENV}=${path} first (the plugin creates the file when it ` +
        `is registered)`,
    );
  }
  if (read.kind === 'notAFile')
    throw new BaselineError(`record ${path} is ${read.what}, not a file: name the file written with ${RECORD_ENV}`);
  if (!read.data) throw new BaselineError(`record ${path} is more than ${MAX_RECORD_BYTES / 2 ** 20} MB: is this a ${RECORD_ENV} file?`);
  const text = read.data.toString('utf8');
  const { mtimeMs } = read;
  return { records: parseRecords(text, path), mtimeMs };
}

/** What `checkRecordsFresh` kept: the records that describe the code, and lines of earlier runs it set aside. */
export interface FreshRecords {
  fresh: ParsedRecord[];
  /** Lines recorded before their file last changed, by a run older than the latest (see `checkRecordsFresh`). */
  ignored: ParsedRecord[];
}

/**
 * Refuses records that no longer describe the code: their file was deleted, moved, or changed since
 * the write was recorded (line numbers, and so distinct call sites, may no longer match). `root`
 * overrides the records' own (records made on another machine or checkout).
 *
 * A record file is appended to run after run. A line recorded before its file last changed, in a
 * record file a recording run has touched since that change (`recordMtimeMs`: every recording run
 * sets it when it starts), belongs to an earlier run: it is ignored (and counted), not refused, so
 * the accept loop (record, then `baseline … --out`) works any number of times. A line whose file
 * changed with no run recorded since is refused: the record as a whole is out of date.
 */
export function checkRecordsFresh(
  records: readonly ParsedRecord[],
  source: string,
  root: string | undefined,
  recordMtimeMs = Number.NEGATIVE_INFINITY,
): FreshRecords {
  const current = new Map<string, { hash: string | null; mtimeMs: number }>();
  const result: FreshRecords = { fresh: [], ignored: [] };
  for (const record of records) {
    if (record.source === null || !isBaselinable(record.file)) {
      result.fresh.push(record);
      continue;
    }
    const file = isAbsolute(record.file) ? record.file : resolve(root ?? record.root, record.file);
    let now = current.get(file);
    if (now === undefined) {
      try {
        const look = lookAt(file);
        if (look.exists && !look.notAFile) now = { hash: sourceHash(readFileSync(file)), mtimeMs: statSync(file).mtimeMs };
      } catch {
        now = undefined;
      }
      now ??= { hash: null, mtimeMs: Number.NEGATIVE_INFINITY };
      current.set(file, now);
    }
    if (now.hash === record.source) {
      result.fresh.push(record);
      continue;
    }
    // Dates are whole milliseconds, modification times finer: a line in the same millisecond as the change is not "before" it.
    const recordedBefore = Date.parse(record.at) + 1 < now.mtimeMs;
    if (now.hash !== null && recordedBefore && recordMtimeMs > now.mtimeMs) {
      result.ignored.push(record);
      continue;
    }
    const where = `record ${source}:${record.line} (${record.model}.${record.operation} at ${record.location}, ${record.at})`;
    if (now.hash === null) {
      throw new BaselineError(
        `${where} is stale: ${file} no longer exists${root ? '' : ' (made under another root? pass --root)'}; delete the record and ` +
          `record again`,
      );
    }
    throw new BaselineError(`${where} is stale: ${record.file} changed since it was recorded; delete the record and record again`);
  }
  return result;
}
