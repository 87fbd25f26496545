/**
 * The examples, run as a user runs them: plain `node` child processes against the built package
 * (dist/, reached through the package's own name and its "exports"), on the test database.
 * Each rogue report must name the example's own file and the line of its `// @site NAME` marker;
 * approved writes must produce no report.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, inject, it } from 'vitest';

const projectRoot = fileURLToPath(new URL('../', import.meta.url));
const fromRoot = (relative: string): string => fileURLToPath(new URL(relative, new URL('../', import.meta.url)));
const TIMEOUT = 180_000; // tsc in a child process: bounded, but slow on a loaded machine

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function mongodbUri(): string {
  const uri = process.env.MONGODB_URI ?? inject('mongodbUri');
  if (!uri) throw new Error('MONGODB_URI is not set: the vitest global setup starts a server and sets it');
  return uri;
}

/** `node ...args` from the project root, with MONGODB_URI; never rejects, the exit code is asserted. */
function runNode(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      {
        cwd: projectRoot,
        env: { ...process.env, MONGODB_URI: mongodbUri(), ...env },
        timeout: TIMEOUT - 5_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const failure = error as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
        resolve({
          code: failure ? (typeof failure.code === 'number' ? failure.code : null) : 0,
          signal: failure?.signal ?? null,
          stdout,
          stderr,
        });
      },
    );
  });
}

/** Line (1-based) of the `// @site NAME` marker in a file of the project. */
function siteLine(relativeFile: string, name: string): number {
  const lines = readFileSync(fromRoot(relativeFile), 'utf8').split('\n');
  const index = lines.findIndex((line) => line.trimEnd().endsWith(`// @site ${name}`));
  if (index < 0) throw new Error(`no "// @site ${name}" in ${relativeFile}`);
  return index + 1;
}

interface PrintedReport {
  model: string;
  operation: string;
  kind: string;
  callSite: { file: string; line: number; column: number; function?: string };
  location: string;
}

/** The JSON lines an example printed from `onBypass`. */
function printedReports(stdout: string): PrintedReport[] {
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as PrintedReport);
}

