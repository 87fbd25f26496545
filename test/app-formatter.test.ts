/**
 * An app's own `Error.prepareStackTrace` (test runners, source-map-support) is asked where a rogue
 * write's frames are, and believed only when its answer reads as a real place: otherwise the raw
 * position stands. Each formatter below is installed around one rogue write.
 */
import type mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { close } from '../src/index.js';
import { tripwire } from '../src/plugin.js';
import type { BypassReport } from '../src/types.js';
// @ts-expect-error plain ESM fixtures without types
import { writes as legacyWrites } from './fixtures/app/legacy/writes.mjs';
// @ts-expect-error plain ESM fixtures without types
import { fixtureDir, siteLine } from './fixtures/app/matrix.mjs';
// @ts-expect-error plain ESM fixtures without types
import { tokenSchema } from './fixtures/app/models.mjs';
import { connect } from './support/connect.js';

type Model = mongoose.Model<Record<string, unknown>>;
type Write = (T: Model, c: { token(): string; opts: object }) => Promise<unknown>;
type Formatter = (error: Error, sites: NodeJS.CallSite[]) => unknown;

const PATH = 'Model.create(single)';
const rogueCreate = legacyWrites[PATH] as Write;
const legacyFile = `${fixtureDir as string}legacy/writes.mjs`;
const rawLine = siteLine('legacy/writes.mjs', PATH) as number;

let connection: mongoose.Connection;
let T: Model;
const reports: BypassReport[] = [];

beforeAll(async () => {
  connection = await connect('app_formatter');
  const schema = tokenSchema() as mongoose.Schema;
  schema.plugin(tripwire, {
    approved: ['auth/**'],
    root: fixtureDir as string,
    statsd: false,
    rateLimit: false,
    onBypass: (r) => void reports.push(r),
  });
  T = connection.model('FormattedToken', schema) as unknown as Model;
  await T.init();
});

afterAll(async () => {
  await close();
  await connection.close();
});

async function rogueWriteUnder(format: Formatter, stackTraceLimit = Error.stackTraceLimit): Promise<BypassReport> {
  const saved = { prepare: Error.prepareStackTrace, limit: Error.stackTraceLimit };
  const before = reports.length;
  try {
    Error.prepareStackTrace = format as typeof Error.prepareStackTrace;
    Error.stackTraceLimit = stackTraceLimit;
    await rogueCreate(T, { token: () => `tok_${Math.random()}`, opts: {} });
  } finally {
    Error.prepareStackTrace = saved.prepare;
    Error.stackTraceLimit = saved.limit;
  }
  await expect.poll(() => reports.length > before, { timeout: 15_000 }).toBe(true);
  return reports[before]!;
}

/** What V8 itself would print for the sites, in its own format. */
const v8Frame = (site: NodeJS.CallSite, line = site.getLineNumber(), file = site.getFileName()) =>
  `Error\n    at ${site.getFunctionName() ?? '<anonymous>'} (${file}:${line}:${site.getColumnNumber()})`;

describe("an app's stack formatter", () => {
  const untrusted: Array<[string, Formatter, number?]> = [
    ['returns an array', (_e, sites) => sites],
    ['returns an object', () => ({ file: '/elsewhere.js', line: 3 })],
    ['returns custom:N (stackTraceLimit 0)', (_e, sites) => `custom:${sites.length}`, 0],
    ['returns custom:N', (_e, sites) => `custom:${sites.length}`],
    ['returns an empty string', () => ''],
    [
      'throws',
      () => {
        throw new Error('formatter failed');
      },
    ],
    ['names a relative file', (_e, sites) => v8Frame(sites[0]!, 99, 'relative/file.js')],
    ['gives line 0', (_e, sites) => v8Frame(sites[0]!, 0)],
  ];
  for (const [label, format, limit] of untrusted) {
    it(`that ${label} is not believed: the raw position is reported`, async () => {
      const report = await rogueWriteUnder(format, limit);
      expect({ file: report.callSite.file, line: report.callSite.line }).toEqual({ file: legacyFile, line: rawLine });
    });
  }

  it('that maps positions to a real place is believed (as a source map would)', async () => {
    const report = await rogueWriteUnder((_e, sites) => v8Frame(sites[0]!, (sites[0]!.getLineNumber() ?? 0) + 100));
    expect({ file: report.callSite.file, line: report.callSite.line }).toEqual({ file: legacyFile, line: rawLine + 100 });
  });
});
