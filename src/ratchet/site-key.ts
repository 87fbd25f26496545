/**
 * Where a rogue write is, as the ratchet keys it: the model, the operation, the deciding frame's file
 * (relative to `root`) and its enclosing function, never the line, so unrelated edits keep a key.
 */
import { createHash } from 'node:crypto';
import type { Frame } from '../types.js';
import { displayPath } from '../util/paths.js';

/** `function` of an entry whose deciding frame has no function name (module top-level code, an anonymous function). */
export const NO_FUNCTION = '<anonymous>';

/** Where a rogue write is, as a baseline keys it. */
export interface SiteKey {
  model: string;
  operation: string;
  file: string;
  function: string;
}

/**
 * The file and function a baseline keys the deciding frame by. A function called through a module
 * namespace (`import * as legacy`; `legacy.login()`) is shown as `Module.login`: the key drops that
 * receiver, so how the function is imported does not change its entry.
 */
export function siteOf(frame: Frame | undefined, root: string): { file: string; function: string } {
  const name = frame?.function?.replace(/^Module\./, '');
  return { file: frame ? displayPath(frame.file, root) : '<unknown>', function: name || NO_FUNCTION };
}

/** A call site with no file (none could be read, or eval code) cannot be told apart from another: never baselined. */
export function isBaselinable(file: string): boolean {
  return file !== '' && !file.startsWith('<');
}

/** A short content hash of a source file, to tell a record that no longer describes the code. */
export function sourceHash(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

export function keyOf(site: SiteKey): string {
  return `${site.model}\0${site.operation}\0${site.file}\0${site.function}`;
}

export function describeKey(site: SiteKey): string {
  return `${site.model}.${site.operation} in ${site.file} (function ${site.function})`;
}