const explain = (run: Run): string => `exit ${run.code} ${run.signal ?? ''}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;

beforeAll(() => {
  // `npm test` builds before vitest; the examples import the package by name, which is dist/.
  if (!existsSync(fromRoot('dist/index.js'))) throw new Error('dist/ is missing: run `npm run build` first');
});

describe('examples/minimal-esm', () => {
  it('reports the rogue create at its line and nothing for the approved write', { timeout: TIMEOUT }, async () => {
    const run = await runNode(['examples/minimal-esm/app.mjs']);
    expect(run.code, explain(run)).toBe(0);
    const reports = printedReports(run.stdout);
    expect(reports, explain(run)).toEqual([
      {
        model: 'AccessToken',
        operation: 'create',
        kind: 'create',
        callSite: expect.objectContaining({
          file: fromRoot('examples/minimal-esm/app.mjs'),
          line: siteLine('examples/minimal-esm/app.mjs', 'rogue-create'),
        }),
        location: expect.stringMatching(new RegExp(`^app\\.mjs:${siteLine('examples/minimal-esm/app.mjs', 'rogue-create')}:\\d+$`)),
      },
    ]);
    expect(run.stdout).not.toContain('auth/tokens.mjs');
    // The approved write's own line is a real write site, just never reported.
    expect(siteLine('examples/minimal-esm/auth/tokens.mjs', 'approved-create')).toBeGreaterThan(0);
  });
});

describe('examples/commonjs', () => {
  it('loads the ESM package with require() and reports the rogue update at its line', { timeout: TIMEOUT }, async () => {
    const run = await runNode(['examples/commonjs/app.cjs']);
    expect(run.code, explain(run)).toBe(0);
    expect(run.stderr, 'require(esm) should load the package without an error').not.toMatch(/ERR_REQUIRE_ESM|ERR_REQUIRE_ASYNC_MODULE/);
    const line = siteLine('examples/commonjs/app.cjs', 'rogue-update');
    expect(printedReports(run.stdout), explain(run)).toEqual([
      {
        model: 'AccessToken',
        operation: 'updateOne',
        kind: 'update',
        callSite: expect.objectContaining({ file: fromRoot('examples/commonjs/app.cjs'), line, function: 'main' }),
        location: expect.stringMatching(new RegExp(`^app\\.cjs:${line}:\\d+$`)),
      },
    ]);
    expect(run.stdout).not.toContain('auth/tokens.cjs');
  });
});

describe('examples/typescript', () => {
  it('compiles with its own tsconfig and, with source maps on, reports the .ts file and line', { timeout: TIMEOUT }, async () => {
    const tsc = fromRoot('node_modules/typescript/bin/tsc');
    const build = await runNode([tsc, '-p', 'examples/typescript']);
    expect(build.code, explain(build)).toBe(0);
    expect(existsSync(fromRoot('examples/typescript/dist/app.js.map'))).toBe(true);

    const run = await runNode(['--enable-source-maps', 'examples/typescript/dist/app.js']);
    expect(run.code, explain(run)).toBe(0);
    const line = siteLine('examples/typescript/src/app.ts', 'rogue-delete');
    const reports = printedReports(run.stdout);
    expect(reports, explain(run)).toHaveLength(1);
    const [report] = reports;
    expect(report!.callSite.file.endsWith('src/app.ts')).toBe(true);
    expect(report).toEqual({
      model: 'AccessToken',
      operation: 'deleteMany',
      kind: 'delete',
      callSite: expect.objectContaining({ file: fromRoot('examples/typescript/src/app.ts'), line }),
      location: expect.stringMatching(new RegExp(`^src/app\\.ts:${line}:\\d+$`)),
    });
    expect(run.stdout).not.toContain('auth/tokens');
  });
});

describe('examples/throw-mode', () => {
  it('refuses rogue writes with RogueWriteError, leaves the database unchanged, lets approved writes through', {
    timeout: TIMEOUT,
  }, async () => {
    const fixtures = new URL('fixtures/app/', import.meta.url);
    const url = (relative: string) => JSON.stringify(new URL(relative, fixtures).href);
    // A stand-in for a test file of an app: it runs with the setup preloaded, like a test runner's setupFiles.
    const suite = `
      import mongoose from 'mongoose';
      import { RogueWriteError } from 'mongoose-tripwire';
      import { tokenSchema } from ${url('models.mjs')};
      import { writes as auth } from ${url('auth/writes.mjs')};
      import { writes as legacy } from ${url('legacy/writes.mjs')};

      const connection = await mongoose.createConnection(process.env.MONGODB_URI, { dbName: 'throw_mode_' + process.pid }).asPromise();
      const T = connection.model('AccessToken', tokenSchema());
      await T.init();
      // Seeded through the approved module: a fixture loader writing through the driver is a write
      // too, and is refused unless its file is approved. Reads through the driver are not checked.
      const raw = connection.db.collection(T.collection.collectionName);
      const refusedSeed = await raw.insertOne({ token: 'tok_seed_' + process.pid }).then(
        () => 'written',
        (error) => error instanceof RogueWriteError && error.report.operation,
      );
      let n = 0;
      const token = () => 'tok_throw_' + process.pid + '_' + (++n);
      async function context() {
        const seeded = await auth['Model.create(single)'](T, { token });
        return { token, id: seeded._id, doc: await T.findById(seeded._id), opts: {} };
      }
      const projection = { _id: 1, token: 1, user: 1, scopes: 1 };
      const snapshot = async () => JSON.stringify(await raw.find({}, { projection }).sort({ _id: 1 }).toArray());

      const out = { refusedSeed, approved: [], refused: [] };
      for (const path of ['Model.create', 'Model.updateOne', 'Model.deleteOne']) {
        const c = await context();
        const before = await raw.countDocuments();
        await auth[path](T, c);
        out.approved.push({ path, changed: (await raw.countDocuments()) !== before || (await raw.findOne({ _id: c.id }))?.user !== 'u1' });
      }
      for (const path of ['Model.create', 'new Model().save()', 'Model.updateOne', 'Model.deleteMany']) {
        const c = await context();
        const before = await snapshot();
        let error;
        try { await legacy[path](T, c); } catch (caught) { error = caught; }
        out.refused.push({
          path,
          isRogueWriteError: error instanceof RogueWriteError,
          name: error?.name,
          blocked: error?.report?.blocked,
          file: error?.report?.callSite?.file,
          line: error?.report?.callSite?.line,
          unchanged: (await snapshot()) === before,
        });
      }
      // Dropping the database drops the watched collection: refused too from code that is not approved.
      const refusal = (error) => error instanceof RogueWriteError && error.report.operation;
      out.refusedDrop = await connection.dropDatabase().then(() => 'dropped', refusal);
      await connection.db.command({ dropDatabase: 1 }); // a raw command has no call site to judge (it is only counted)
      await connection.close();
      console.log(JSON.stringify(out));
    `;
    const run = await runNode(
      ['--import', pathToFileURL(fromRoot('examples/throw-mode/setup.mjs')).href, '--input-type=module', '-e', suite],
      {
        TRIPWIRE_ROOT: fileURLToPath(fixtures),
        TRIPWIRE_APPROVED: 'auth/**',
      },
    );
    expect(run.code, explain(run)).toBe(0);
    const out = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as {
      refusedSeed: string;
      refusedDrop: string;
      approved: Array<{ path: string; changed: boolean }>;
      refused: Array<{
        path: string;
        isRogueWriteError: boolean;
        name: string;
        blocked: boolean;
        file: string;
        line: number;
        unchanged: boolean;
      }>;
    };
    expect(out.refusedSeed).toBe('driver.insertOne');
    expect(out.refusedDrop).toBe('dropDatabase');
    expect(out.approved).toEqual([
      { path: 'Model.create', changed: true },
      { path: 'Model.updateOne', changed: true },
      { path: 'Model.deleteOne', changed: true },
    ]);
    const legacyFile = fileURLToPath(new URL('fixtures/app/legacy/writes.mjs', import.meta.url));
    expect(out.refused).toEqual(
      ['Model.create', 'new Model().save()', 'Model.updateOne', 'Model.deleteMany'].map((path) => ({
        path,
        isRogueWriteError: true,
        name: 'RogueWriteError',
        blocked: true,
        file: legacyFile,
        line: siteLine('test/fixtures/app/legacy/writes.mjs', path),
        unchanged: true,
      })),
    );
  });
});

describe('examples/token-service (npm run demo)', () => {
  it('exits 0 and prints one event per rogue call site, the counters and the summary', { timeout: TIMEOUT }, async () => {
    const run = await runNode(['examples/token-service/demo.mjs']);
    expect(run.code, explain(run)).toBe(0);
    expect(run.stdout).toContain('MongoDB from MONGODB_URI');
    const titles = run.stdout.split('\n').filter((line) => line.startsWith('Rogue write: '));
    // Seven rogue call sites, one event each: six legacy logins are one event and five suppressed.
    expect(run.stdout.match(/── EVENT/g) ?? [], explain(run)).toHaveLength(7);
    expect(titles).toEqual([
      'Rogue write: AccessToken.save from legacy/login-handler.mjs:7',
      'Rogue write: AccessToken.driver.insertOne from ops/db-console.mjs:4',
      'Rogue write: AccessToken.findOneAndUpdate from native/refresh.mjs:6',
      'Rogue write: AccessToken.updateMany from admin/update-scopes.mjs:3',
      'Rogue write: AccessToken.collection.deleteMany from legacy/password-reset.mjs:4',
      'Rogue write: AccessToken.driver.updateMany from ops/db-console.mjs:8',
      'Rogue write: AccessToken.deleteMany from jobs/cleanup.mjs:5',
    ]);
    expect(run.stdout).toContain('tripwire.events_suppressed 5');
    expect(run.stdout).toMatch(/^Summary: 12 rogue writes from 7 call sites \(.+\); the migration is not done\.$/m);
    expect(run.stdout).not.toContain('malformed datagrams');
  });
});
