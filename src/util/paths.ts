/** Where this package's own code lives, computed once for every module that must tell its frames apart; paths as people read them. */
import { basename, dirname, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { memoize } from './memo.js';

const THIS_FILE = fileURLToPath(import.meta.url);

/**
 * The file this package was bundled into, when a bundler put it in an app's file (this module is then
 * not in its own `util/` folder): the plugin's frames cannot be told from the app's by their path there.
 */
export const BUNDLED_INTO: string | undefined = basename(dirname(THIS_FILE)) === 'util' ? undefined : THIS_FILE;

/**
 * The folder holding the plugin's modules (`src/` under a test runner, `dist/` when installed), with
 * a trailing separator. This file sits one level below it, in `util/`: every subfolder is inside.
 * Bundled, no folder is the plugin's alone (the bundle's is the app's): then none, and its frames are
 * known by their mapped sources only.
 */
export const PACKAGE_CODE_DIR = BUNDLED_INTO === undefined ? dirname(dirname(THIS_FILE)) + sep : '\0no folder: bundled\0';

export function displayPath(file: string, root: string): string {
  if (!file.startsWith('/') && !/^[A-Za-z]:[\\/]/.test(file)) return file;
  return relativeDisplay(`${root}\0${file}`);
}

// Every rogue write's location is one of a few files: `path.relative` (a few us) once per file.
const relativeDisplay = memoize((key) => {
  const at = key.indexOf('\0');
  return relativeToRoot(key.slice(at + 1), key.slice(0, at));
}, 10_000);

function relativeToRoot(file: string, root: string): string {
  const rel = relative(root, file);
  const shown = rel === '' || rel.startsWith('..') ? file : rel;
  return sep === '/' ? shown : shown.split(sep).join('/');
}
