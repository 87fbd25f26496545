/**
 * Runs a script as an app would, in its own Node process against the built package, with a timeout:
 * a case that could block (a FIFO, /dev/zero) fails the test when it regresses instead of hanging the
 * suite.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { inject } from 'vitest';

export const projectRoot = fileURLToPath(new URL('../../', import.meta.url));
export const distIndex = pathToFileURL(join(projectRoot, 'dist', 'index.js')).href;
export const distFile = (path: string): string => pathToFileURL(join(projectRoot, 'dist', path)).href;

export interface ChildRun {
  code: number | null;
  /** Killed at the timeout: the case blocked. */
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

export function mongodbUri(): string {
  const uri = process.env.MONGODB_URI ?? inject('mongodbUri');
  if (!uri) throw new Error('MONGODB_URI is not set: the vitest global setup starts a server and sets it');
  return uri;
}

/** The lines every script starts with: `mongoose` (the project's) and the built package as `tw`. */
export const PRELUDE = [
  "import { createRequire } from 'node:module';",
  `const mongoose = createRequire(${JSON.stringify(join(projectRoot, 'package.json'))})('mongoose');`,
  `const tw = await import(${JSON.stringify(distIndex)});`,
].join('\n');

/** Writes `body` (after PRELUDE) to `file` and runs it with `node`, killed after `timeoutMs`. */
export function runScript(file: string, body: string, env: Record<string, string> = {}, timeoutMs = 20_000): Promise<ChildRun> {
  writeFileSync(file, `${PRELUDE}\n${body}\n`);
  const base = { ...process.env };
  delete base.TRIPWIRE_RECORD;
  delete base.NODE_OPTIONS; // vitest's loader options are not the app's
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [file],
      { env: { ...base, MONGODB_URI: mongodbUri(), ...env }, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const failure = error as (Error & { code?: number | string; killed?: boolean }) | null;
        resolve({
          code: failure ? (typeof failure.code === 'number' ? failure.code : null) : 0,
          timedOut: failure?.killed === true,
          stdout,
          stderr,
        });
      },
    );
  });
}

export const explainRun = (run: ChildRun): string =>
  `exit ${run.code}${run.timedOut ? ' (killed at the timeout: it blocked)' : ''}\n` +
  `--- stdout\n${run.stdout.slice(0, 4000)}\n--- stderr\n${run.stderr.slice(0, 4000)}`;
