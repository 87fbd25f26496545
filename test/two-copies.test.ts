/**
 * Two copies of the package in one process (the ES module and the CommonJS copy in dist/cjs, loaded
 * in either order) are one plugin: the same functions and error classes, so one wrapper per Mongoose
 * method and one set of registrations. Run as an app would, in a child process against dist/.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { VERSION } from '../src/version.js';
import { explainRun, projectRoot, runScript } from './support/child-script.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'tripwire-two-copies-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CJS_COPY = JSON.stringify(join(projectRoot, 'dist/cjs/index.js'));

// PRELUDE imports the ES module as `tw`: `cjs` is the other copy, loaded after it.
const checks = `
  const cjs = createRequire(import.meta.url)(${CJS_COPY});
  const names = ['tripwire', 'verify', 'close', 'flush', 'RogueWriteError', 'TripwireConfigError', 'TripwireFault'];
  const same = names.filter((name) => tw[name] === cjs[name]);
  const schema = new mongoose.Schema({ token: String });
  // One options object through both copies: one plugin, registered once (two would be refused).
  const options = { approved: ['src/auth/**'], statsd: false, onBypass: () => {} };
  schema.plugin(cjs.tripwire, options);
  schema.plugin(tw.tripwire, options);
  mongoose.model('AccessToken', schema);
  console.log(JSON.stringify({ same, registrations: tw.verify().registrations.length, seenByOther: cjs.verify().registrations.length }));
  await tw.close();
`;

describe('two copies of the package in one process', () => {
  it('the CommonJS copy loaded after the ES module answers with the ES module’s API', async () => {
    const run = await runScript(join(dir, 'esm-first.mjs'), checks);
    expect(run.code, explainRun(run)).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({
      same: ['tripwire', 'verify', 'close', 'flush', 'RogueWriteError', 'TripwireConfigError', 'TripwireFault'],
      registrations: 1,
      seenByOther: 1,
    });
  });

  it('the ES module loaded after the CommonJS copy answers with the CommonJS copy’s API', async () => {
    const script = join(dir, 'cjs-first.cjs');
    writeFileSync(
      script,
      `const first = require(${CJS_COPY});
      import(${JSON.stringify(pathToFileURL(join(projectRoot, 'dist/index.js')).href)}).then((esm) => {
        console.log(JSON.stringify({ tripwire: esm.tripwire === first.tripwire, error: esm.RogueWriteError === first.RogueWriteError }));
      });
`,
    );
    const { stdout } = await run(process.execPath, [script], { timeout: 20_000 });
    expect(JSON.parse(stdout)).toEqual({ tripwire: true, error: true });
  });

  it('the version the copies share under is the package’s', () => {
    expect(VERSION).toBe(JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')).version);
  });
});
