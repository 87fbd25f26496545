/**
 * Who decides: the innermost application frame, so an auth middleware or helper further up the stack
 * approves nothing below it. A real Koa app (`await next()`), a real Express app (synchronous
 * `next()`), callbacks, listeners, timers, a pass-through repository and a reused query, run by
 * plain `node` against the built package (test/fixtures/who-decides/app.mjs).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, inject, it } from 'vitest';

const appDir = fileURLToPath(new URL('./fixtures/who-decides/', import.meta.url));
type Reported = Array<{ operation: string; location: string; stack: string[] }>;
let results: Record<string, Reported>;

/** `file:line` of the `// @site NAME` marker in a fixture file. */
function site(file: string, name: string): string {
  const lines = readFileSync(`${appDir}${file}`, 'utf8').split('\n');
  const index = lines.findIndex((line) => line.trimEnd().endsWith(`// @site ${name}`));
  if (index < 0) throw new Error(`no @site ${name} in ${file}`);
  return `${file}:${index + 1}`;
}
const at = (reported: Reported) => reported.map((r) => `${r.operation} ${r.location.replace(/:\d+$/, '')}`);

beforeAll(async () => {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(
      process.execPath,
      ['app.mjs'],
      { cwd: appDir, env: { ...process.env, MONGODB_URI: inject('mongodbUri') }, timeout: 60_000 },
      (error, out, err) => (error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out)),
    );
  });
  results = JSON.parse(stdout.trim().split('\n').at(-1)!) as typeof results;
}, 90_000);

describe('the innermost application frame decides', () => {
  it('a Koa route behind an auth middleware that awaits next() is rogue, with the middleware in its trace', () => {
    const [report] = results['koa route behind await next()']!;
    expect(at([report!])).toEqual([`updateMany ${site('legacy/routes.mjs', 'legacy.koaRevoke')}`]);
    expect(report!.stack).toContain('auth/index.mjs:10'); // koaAuth's `await next()`: below, not deciding
  });

  it('an Express handler writing before its first await, with the auth middleware still on the synchronous stack, is rogue', () => {
    expect(at(results['express handler before its first await']!)).toEqual([`create ${site('legacy/routes.mjs', 'legacy.expressIssue')}`]);
  });

  it('a callback handed to an approved helper is judged as the callback', () => {
    expect(at(results['callback handed to an approved helper']!)).toEqual([
      `updateMany ${site('legacy/callbacks.mjs', 'legacy.callback')}`,
    ]);
  });

  it('a listener of an event the auth module emits is rogue; the approved login itself is not', () => {
    expect(at(results['approved login (and the listener it triggers)']!)).toEqual([
      `updateOne ${site('legacy/callbacks.mjs', 'legacy.listener')}`,
    ]);
  });

  it('a timer job started by an app hook inside an approved create is judged as the job', () => {
    expect(at(results['timer job started by an app hook inside an approved create']!)).toEqual([
      `updateOne ${site('legacy/callbacks.mjs', 'legacy.listener')}`,
      `deleteMany ${site('jobs/cleanup.mjs', 'jobs.cleanup')}`,
    ]);
  });

  it('pass-through code hands the decision to its caller: the report names the caller, the trace keeps the repository', () => {
    const [report] = results['koa route through the pass-through repository']!;
    expect(at([report!])).toEqual([`create ${site('legacy/routes.mjs', 'legacy.koaIssue')}`]);
    expect(report!.stack[0]).toBe(site('models/repo.mjs', 'repo.issue'));
  });

  it('rogue code reusing a query approved code built is judged at its own call', () => {
    expect(at(results['rogue reuse of an approved query']!)).toEqual([`updateMany ${site('legacy/callbacks.mjs', 'legacy.reuse')}`]);
  });

  it('one document saved by two callers gets two verdicts', () => {
    expect(at(results['one document saved by two callers']!)).toEqual([`save ${site('legacy/callbacks.mjs', 'legacy.saveToo')}`]);
  });
});
