/**
 * Which files are approved to write, decided exactly.
 *
 * The original tool tested `path.include?('auth_module')`, which approves `auth_module_old.rb`
 * and `node_modules/mongodb/lib/cmap/auth/` alike. Here a glob is matched against the whole path
 * relative to `root`, an absolute path is a file or a directory boundary, a RegExp sees the whole
 * absolute path: nothing is a substring test unless the user writes one.
 */
import { readdirSync, statSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { createRequire, findSourceMap } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import picomatch from 'picomatch';
import { memoize } from './memo.js';
import type { ApprovedPattern } from './options.js';
import type { Frame } from './capture.js';
import { TripwireConfigError } from './options.js';

export interface Approval {
  /** Is this V8 file name (path or `file://` URL) approved code? Cached per file name. */
  isApprovedFile(fileName: string): boolean;
  /** True when some pattern is a function, which must see every frame. */
  readonly needsFrames: boolean;
  isApprovedFrame(frame: Frame): boolean;
  /** Frames that are never shown: Node internals, Mongoose and its driver, this plugin. */
  isInternalFile(path: string): boolean;
}

// The plugin's own folder (src/ under vitest, dist/ when installed): its frames are never approved or shown.
const OWN_DIR = dirname(fileURLToPath(import.meta.url)) + sep;

// Mongoose and the libraries it calls through: frames here are the write machinery, not its caller.
const WRITE_MACHINERY = /[\\/]node_modules[\\/](?:mongoose[\\/](?:lib[\\/]|index\.js$)|(?:mongodb|kareem|mquery|bson|mpath|sift|@mongodb-js[\\/][^\\/]+)[\\/])/;

const urlToPath = memoize(fileURLToPath, 10_000);

/** V8 reports ESM files as `file://` URLs and CommonJS files as paths; patterns see paths. */
export function toFilePath(fileName: string): string {
  return fileName.startsWith('file://') ? urlToPath(fileName) : fileName;
}

// Mongoose (and the driver it resolves) wherever it is loaded from: a vendored, bundled or symlinked
// copy is not under node_modules/mongoose. Learned from the stack when Mongoose compiles a model.
const machineryDirs: string[] = [];
let mongooseDirs: string[] = [];

/** The folder holding the package that `file` belongs to (the nearest one with a package.json). */
function packageDirOf(file: string): string | undefined {
  for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(`${dir}${sep}package.json`)) return dir + sep;
  }
  return undefined;
}

/**
 * Records where this Mongoose lives, from one of its own files (`lib/model.js`), and the driver and
 * helpers it resolves from there. Idempotent; never throws.
 */
export function learnMongooseFrom(mongooseFile: string): void {
  const lib = dirname(mongooseFile) + sep;
  if (mongooseDirs.includes(lib)) return;
  mongooseDirs = [...mongooseDirs, lib];
  machineryDirs.push(lib);
  const resolveFrom = createRequire(mongooseFile);
  for (const name of ['mongodb', 'kareem', 'mquery', 'bson', 'mpath', 'sift']) {
    try {
      const dir = packageDirOf(resolveFrom.resolve(name));
      if (dir && !machineryDirs.includes(dir)) machineryDirs.push(dir);
    } catch { /* not a dependency of this Mongoose version */ }
  }
}

/** True for a file of Mongoose itself (not the driver): its calls are Mongoose's own. */
export function isMongooseFile(path: string): boolean {
  for (const dir of mongooseDirs) if (path.startsWith(dir)) return true;
  return MONGOOSE_FILE.test(path);
}

// Mongoose's code is its lib/ folder (and index.js); its own tests, in the same package, are an app.
const MONGOOSE_FILE = /[\\/]node_modules[\\/]mongoose[\\/](?:lib[\\/]|index\.js$)/;

export function isInternalFile(path: string): boolean {
  if (path.startsWith('node:') || path.startsWith('internal/') || path.startsWith(OWN_DIR) || WRITE_MACHINERY.test(path)) return true;
  for (const dir of machineryDirs) if (path.startsWith(dir)) return true;
  return false;
}

const toPosix = sep === '/' ? (p: string) => p : (p: string) => p.split(sep).join('/');

type PathTest = (absolutePath: string) => boolean;

function isDirectory(path: string): boolean | undefined {
  try {
    return statSync(path).isDirectory();
  } catch {
    return undefined;
  }
}

function compileString(pattern: string, root: string): PathTest {
  const options = { dot: true };
  if (isAbsolute(pattern)) {
    if (picomatch.scan(pattern).isGlob) {
      const matches = picomatch(toPosix(pattern), options);
      return (path) => matches(toPosix(path));
    }
    const target = resolve(pattern);
    const directory = isDirectory(target);
    const prefix = target.endsWith(sep) ? target : target + sep;
    if (directory === true) return (path) => path.startsWith(prefix);
    if (directory === false) return (path) => path === target;
    // Not there at boot: a file or a folder, both exactly. verify() warns about it.
    return (path) => path === target || path.startsWith(prefix);
  }
  const matches = picomatch(pattern.replace(/^\.\//, ''), options);
  return (path) => {
    const rel = toPosix(relative(root, path));
    if (rel === '' || rel.startsWith('../') || isAbsolute(rel)) return false;
    return matches(rel);
  };
}

function compileRegExp(pattern: RegExp): PathTest {
  // A global or sticky RegExp keeps `lastIndex` between calls and would answer differently each time.
  const stateless = pattern.global || pattern.sticky ? new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, '')) : pattern;
  return (path) => stateless.test(toPosix(path));
}

