/**
 * Files the plugin opens (the baseline, the TRIPWIRE_RECORD file) are looked at before they are
 * opened: opening a FIFO blocks until someone opens its other end, and reading a device such as
 * /dev/zero never ends. Only a regular file is opened, and then without blocking (O_NONBLOCK), so a
 * file swapped for a FIFO between the look and the open still cannot hang the process.
 */
import { closeSync, constants, fstatSync, openSync, readSync, type Stats, statSync } from 'node:fs';

/** What a path is when it is not a regular file ("a FIFO (named pipe)", "a directory"…), or undefined for a regular file. */
export function notAFile(stats: Stats): string | undefined {
  if (stats.isFile()) return undefined;
  if (stats.isDirectory()) return 'a directory';
  if (stats.isFIFO()) return 'a FIFO (named pipe)';
  if (stats.isSocket()) return 'a socket';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

export type FileLook = { exists: false } | { exists: true; size: number; notAFile: string | undefined };

/** Looks at `path` (following symbolic links, as an open would) without opening it; throws only for errors other than ENOENT. */
export function lookAt(path: string): FileLook {
  let stats: Stats;
  try {
    stats = statSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { exists: false };
    throw error;
  }
  return { exists: true, size: stats.size, notAFile: notAFile(stats) };
}

/** O_NONBLOCK where the platform has it (not on Windows, where FIFOs and devices are not files anyway). */
export const NONBLOCK: number = constants.O_NONBLOCK ?? 0;

/** After an open: the descriptor's own kind, for the race between `lookAt` and the open. */
export function notAFileDescriptor(fd: number): string | undefined {
  return notAFile(fstatSync(fd));
}

/** Reads at most `max` bytes from `fd`; `undefined` when there are more (the file grew past its limit). */
export function readAtMost(fd: number, max: number): Buffer | undefined {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const chunk = Buffer.allocUnsafe(Math.min(1 << 20, max + 1 - total));
    const read = readSync(fd, chunk, 0, chunk.length, null);
    if (read === 0) return Buffer.concat(chunks, total);
    chunks.push(read === chunk.length ? chunk : chunk.subarray(0, read));
    total += read;
    if (total > max) return undefined;
  }
}

/** What reading a path as a regular file found. `data` is undefined when the file holds more than the limit. */
export type FileRead =
  | { kind: 'missing' }
  | { kind: 'notAFile'; what: string }
  | { kind: 'file'; data: Buffer | undefined; size: number; mtimeMs: number };

/**
 * Reads a regular file of at most `max` bytes without ever blocking: looked at first, opened without
 * blocking, looked at again through the descriptor, read with the limit. Throws only I/O errors.
 */
export function readRegularFile(path: string, max: number): FileRead {
  const look = lookAt(path);
  if (!look.exists) return { kind: 'missing' };
  if (look.notAFile) return { kind: 'notAFile', what: look.notAFile };
  if (look.size > max) return { kind: 'file', data: undefined, size: look.size, mtimeMs: Number.NaN };
  const fd = openSync(path, constants.O_RDONLY | NONBLOCK);
  try {
    const stats = fstatSync(fd);
    const kind = notAFile(stats);
    if (kind) return { kind: 'notAFile', what: kind };
    return { kind: 'file', data: readAtMost(fd, max), size: stats.size, mtimeMs: stats.mtimeMs };
  } finally {
    closeSync(fd);
  }
}
