/**
 * Builds the plugin cannot judge. Who decides is read from file paths: a generated file that holds
 * approved or pass-through code (a bundle, or any compiled file) is judged by its own path unless
 * Node maps its positions back to their sources. Run without source maps, every write from it is
 * judged as that one file, so the auth module's writes are reported as rogue while nothing else looks
 * wrong. Found by reading the files that are running (the stack of the code that registers the plugin
 * or calls `verify()`): a source map naming approved sources, or, with no map, a bundler's module
 * markers naming them (esbuild's `// src/auth/tokens.ts`, webpack's `./src/auth/tokens.ts`).
 */
import { findSourceMap } from 'node:module';
import { relative, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse as parseStackString } from 'stacktrace-parser';
import type { ApprovedPattern } from '../types.js';
import { readRegularFile } from '../util/files.js';
import { firstOf } from '../util/list.js';
import { memoize } from '../util/memo.js';
import { displayPath } from '../util/paths.js';
import { isInternalFile, NODE_MODULES, sourcesOfMap, toFilePath, walkMatches } from './approval.js';

// A bundle is read whole once at boot; a file larger than this is left unchecked.
const MAX_BUILD_BYTES = 64 * 1024 * 1024;
// Owned files looked for in a bundle's text: enough to find one.
const MAX_OWNED_FILES = 2_000;
const MAX_FILES_CHECKED = 5;

/** The files the `approved` and `passThrough` paths name under `root` (functions name no file). */
export function ownedFiles(patterns: readonly ApprovedPattern[], root: string): Set<string> {
  const owned = new Set<string>();
  for (const pattern of patterns) {
    if (typeof pattern === 'function') continue;
    walkMatches(pattern, root, (path) => {
      owned.add(path);
      return owned.size < MAX_OWNED_FILES;
    });
    if (owned.size >= MAX_OWNED_FILES) break;
  }
  return owned;
}

/** The application files in a stack string, innermost first (no package, Node or plugin file). */
export function applicationFilesIn(stack: string): string[] {
  const files: string[] = [];
  for (const frame of parseStackString(stack)) {
    if (!frame.file) continue;
    const path = toFilePath(frame.file);
    if (path.startsWith('node:') || !path.startsWith('/') || NODE_MODULES.test(path) || isInternalFile(path)) continue;
    if (!files.includes(path)) files.push(path);
    if (files.length >= MAX_FILES_CHECKED) break;
  }
  return files;
}

/**
 * One sentence per running file that holds owned code it cannot be judged by: the file, the sources
 * it holds and the remedy. None when source maps are on and the file's map is loaded.
 */
export function unjudgedBuilds(files: readonly string[], owned: ReadonlySet<string>, root: string): string[] {
  const problems: string[] = [];
  if (owned.size === 0) return problems;
  for (const file of files) {
    const problem = unjudgedBuild(file, owned, root);
    if (problem) problems.push(problem);
  }
  return problems;
}

function unjudgedBuild(file: string, owned: ReadonlySet<string>, root: string): string | undefined {
  if (owned.has(file)) return undefined; // approved (or passed through) as itself: compiled files named by their own path
  try {
    if (process.sourceMapsEnabled && findSourceMap(file)) return undefined; // judged position by position
  } catch {
    /* no map loaded: read the file */
  }
  const held = heldSources(file, root);
  if (held === null) return undefined;
  const shown = displayPath(file, root);
  const names = (paths: string[]): string => firstOf(paths.map((path) => displayPath(path, root)));
  if ('sources' in held) {
    const owns = held.sources.filter((source) => owned.has(source));
    if (owns.length === 0) return undefined;
    return (
      `${shown} is built from approved or pass-through sources (${names(owns)}) and carries a source map, but source maps are not ` +
      `enabled: its writes are judged as ${shown} itself, so approved writes are reported as rogue; run node with --enable-source-maps`
    );
  }
  const byRelative = new Map([...owned].map((path) => [relative(root, path).split(sep).join('/'), path] as const));
  const marked = held.marked.map((path) => ownedSuffix(path, byRelative)).filter((path): path is string => path !== undefined);
  if (marked.length === 0) return undefined;
  return (
    `${shown} is a bundle of approved or pass-through sources (${names(marked)}) without a source map: its writes are judged as ` +
    `${shown} itself, so approved writes are reported as rogue; build it with source maps (esbuild --sourcemap, webpack devtool: ` +
    `'source-map') and run node with --enable-source-maps`
  );
}

