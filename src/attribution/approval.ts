/**
 * Which code decides a write, and whether it is approved, decided exactly.
 *
 * Every file a frame can be in is one of: internal (Node, Mongoose and its driver, this plugin:
 * the write machinery), pass-through (code declared `passThrough`, and packages in node_modules
 * unless approved: generic code that writes for whoever calls it), approved, or application code.
 * The innermost frame that is neither internal nor pass-through decides (call-site.ts).
 *
 * A substring test such as `path.include?('auth_module')` approves `auth_module_old.rb`
 * and `node_modules/mongodb/lib/cmap/auth/` alike. Here a glob is matched against the whole path
 * relative to `root`, an absolute path is a file or a directory boundary, a RegExp sees the whole
 * absolute path: nothing is a substring test unless the user writes one.
 */
import { type Dirent, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire, findSourceMap } from 'node:module';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import picomatch from 'picomatch';
import { TripwireConfigError } from '../errors.js';
import type { ApprovedPattern, Frame } from '../types.js';
import { firstOf } from '../util/list.js';
import { memoize } from '../util/memo.js';
import { PACKAGE_CODE_DIR } from '../util/paths.js';
import { clip } from '../util/text.js';

/** What a file is to the rule of who decides. */
export type FileKind = 'internal' | 'passThrough' | 'approved' | 'application';

export interface Approval {
  /**
   * What this V8 file name (path or `file://` URL) is, cached per file name; `byPosition` for a
   * generated file (a bundle) whose source map names sources of several kinds: ask `kindAt`.
   */
  kindOf(fileName: string): FileKind | 'byPosition';
  /** What the original source of this position of a generated file is (1-based line and column). */
  kindAt(fileName: string, line: number, column: number): FileKind;
  /** True when some `approved` or `passThrough` pattern is a function, which must see each frame. */
  readonly needsFrames: boolean;
  /** For a frame in an application file: what the function patterns make of it (a throwing pattern means no). */
  frameKind(frame: Frame): FileKind;
  /** Frames that are never shown: Node internals, Mongoose and its driver, this plugin. */
  isInternalFile(path: string): boolean;
  /** A source map's name for an original source, as a path (`sourcePath` against this registration's root). */
  sourcePath(source: string): string;
  /** How many of the application files under `root` the `approved` paths approve, at registration. */
  readonly breadth: ApprovalBreadth;
}

/** The application's own code files under `root` (node_modules excluded), and how many `approved` approves. */
export interface ApprovalBreadth {
  files: number;
  approved: number;
  /** The walk stopped at MAX_FILES_SCANNED entries: the counts are of the part walked. */
  truncated: boolean;
}

export const NODE_MODULES = /[\\/]node_modules[\\/]/;

// Mongoose and the libraries it calls through: frames here are the write machinery, not its caller.
const WRITE_MACHINERY =
  /[\\/]node_modules[\\/](?:mongoose[\\/](?:lib[\\/]|index\.js$)|(?:mongodb|kareem|mquery|bson|mpath|sift|@mongodb-js[\\/][^\\/]+)[\\/])/;

const urlToPath = memoize(fileURLToPath, 10_000);

/** V8 reports ESM files as `file://` URLs and CommonJS files as paths; patterns see paths. */
export function toFilePath(fileName: string): string {
  return fileName.startsWith('file://') ? urlToPath(fileName) : fileName;
}

// webpack names an original source `webpack://<namespace>/<resource path>?<loaders>` (its default
// devtoolModuleFilenameTemplate; the namespace is the package name, or empty): the resource path is
// relative to webpack's context, the project's folder unless configured otherwise.
const WEBPACK_SOURCE = /^webpack:\/\/[^/]*\/([^?]*)/;

/**
 * A source map's name for an original source, as a path patterns can match: `file://` URLs and paths
 * as they are; webpack's `webpack://` names resolved against `root` (the app's folder, where webpack
 * runs by default), so `approved: ['src/auth/**']` means the same files bundled or not.
 */