// Files under root that no approval list should cover: a pattern matching them all approves the
// whole application, so no write could ever be reported.
const UNRELATED_PATHS = ['z9-unrelated/deep/file.mjs', 'node_modules/x9-lib/index.js', '.hidden/y.ts', 'a.js'];

function approvesEverything(test: PathTest, root: string): boolean {
  return UNRELATED_PATHS.every((path) => test(toPosix(resolve(root, path))));
}

/** The original sources of a generated file, from its source map (none when it has no map). */
function sourcesOf(fileName: string, path: string): string[] {
  try {
    const map = findSourceMap(fileName) ?? findSourceMap(path);
    const payload = map?.payload as { sources?: unknown; sourceRoot?: unknown } | undefined;
    if (!payload || !Array.isArray(payload.sources)) return [];
    const base = pathToFileURL(path);
    const root = typeof payload.sourceRoot === 'string' && payload.sourceRoot !== '' ? new URL(payload.sourceRoot.replace(/\/?$/, '/'), base) : base;
    return payload.sources.filter((source): source is string => typeof source === 'string').map((source) => toFilePath(new URL(source, root).href));
  } catch {
    return [];
  }
}

export function compileApproval(patterns: readonly ApprovedPattern[], root: string): Approval {
  const pathTests: PathTest[] = [];
  const frameTests: Array<(frame: Frame) => boolean> = [];
  for (const [index, pattern] of patterns.entries()) {
    if (typeof pattern === 'function') {
      frameTests.push(pattern);
      continue;
    }
    const test = typeof pattern === 'string' ? compileString(pattern, root) : compileRegExp(pattern);
    if (approvesEverything(test, root)) {
      throw new TripwireConfigError(
        `mongoose-tripwire: option "approved[${index}]" (${String(pattern)}) approves every file, so no write could ever be reported; name the auth module's files, e.g. 'src/auth/**'`,
      );
    }
    pathTests.push(test);
  }

  const approvedPath = (path: string): boolean => {
    for (const test of pathTests) if (test(path)) return true;
    return false;
  };
  const decide = (fileName: string): boolean => {
    const path = toFilePath(fileName);
    if (isInternalFile(path)) return false;
    if (approvedPath(path)) return true;
    // A compiled app run with source maps: `approved: ['src/auth/**']` means the sources, so a
    // generated file is approved when every source it was built from is.
    const sources = process.sourceMapsEnabled ? sourcesOf(fileName, path) : [];
    return sources.length > 0 && sources.every(approvedPath);
  };

  return {
    needsFrames: frameTests.length > 0,
    isApprovedFile: memoize(decide, 50_000),
    isApprovedFrame(frame) {
      if (isInternalFile(frame.file)) return false;
      for (const test of frameTests) if (test(frame) === true) return true;
      return false;
    },
    isInternalFile,
  };
}

const MAX_FILES_SCANNED = 50_000;

/**
 * How many files under `root` a pattern approves right now: a pattern that matches none is a typo,
 * a moved folder or a wrong `root`, and would leave every write reported as rogue. Only the static
 * base of a glob is walked, so `src/auth/**` reads `src/auth` and nothing else. Functions cannot be
 * checked (`null`).
 */
export function countApprovedFiles(pattern: ApprovedPattern, root: string): number | null {
  if (typeof pattern === 'function') return null;
  const test = typeof pattern === 'string' ? compileString(pattern, root) : compileRegExp(pattern);
  let start = root;
  if (typeof pattern === 'string') {
    const base = picomatch.scan(pattern.replace(/^\.\//, '')).base;
    start = isAbsolute(pattern) ? base || pattern : resolve(root, base);
    const kind = isDirectory(start);
    if (kind === undefined) return 0;
    if (kind === false) return test(start) ? 1 : 0;
  }
  let count = 0;
  let scanned = 0;
  const walk = (dir: string, insideDependencies: boolean): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (++scanned > MAX_FILES_SCANNED) return;
      const path = `${dir}${sep}${entry.name}`;
      if (entry.isDirectory()) {
        // Dependencies are walked only when the pattern itself starts inside them.
        if (entry.name === '.git' || (entry.name === 'node_modules' && !insideDependencies)) continue;
        walk(path, insideDependencies);
      } else if (test(path)) {
        count++;
      }
    }
  };
  walk(start, start.includes(`${sep}node_modules`));
  return count;
}