/**
 * What a running file says of the sources it holds: its source map's sources, else the modules a
 * bundler marked in it; null when it cannot be read. Read once per file (a bundle can be megabytes,
 * and the registration and every `verify()` look at it).
 */
const heldSources = (file: string, root: string): { sources: string[] } | { marked: string[] } | null => readHeld(`${root}\0${file}`);

const readHeld = memoize((key): { sources: string[] } | { marked: string[] } | null => {
  const at = key.indexOf('\0');
  const root = key.slice(0, at);
  const file = key.slice(at + 1);
  let text: string;
  try {
    const read = readRegularFile(file, MAX_BUILD_BYTES);
    if (read.kind !== 'file' || !read.data) return null;
    text = read.data.toString('utf8');
  } catch {
    return null;
  }
  const sources = mapSources(text, file, root);
  return sources ? { sources } : { marked: markedModules(text) };
}, 1_000);

// esbuild puts `// src/auth/tokens.ts` on its own line before each module (relative to where it ran);
// webpack (development, or devtool: false) names a module `/***/ "./src/auth/tokens.ts"` and
// `!*** ./src/auth/tokens.ts ***!`. A bare path in a string is no marker: a file importing another names it too.
const MODULE_MARKERS = [/^\/\/ (\S+\.[cm]?[jt]sx?)$/gm, /\/\*\*\*\/ "\.\/([^"\n]+)"/g, /!\*\*\* \.\/(\S+) \*\*\*!/g];

/** The module paths a bundle's markers name. */
function markedModules(text: string): string[] {
  const marked = new Set<string>();
  for (const marker of MODULE_MARKERS) for (const match of text.matchAll(marker)) marked.add(match[1]!);
  return [...marked];
}

/** The owned file a marked path names: the same path relative to root, or one ending in it. */
function ownedSuffix(marked: string, byRelative: ReadonlyMap<string, string>): string | undefined {
  let rest = marked;
  for (;;) {
    const owned = byRelative.get(rest);
    if (owned) return owned;
    const slash = rest.indexOf('/');
    if (slash < 0) return undefined;
    rest = rest.slice(slash + 1);
  }
}

const SOURCE_MAPPING_URL = /\/[/*][#@]\s*sourceMappingURL=(\S+?)\s*(?:\*\/)?\s*$/;

/** The sources a generated file's own source map names (inline or beside it); undefined when it has none. */
function mapSources(text: string, file: string, root: string): string[] | undefined {
  const tail = text.slice(text.lastIndexOf('sourceMappingURL=') - 4);
  const url = SOURCE_MAPPING_URL.exec(tail)?.[1];
  if (!url) return undefined;
  try {
    const payload = url.startsWith('data:')
      ? Buffer.from(url.slice(url.indexOf(',') + 1), url.includes(';base64,') ? 'base64' : 'utf8').toString('utf8')
      : readMapFile(new URL(url, pathToFileURL(file)));
    if (payload === undefined) return [];
    const mapUrl = url.startsWith('data:') ? pathToFileURL(file) : new URL(url, pathToFileURL(file));
    return sourcesOfMap(JSON.parse(payload) as { sources?: unknown; sourceRoot?: unknown }, mapUrl, root);
  } catch {
    return [];
  }
}

function readMapFile(url: URL): string | undefined {
  if (url.protocol !== 'file:') return undefined;
  const read = readRegularFile(toFilePath(url.href), MAX_BUILD_BYTES);
  return read.kind === 'file' && read.data ? read.data.toString('utf8') : undefined;
}
