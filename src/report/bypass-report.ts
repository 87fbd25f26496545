/**
 * What one rogue write becomes: a `BypassReport`, built only from names, positions, counts and
 * `_id`s (ObjectIds as they are, any other `_id` only as a keyed hash). No field value, filter value
 * or update value is ever read into it.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import {
  type BypassReport,
  type Frame,
  type RogueCapture,
  type TraceContext,
  UNKNOWN_FRAME,
  type WriteKind,
  type WriteOperation,
  type WriteOutcome,
} from '../types.js';
import { displayPath } from '../util/paths.js';

// Each call site is hashed once: rogue writes in a storm come from a handful of them.
// Cached by fingerprintOf's own maps.
const hash16 = (key: string) => createHash('sha256').update(key).digest('hex').slice(0, 16);

export function fingerprintOf(model: string, operation: string, location: string): string {
  // Looked up without building the key: every rogue write needs its fingerprint, for the rate limit.
  let byOperation = fingerprints.get(model);
  if (!byOperation) fingerprints.set(model, (byOperation = new Map()));
  let byLocation = byOperation.get(operation);
  if (!byLocation) byOperation.set(operation, (byLocation = new Map()));
  let fingerprint = byLocation.get(location);
  if (fingerprint === undefined) {
    fingerprint = hash16(`${model}\0${operation}\0${location}`);
    if (++fingerprintCount > 10_000) {
      fingerprints.clear();
      fingerprintCount = 0;
    } else {
      byLocation.set(location, fingerprint);
    }
  }
  return fingerprint;
}
const fingerprints = new Map<string, Map<string, Map<string, string>>>();
let fingerprintCount = 0;

/** Where a frame is, as shown to people and used in fingerprints: `path/relative/to/root:line:column`. */
export function locationOf(frame: Frame | undefined, root: string): string {
  const site = frame ?? UNKNOWN_FRAME;
  return `${displayPath(site.file, root)}:${site.line}:${site.column}`;
}

/** A location without its column, `path:line`: the `callsite` tag and the event title. */
export function withoutColumn(location: string): string {
  return location.replace(/:\d+$/, '');
}

/**
 * The key `_id`s other than ObjectIds are hashed with when the app passes none: random, made once per
 * process, never leaves it. Hashes of the same `_id` match within one process only.
 */
const PROCESS_ID_KEY: Buffer = randomBytes(32);

/** Hashed `_id`s are `hmac:` and this many hex digits (128 bits of HMAC-SHA256). */
export const ID_HASH_HEX_DIGITS = 32;

interface BsonValue {
  _bsontype?: unknown;
  toHexString?: unknown;
}

/** An ObjectId from any copy of `bson` (Mongoose's, the driver's, the app's): `_bsontype` is public in bson 4 to 7. */
function isObjectId(value: object): value is { toHexString(): string } {
  const candidate = value as BsonValue;
  return candidate._bsontype === 'ObjectId' && typeof candidate.toHexString === 'function';
}

type Canonical = string | Canonical[];
const MAX_ID_DEPTH = 16;

/**
 * A typed, unambiguous form of an `_id`, only ever fed to the HMAC or used to tell ids apart:
 * `'42'` and `42` differ, a Buffer and the Binary it is stored as agree, field order counts (as in
 * MongoDB). Never throws: a value it cannot read (a throwing getter) becomes a marker.
 */
// A UUID reaches us as text or as a Binary of subtype 4, depending on where Mongoose casts it
// (Mongoose 8 leaves a filter's UUID a string, the document's a Binary): one id, one hash.
const UUID_TEXT = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
const UUID_SUBTYPE = 4;
const uuid = (hex: string): Canonical => ['u', hex.replaceAll('-', '').toLowerCase()];

