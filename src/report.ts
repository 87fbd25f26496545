/**
 * What one rogue write becomes: a `BypassReport`, built only from names, positions, counts and
 * `_id`s. No field value, filter value or update value is ever read into it.
 */
import { createHash } from 'node:crypto';
import { relative, sep } from 'node:path';
import type { Frame, RogueCapture } from './capture.js';
import { memoize } from './memo.js';

/** What a write did; `read` only with `operations: [..., 'read']`. */
export type WriteKind = 'create' | 'update' | 'delete' | 'read';

/** Methods of `Model.collection` (the driver collection), which skip Mongoose middleware. */
export type CollectionMethod =
  | 'insertOne' | 'insertMany' | 'updateOne' | 'updateMany' | 'replaceOne' | 'deleteOne' | 'deleteMany'
  | 'findOneAndUpdate' | 'findOneAndReplace' | 'findOneAndDelete' | 'bulkWrite'
  | 'find' | 'findOne' | 'countDocuments' | 'estimatedDocumentCount' | 'distinct' | 'aggregate';

export type WriteOperation =
  | 'save' | 'create' | 'insertOne' | 'insertMany' | 'bulkWrite' | 'bulkSave'
  | 'updateOne' | 'updateMany' | 'replaceOne' | 'findOneAndUpdate' | 'findOneAndReplace'
  | 'findOneAndDelete' | 'deleteOne' | 'deleteMany'
  | 'find' | 'findOne' | 'countDocuments' | 'estimatedDocumentCount' | 'distinct' | 'aggregate'
  | `collection.${CollectionMethod}`;

/** Counts the server reported, when the operation reports them. */
export interface WriteOutcome {
  inserted?: number;
  matched?: number;
  modified?: number;
  deleted?: number;
  upserted?: number;
}

export interface BypassReport {
  /** Model name, e.g. `AccessToken`. */
  model: string;
  operation: WriteOperation;
  kind: WriteKind;
  /** The application frame that called Mongoose (`file` absolute). `<unknown>` when no stack could be read. */
  callSite: Frame;
  /** Application frames, innermost first, starting at the call site; Mongoose, driver, Node and plugin frames left out. */
  stack: Frame[];
  /** Frames beyond `maxFrames` not kept in `stack`. */
  framesOmitted: number;
  /** Stable for the same model, operation and call site (path relative to `root`), across processes and machines. */
  fingerprint: string;
  /** The `_id`s written, as strings, at most `maxDocumentIds`; compound `_id`s are hashed, never shown. */
  documentIds: string[];
  /** `_id`s written beyond those listed. */
  documentIdsOmitted: number;
  outcome: WriteOutcome;
  at: Date;
  /** Events for this call site held back by the rate limit since the last one sent. */
  suppressed: number;
  /** True in throw mode: the write was refused before it reached MongoDB. */
  blocked: boolean;
  /** The call site relative to `root`, `/`-separated, e.g. `src/legacy/tokens.ts:42:7`. */
  location: string;
  /** True for `Model.collection.*` calls: the driver was called directly and no Mongoose middleware ran. */
  bypassedMiddleware: boolean;
  /** True when the call site is in the `baseline` (a known rogue write, let through in throw mode); false without a baseline. */
  baselined: boolean;
}

/** The error a rogue write rejects with in `mode: 'throw'`. */
export class RogueWriteError extends Error {
  override name = 'RogueWriteError';
  /** `advice`: what to do about it (with a baseline: how to accept it), appended to the message. */
  constructor(readonly report: BypassReport, advice?: string) {
    super(`mongoose-tripwire: rogue write refused: ${report.model}.${report.operation} from ${report.location} is not approved code${advice ? `. ${advice}` : ''}`);
  }
}

export const UNKNOWN_FRAME: Frame = Object.freeze({ file: '<unknown>', line: 0, column: 0 });

export function displayPath(file: string, root: string): string {
  if (!file.startsWith('/') && !/^[A-Za-z]:[\\/]/.test(file)) return file;
  const rel = relative(root, file);
  const shown = rel === '' || rel.startsWith('..') ? file : rel;
  return sep === '/' ? shown : shown.split(sep).join('/');
}

// Each call site is hashed once: rogue writes in a storm come from a handful of them.
const hashOnce = memoize((key) => createHash('sha256').update(key).digest('hex').slice(0, 16), 10_000);

export function fingerprintOf(model: string, operation: string, location: string): string {
  return hashOnce(`${model}\0${operation}\0${location}`);
}

/** Where a frame is, as shown to people and used in fingerprints: `path/relative/to/root:line:column`. */
export function locationOf(frame: Frame | undefined, root: string): string {
  const site = frame ?? UNKNOWN_FRAME;
  return `${displayPath(site.file, root)}:${site.line}:${site.column}`;
}

/** A location without its column, `path:line`: the `callsite` tag and the event title. */
export function withoutColumn(location: string): string {
  return location.replace(/:\d+$/, '');
}

interface HexId { toHexString(): string }
function hasHex(value: object): value is HexId {
  return typeof (value as Partial<HexId>).toHexString === 'function';
}

/** An `_id` as a string; a compound `_id` (an object of fields) is hashed so none of its values leave. */
export function idToString(id: unknown): string | undefined {
  if (id === undefined || id === null) return undefined;
  switch (typeof id) {
    case 'string': return id;
    case 'number':
    case 'bigint': return String(id);
    case 'object':
      if (id instanceof Date) return id.toISOString();
      if (hasHex(id)) return id.toHexString();
      return `compound:${createHash('sha256').update(safeKeyShape(id)).digest('hex').slice(0, 12)}`;
    default: return undefined;
  }
}

function safeKeyShape(value: object): string {
  try {
    return JSON.stringify(value) ?? '';
  } catch {
    return '';
  }
}

export interface ReportInput {
  model: string;
  operation: WriteOperation;
  kind: WriteKind;
  capture: RogueCapture;
  ids: readonly unknown[];
  outcome: WriteOutcome;
  at: Date;
  blocked: boolean;
  root: string;
  maxDocumentIds: number;
  bypassedMiddleware?: boolean;
}

export function buildReport(input: ReportInput): BypassReport {
  const stack = input.capture.frames.slice();
  const callSite = stack[0] ?? UNKNOWN_FRAME;
  const location = locationOf(callSite, input.root);
  const documentIds: string[] = [];
  let documentIdsOmitted = 0;
  const seen = new Set<string>();
  for (const id of input.ids) {
    const text = idToString(id);
    if (text === undefined || seen.has(text)) continue;
    seen.add(text);
    if (documentIds.length < input.maxDocumentIds) documentIds.push(text);
    else documentIdsOmitted++;
  }
  return {
    model: input.model,
    operation: input.operation,
    kind: input.kind,
    callSite,
    stack,
    framesOmitted: input.capture.framesOmitted,
    fingerprint: fingerprintOf(input.model, input.operation, location),
    documentIds,
    documentIdsOmitted,
    outcome: input.outcome,
    at: input.at,
    suppressed: 0,
    blocked: input.blocked,
    location,
    bypassedMiddleware: input.bypassedMiddleware ?? false,
    baselined: false,
  };
}