export function sourcePath(source: string, root: string): string {
  const webpack = WEBPACK_SOURCE.exec(source);
  if (!webpack) return toFilePath(source);
  const resource = decodeURIComponent(webpack[1]!);
  return isAbsolute(resource) ? resource : resolve(root, resource);
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
  if (mongooseDirs.includes(lib) || mongooseBundledInto === mongooseFile) return;
  // Bundled into an app's file, Mongoose's folder is the app's: learning it would make the app Mongoose.
  if (!isMongoosePackage(packageDirOf(mongooseFile))) {
    mongooseBundledInto = mongooseFile;
    return;
  }
  mongooseDirs = [...mongooseDirs, lib];
  machineryDirs.push(lib);
  const resolveFrom = createRequire(mongooseFile);
  for (const name of ['mongodb', 'kareem', 'mquery', 'bson', 'mpath', 'sift']) {
    try {
      const dir = packageDirOf(resolveFrom.resolve(name));
      if (dir && !machineryDirs.includes(dir)) machineryDirs.push(dir);
    } catch {
      /* not a dependency of this Mongoose version */
    }
  }
}

let mongooseBundledInto: string | undefined;

/** The app file Mongoose was bundled into, when it was: its frames cannot be told from the app's by path. */
export function mongooseBundle(): string | undefined {
  return mongooseBundledInto;
}

function isMongoosePackage(dir: string | undefined): boolean {
  try {
    return dir !== undefined && (JSON.parse(readFileSync(`${dir}package.json`, 'utf8')) as { name?: unknown }).name === 'mongoose';
  } catch {
    return false;
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
  if (path.startsWith('node:') || path.startsWith('internal/') || path.startsWith(PACKAGE_CODE_DIR) || WRITE_MACHINERY.test(path))
    return true;
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

// Code files in folders no approval list could mean (any extension, any depth): a pattern matching
// them all approves any application file wherever it is (`**`, `*/**`, /.*/), whatever the tree.
const UNRELATED_PATHS = [
  'z9-unrelated/deep/file.mjs',
  'z9-unrelated/file.js',
  'y9-other/deep/er/file.ts',
  'x9-more/file.cjs',
  '.hidden/y.tsx',
  'node_modules/x9-lib/index.js',
];

/** A pattern as a message shows it: a long RegExp or glob is cut. */
const shown = (pattern: ApprovedPattern): string => clip(String(pattern), 200);

function approvesEverything(test: PathTest, root: string): boolean {
  return UNRELATED_PATHS.every((path) => test(toPosix(resolve(root, path))));
}

/** What counts as an application file: code Node runs (not type declarations). */
const CODE_FILE = /\.[cm]?[jt]sx?$/;
const DECLARATION_FILE = /\.d\.[cm]?ts$/;

/** Shortest tree on which approving more than half of the files is worth a warning. */
export const BROAD_MIN_FILES = 10;

/**
 * Walks the files under `start` (`.git` skipped, `node_modules` too unless `dependencies`), at most
 * MAX_FILES_SCANNED entries; `visit` returning false stops the walk. True when the limit cut it short.
 */
// biome-ignore lint/suspicious/noConfusingVoidType: a visitor that returns nothing walks on
function walkTree(start: string, dependencies: boolean, visit: (path: string, entry: Dirent) => boolean | void): boolean {
  let scanned = 0;
  let stopped = false;
  let truncated = false;
  const walk = (dir: string): void => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (stopped) return;
      if (++scanned > MAX_FILES_SCANNED) {
        truncated = stopped = true;
        return;
      }
      const path = `${dir}${sep}${entry.name}`;
      if (entry.isDirectory()) {
        if (entry.name !== '.git' && (dependencies || entry.name !== 'node_modules')) walk(path);
      } else if (visit(path, entry) === false) {
        stopped = true;
      }
    }
  };
  walk(start);
  return truncated;
}

/** The application's code files under `root`: node_modules and .git excluded, at most MAX_FILES_SCANNED entries walked. */
export function applicationFiles(root: string): { files: string[]; truncated: boolean } {
  const files: string[] = [];
  const truncated = walkTree(root, false, (path, entry) => {
    if (entry.isFile() && CODE_FILE.test(entry.name) && !DECLARATION_FILE.test(entry.name)) files.push(path);
  });
  return { files, truncated };
}

/**
 * The `approved` paths against the application's own files: approving all of them (two or more) is
 * an error, as a pattern approving any file is; more than half of them is reported at boot.
 */