function canonicalId(value: unknown, depth = 0): Canonical {
  if (depth > MAX_ID_DEPTH) return ['deep'];
  switch (typeof value) {
    case 'string':
      return UUID_TEXT.test(value) ? uuid(value) : ['s', value];
    case 'number':
      return ['n', Object.is(value, -0) ? '-0' : String(value)];
    case 'bigint':
      return ['l', String(value)];
    case 'boolean':
      return ['b', String(value)];
    case 'object':
      break;
    default:
      return ['?', typeof value];
  }
  if (value === null) return ['null'];
  try {
    if (value instanceof Date) return ['d', String(value.getTime())];
    if (isObjectId(value)) return ['o', value.toHexString()];
    if (value instanceof Uint8Array) {
      const subtype = (value as { _subtype?: unknown })._subtype;
      const hex = Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex');
      return subtype === UUID_SUBTYPE && value.byteLength === 16
        ? uuid(hex)
        : ['x', typeof subtype === 'number' ? String(subtype) : '0', hex];
    }
    const bson = value as { _bsontype?: unknown; sub_type?: unknown; buffer?: unknown; toString?: () => string };
    if (bson._bsontype === 'Binary' && bson.buffer instanceof Uint8Array) {
      const hex = Buffer.from(bson.buffer.buffer, bson.buffer.byteOffset, bson.buffer.byteLength).toString('hex');
      return bson.sub_type === UUID_SUBTYPE && bson.buffer.byteLength === 16 ? uuid(hex) : ['x', String(bson.sub_type ?? 0), hex];
    }
    if (bson._bsontype === 'Long' || bson._bsontype === 'Decimal128') return [bson._bsontype === 'Long' ? 'l' : 'm', String(value)];
    if (bson._bsontype === 'Int32' || bson._bsontype === 'Double')
      return ['n', String(Number((value as { valueOf(): unknown }).valueOf()))];
    // A Mongoose subdocument or array: what it is stored as.
    const stored = typeof (value as { toBSON?: unknown }).toBSON === 'function' ? (value as { toBSON(): unknown }).toBSON() : value;
    if (stored !== value) return canonicalId(stored, depth + 1);
    if (Array.isArray(value)) return ['a', ...value.map((item) => canonicalId(item, depth + 1))];
    const fields: Canonical[] = ['{'];
    for (const key of Object.keys(value)) fields.push(['k', key], canonicalId((value as Record<string, unknown>)[key], depth + 1));
    return fields;
  } catch {
    return ['unreadable'];
  }
}

/**
 * Reads `_id`s into what a report may show: an ObjectId as its hex (a random value the server made,
 * no secret in it), anything else (a string, number, date, binary or compound `_id`, which may be or
 * contain a token) only as `hmac:` and an HMAC-SHA256 of its typed form under `key`.
 */
export class IdReader {
  private readonly key: Buffer;
  constructor(key?: Uint8Array) {
    this.key = key === undefined ? PROCESS_ID_KEY : Buffer.isBuffer(key) ? key : Buffer.from(key);
  }

  /** What tells two ids apart, cheaply (no hashing); undefined for a missing `_id`. */
  identity(id: unknown): string | undefined {
    if (id === undefined || id === null) return undefined;
    if (typeof id === 'object' && isObjectId(id)) return `o:${id.toHexString()}`;
    return JSON.stringify(canonicalId(id));
  }

  /** The `_id` as shown in reports and events. */
  show(id: unknown): string | undefined {
    const identity = this.identity(id);
    if (identity === undefined) return undefined;
    if (identity.startsWith('o:')) return identity.slice(2);
    return `hmac:${createHmac('sha256', this.key).update(identity).digest('hex').slice(0, ID_HASH_HEX_DIGITS)}`;
  }
}

const DEFAULT_ID_READER = new IdReader();

/** An `_id` as shown in a report, hashed with this process's key unless it is an ObjectId. */
export function idToString(id: unknown, reader: IdReader = DEFAULT_ID_READER): string | undefined {
  return reader.show(id);
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
  /** The key `_id`s other than ObjectIds are hashed with (`idHashKey`); default: this process's random key. */
  idHashKey?: Uint8Array;
  /** `false`: no `_id` at all in the report (they are only counted, in `documentIdsOmitted`). Default true. */
  documentIds?: boolean;
  /** The trace the write was made in, when one was active. */
  trace?: TraceContext | undefined;
}

export function buildReport(input: ReportInput): BypassReport {
  const stack = input.capture.frames.slice();
  // The deciding frame (the code to migrate); the stack still shows the pass-through frames above it.
  const callSite = input.capture.callSite ?? stack[0] ?? UNKNOWN_FRAME;
  const location = locationOf(callSite, input.root);
  const documentIds: string[] = [];
  let documentIdsOmitted = 0;
  const seen = new Set<string>();
  const reader = input.idHashKey === undefined ? DEFAULT_ID_READER : new IdReader(input.idHashKey);
  const limit = input.documentIds === false ? 0 : input.maxDocumentIds;
  for (const id of input.ids) {
    const identity = reader.identity(id);
    if (identity === undefined || seen.has(identity)) continue;
    seen.add(identity);
    // Hashed only when listed: a 10 000-document insertMany costs 20 HMACs, not 10 000.
    if (documentIds.length < limit) documentIds.push(reader.show(id)!);
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
    ...(input.trace ? { trace: input.trace } : {}),
  };
}
