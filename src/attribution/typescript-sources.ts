/**
 * Are the approved files what runs? `approved: ['src/auth/**']` in a TypeScript app matches the
 * `.ts` sources; when the process runs the compiled `dist/` without source maps, the stacks name
 * `dist/auth/*.js`, no frame is ever approved and every approved write is reported as rogue.
 * `verify()` says so, from two things it can know at boot:
 *
 *   - which files each pattern matches: a pattern whose runnable matches are all TypeScript sources
 *     (`.ts`, `.tsx`, `.mts`, `.cts`, declarations included), none `.js`/`.mjs`/`.cjs`/`.jsx`;
 *   - whether the stacks this process produces can name TypeScript files at all: any of source maps
 *     on (`--enable-source-maps`, `NODE_OPTIONS`, `process.setSourceMapsEnabled`; tsx turns them on),
 *     a require hook for `.ts` (ts-node,
 *     @swc-node/register, esbuild-register...), a TypeScript loader in the node flags, a `.ts` entry
 *     point, or a `.ts` frame on the stack of the code calling `verify()` (vitest, jest with ts-jest).
 *
 * It warns only when a pattern matches TypeScript sources only, nothing says TypeScript runs, and no
 * other pattern approves a compiled file of the same name (`['src/auth/**', 'dist/auth/**']` is
 * fine). With a function among the patterns it says nothing: a function may approve any frame.
 */
import { createRequire } from 'node:module';
import { basename } from 'node:path';
import type { ApprovedPattern } from '../types.js';
import { PACKAGE_CODE_DIR } from '../util/paths.js';
import { walkMatches } from './approval.js';

const TYPESCRIPT_SOURCE = /(?:\.d)?\.(?:[cm]?ts|tsx)$/;
const RUNNABLE = /\.(?:[cm]?js|jsx)$/;
const TYPESCRIPT_FRAME = /\.(?:[cm]?ts|tsx):\d+:\d+\)?\s*$/m;
// Loaders and flags with which Node runs .ts sources.
const LOADERS = [
  'tsx',
  'ts-node',
  '@swc-node\\/register',
  '@swc\\/register',
  'esbuild-register',
  '@babel\\/register',
  'jiti',
  '--experimental-strip-types',
  '--experimental-transform-types',
];
const TYPESCRIPT_LOADER = new RegExp(`(?:^|[\\s=/@])(?:${LOADERS.join('|')})(?:[\\s/=]|$)`);

/**
 * Why this process may run TypeScript (stack frames can name `.ts` files), or undefined when
 * nothing says it does. `stack` is the stack of the code calling `verify()`.
 */
export function typescriptEvidence(stack: string): string | undefined {
  if (process.sourceMapsEnabled) return 'source maps are enabled';
  // Not `process.features.typescript`: Node 22.18+ sets it by default, which says Node *could* strip
  // types, not that this app runs its .ts files (a compiled dist/ still runs JavaScript). A .ts entry
  // point or a .ts frame, below, is what says so.
  try {
    const extensions = createRequire(import.meta.url).extensions as Record<string, unknown>;
    if (['.ts', '.tsx', '.mts', '.cts'].some((ext) => ext in extensions)) return 'a require hook for .ts files is registered';
  } catch {
    /* no CommonJS loader: nothing to read */
  }
  const flags = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].join(' ');
  const loader = TYPESCRIPT_LOADER.exec(flags);
  if (loader) return `a TypeScript loader in the node flags (${loader[0].trim()})`;
  if (process.argv[1] && TYPESCRIPT_SOURCE.test(process.argv[1])) return 'the entry point is a TypeScript file';
  const appFrames = stack
    .split('\n')
    .filter((line) => !line.includes(PACKAGE_CODE_DIR))
    .join('\n');
  if (TYPESCRIPT_FRAME.test(appFrames)) return 'the code calling verify() runs as TypeScript';
  return undefined;
}

/** The stack of the caller, whatever the app did to `Error` (a limit of 0, a frozen `Error`). */
export function callerStack(): string {
  const limit = Error.stackTraceLimit;
  try {
    Error.stackTraceLimit = 100;
  } catch {
    /* frozen */
  }
  try {
    return String(new Error().stack ?? '');
  } catch {
    return '';
  } finally {
    try {
      Error.stackTraceLimit = limit;
    } catch {
      /* frozen */
    }
  }
}

interface Matched {
  pattern: string;
  /** TypeScript sources matched, by name without extension. */
  typescript: Set<string>;
  /** Runnable JavaScript matched, by name without extension. */
  runnable: Set<string>;
  typescriptFiles: number;
}

const stem = (file: string): string => basename(file).replace(TYPESCRIPT_SOURCE, '').replace(RUNNABLE, '');

/** Which TypeScript and JavaScript files under `root` a pattern approves now (the walk `countApprovedFiles` uses). */
function matchedFiles(pattern: string | RegExp, root: string): Matched {
  const matched: Matched = { pattern: String(pattern), typescript: new Set(), runnable: new Set(), typescriptFiles: 0 };
  walkMatches(pattern, root, (path) => {
    if (TYPESCRIPT_SOURCE.test(path)) {
      matched.typescript.add(stem(path));
      matched.typescriptFiles += 1;
    } else if (RUNNABLE.test(path)) {
      matched.runnable.add(stem(path));
    }
  });
  return matched;
}

/**
 * One problem per `approved` pattern whose files are TypeScript sources that this process does not
 * run (see the top of this file); none when `evidence` says TypeScript runs.
 */
export function sourcesNotRun(approved: readonly ApprovedPattern[], root: string, evidence: string | undefined): string[] {
  if (evidence !== undefined || approved.some((pattern) => typeof pattern === 'function')) return [];
  const all = approved.map((pattern) => matchedFiles(pattern as string | RegExp, root));
  const problems: string[] = [];
  for (const entry of all) {
    if (entry.typescriptFiles === 0 || entry.runnable.size > 0) continue;
    const compiledElsewhere = all.some((other) => other !== entry && [...entry.typescript].some((name) => other.runnable.has(name)));
    if (compiledElsewhere) continue;
    problems.push(
      `approved pattern ${entry.pattern} matches only TypeScript sources (${entry.typescriptFiles} ` +
        `file${entry.typescriptFiles === 1 ? '' : 's'}), ` +
        'but nothing says this process runs TypeScript (no source maps, no TypeScript loader or require hook, no .ts frame calling ' +
        'verify()): ' +
        'the compiled files run, so every write from them is reported as rogue. Run with node --enable-source-maps (compiled with source ' +
        'maps), ' +
        'or approve the compiled files too (e.g. dist/auth/**)',
    );
  }
  return problems;
}