function checkBreadth(patterns: readonly ApprovedPattern[], tests: readonly PathTest[], root: string): ApprovalBreadth {
  if (tests.length === 0) return { files: 0, approved: 0, truncated: false };
  const { files, truncated } = applicationFiles(root);
  let approved = 0;
  for (const file of files) if (tests.some((test) => test(file))) approved++;
  if (files.length >= 2 && approved === files.length) {
    const named = firstOf(patterns.filter((p) => typeof p !== 'function').map(shown));
    throw new TripwireConfigError(
      `mongoose-tripwire: option "approved" (${named}) approves every file of the application under root ${root} (all ` +
        `${files.length}${truncated ? ' of those scanned' : ''}), so no write could ever be reported; name the auth module's files, e.g. ` +
        `'src/auth/**'`,
    );
  }
  return { files: files.length, approved, truncated };
}

/** The original sources of a generated file, from its source map (none when it has no map). */
function sourcesOf(fileName: string, path: string, appRoot: string): string[] {
  try {
    const map = findSourceMap(fileName) ?? findSourceMap(path);
    return map ? sourcesOfMap(map.payload, pathToFileURL(path), appRoot) : [];
  } catch {
    return [];
  }
}

/**
 * The original sources a source map names, as paths: relative names against its `sourceRoot` and the
 * map's own URL, webpack's `webpack://` names against the app's root.
 */
export function sourcesOfMap(payload: { sources?: unknown; sourceRoot?: unknown }, mapUrl: URL, appRoot: string): string[] {
  if (!Array.isArray(payload.sources)) return [];
  const base =
    typeof payload.sourceRoot === 'string' && payload.sourceRoot !== '' ? new URL(payload.sourceRoot.replace(/\/?$/, '/'), mapUrl) : mapUrl;
  return payload.sources
    .filter((source): source is string => typeof source === 'string')
    .map((source) => (WEBPACK_SOURCE.test(source) ? sourcePath(source, appRoot) : toFilePath(new URL(source, base).href)));
}

interface CompiledPatterns {
  paths: PathTest[];
  frames: Array<(frame: Frame) => boolean>;
}

function compilePatterns(option: 'approved' | 'passThrough', patterns: readonly ApprovedPattern[], root: string): CompiledPatterns {
  const compiled: CompiledPatterns = { paths: [], frames: [] };
  for (const [index, pattern] of patterns.entries()) {
    if (typeof pattern === 'function') {
      compiled.frames.push(pattern);
      continue;
    }
    const test = typeof pattern === 'string' ? compileString(pattern, root) : compileRegExp(pattern);
    if (approvesEverything(test, root)) {
      throw new TripwireConfigError(
        option === 'approved'
          ? `mongoose-tripwire: option "approved[${index}]" (${shown(pattern)}) approves every file, so no write could ever be ` +
              `reported; name the auth module's files, e.g. 'src/auth/**'`
          : `mongoose-tripwire: option "passThrough[${index}]" (${shown(pattern)}) matches every file, so no code could ever decide a ` +
              `write; name the generic helpers, e.g. 'src/models/**'`,
      );
    }
    compiled.paths.push(test);
  }
  return compiled;
}

/**
 * `approved` and `passThrough` must not name the same file: one file cannot both decide (approve)
 * and hand the decision to its caller. Checked on the files that exist under their folders at boot.
 */
function checkOverlap(approved: readonly ApprovedPattern[], passThrough: readonly ApprovedPattern[], root: string): void {
  for (const a of approved) {
    for (const p of passThrough) {
      if (typeof a === 'function' || typeof p === 'function') continue;
      const overlap = String(a) === String(p) ? String(a) : (firstFileMatchingBoth(a, p, root) ?? firstFileMatchingBoth(p, a, root));
      if (overlap !== undefined) {
        throw new TripwireConfigError(
          `mongoose-tripwire: options "approved" (${shown(a)}) and "passThrough" (${shown(p)}) both match ` +
            `${overlap === String(a) ? 'the same pattern' : overlap}; a file either approves writes or passes the decision to its caller`,
        );
      }
    }
  }
}

function firstFileMatchingBoth(walked: string | RegExp, other: string | RegExp, root: string): string | undefined {
  const test = typeof other === 'string' ? compileString(other, root) : compileRegExp(other);
  let found: string | undefined;
  walkMatches(walked, root, (path) => {
    if (!test(path)) return true;
    found = displayRelative(path, root);
    return false;
  });
  return found;
}

function displayRelative(path: string, root: string): string {
  const rel = relative(root, path);
  return rel.startsWith('..') ? path : toPosix(rel);
}

