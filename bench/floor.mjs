// The floor of issue 28: the cheapest stack read that knows the deciding caller of an approved write,
// for the common shapes (the auth module calling Mongoose directly, or through one pass-through
// helper: the deciding frame is at most 2 frames above the call into Mongoose). Read without touching
// the app's `Error` (what the plugin must keep): in a private realm's `Error` (V8 stacks span realms),
// or with `util.getCallSites` where Node has it (>= 22.9), whichever costs less here.
import * as util from 'node:util';
import { constants, createContext, runInContext } from 'node:vm';

export const FLOOR_FRAMES = 2;

// A global that is not contextified where Node can (DONT_CONTEXTIFY): the cheaper realm to read in (as the plugin's).
const inRealm = runInContext(
  `(function () {
    Error.prepareStackTrace = function (_error, sites) { return sites; };
    return function callSitesAbove(entry, depth) {
      Error.stackTraceLimit = depth;
      const holder = {};
      Error.captureStackTrace(holder, entry);
      return holder.stack;
    };
  })()`,
  createContext(constants?.DONT_CONTEXTIFY ?? {}),
);

function realmRead() {
  return inRealm(realmRead, FLOOR_FRAMES);
}

/** The floor's frames above `entry`, read in the private realm (bench/minimal-observer.mjs). */
export function realmReadAbove(entry) {
  return inRealm(entry, FLOOR_FRAMES);
}
const getCallSites = typeof util.getCallSites === 'function' ? util.getCallSites : undefined;
// getCallSites' first site is the function calling it: one more to reach as far.
function callSitesRead() {
  return getCallSites(FLOOR_FRAMES + 1);
}

/** µs per call of `fn`, median of 7 batches. */
export function usPerCall(fn, n = 20_000) {
  for (let i = 0; i < n; i++) fn();
  const samples = [];
  for (let r = 0; r < 7; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    samples.push(Number(process.hrtime.bigint() - t0) / n / 1000);
  }
  return samples.sort((a, b) => a - b)[3];
}

const candidates = { 'private realm': realmRead, ...(getCallSites ? { 'util.getCallSites': callSitesRead } : {}) };
const measured = Object.fromEntries(Object.entries(candidates).map(([name, fn]) => [name, usPerCall(fn)]));
/** Which reader the floor uses, and what each cost here (µs per read, no I/O). */
export const floorReader = Object.entries(measured).sort((a, b) => a[1] - b[1])[0][0];
export const floorReaders = measured;
const read = candidates[floorReader];

/** The floor's read, done by the caller right before a plain model's write. */
export function floorRead() {
  return read();
}
