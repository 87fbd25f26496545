/** Where this package's own code lives, computed once for every module that must tell its frames apart. */
import { dirname, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { memoize } from './memo.js';

/**
 * The folder holding the plugin's modules (`src/` under a test runner, `dist/` when installed), with
 * a trailing separator. This file sits one level below it, in `util/`: every subfolder is inside.
 */
export const PACKAGE_CODE_DIR = dirname(dirname(fileURLToPath(import.meta.url))) + sep;

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