export interface ApprovalOptions {
  approved: readonly ApprovedPattern[];
  passThrough: readonly ApprovedPattern[];
  root: string;
  /** A pattern function threw: that frame is not approved (or not passed through). */
  onPatternError?: (option: 'approved' | 'passThrough', error: unknown) => void;
}

export function compileApproval(options: ApprovalOptions): Approval {
  const { root } = options;
  const approved = compilePatterns('approved', options.approved, root);
  const passThrough = compilePatterns('passThrough', options.passThrough, root);
  checkOverlap(options.approved, options.passThrough, root);
  const breadth = checkBreadth(options.approved, approved.paths, root);

  const matches = (tests: readonly PathTest[], path: string): boolean => {
    for (const test of tests) if (test(path)) return true;
    return false;
  };
  const kindOfPath = (path: string): FileKind => {
    if (isInternalFile(path)) return 'internal';
    if (matches(approved.paths, path)) return 'approved';
    if (matches(passThrough.paths, path) || NODE_MODULES.test(path)) return 'passThrough';
    return 'application';
  };
  // A compiled or bundled app run with source maps: `approved: ['src/auth/**']` means the sources. A
  // generated file whose sources are all of one kind is of that kind; a bundle of several kinds is
  // judged frame by frame, by the source of each position.
  const classify = (fileName: string): FileKind | 'byPosition' => {
    const path = toFilePath(fileName);
    const kind = kindOfPath(path);
    if (kind !== 'application' || !process.sourceMapsEnabled) return kind;
    const kinds = new Set(sourcesOf(fileName, path, root).map(kindOfPath));
    if (kinds.size === 0) return 'application';
    return kinds.size === 1 ? [...kinds][0]! : 'byPosition';
  };
  const kindOfPosition = (key: string): FileKind => {
    const [fileName, line, column] = key.split('\0') as [string, string, string];
    try {
      const map = findSourceMap(fileName) ?? findSourceMap(toFilePath(fileName));
      const entry = map?.findEntry(Number(line) - 1, Number(column) - 1) as { originalSource?: string } | undefined;
      // Bundler glue (module wrappers, helpers) maps to no source: it runs code for its caller, which decides.
      return entry?.originalSource ? kindOfPath(sourcePath(entry.originalSource, root)) : 'passThrough';
    } catch {
      return 'application';
    }
  };
  const kindAtPosition = memoize(kindOfPosition, 50_000);
  const anyTrue = (option: 'approved' | 'passThrough', tests: ReadonlyArray<(frame: Frame) => boolean>, frame: Frame): boolean => {
    for (const test of tests) {
      try {
        if (test(frame) === true) return true;
      } catch (error) {
        options.onPatternError?.(option, error);
      }
    }
    return false;
  };

  return {
    needsFrames: approved.frames.length > 0 || passThrough.frames.length > 0,
    kindOf: memoize(classify, 50_000),
    kindAt: (fileName, line, column) => kindAtPosition(`${fileName}\0${line}\0${column}`),
    frameKind(frame) {
      if (anyTrue('approved', approved.frames, frame)) return 'approved';
      if (anyTrue('passThrough', passThrough.frames, frame)) return 'passThrough';
      return 'application';
    },
    isInternalFile,
    sourcePath: (source) => sourcePath(source, root),
    breadth,
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
  let count = 0;
  walkMatches(pattern, root, () => {
    count++;
  });
  return count;
}

/** Calls `visit` with each existing file the pattern matches (stops when it returns false). */
// biome-ignore lint/suspicious/noConfusingVoidType: a visitor that returns nothing walks on
export function walkMatches(pattern: string | RegExp, root: string, visit: (path: string) => boolean | void): void {
  const test = typeof pattern === 'string' ? compileString(pattern, root) : compileRegExp(pattern);
  let start = root;
  if (typeof pattern === 'string') {
    const base = picomatch.scan(pattern.replace(/^\.\//, '')).base;
    start = isAbsolute(pattern) ? base || pattern : resolve(root, base);
    const kind = isDirectory(start);
    if (kind === undefined) return;
    if (kind === false) {
      if (test(start)) visit(start);
      return;
    }
  }
  // Dependencies are walked only when the pattern itself starts inside them.
  walkTree(start, start.includes(`${sep}node_modules`), (path) => (test(path) ? visit(path) : undefined));
}
