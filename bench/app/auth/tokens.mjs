// The approved module: it calls Mongoose itself.
import { makeOps, makeReads } from '../ops.mjs';

function authWrite(write) {
  return write();
}

export const ops = { ...makeOps(authWrite), ...makeReads(authWrite) };
