// Legacy code: the same writes, not approved.
import { makeOps, makeReads } from '../ops.mjs';

function legacyWrite(write) {
  return write();
}

export const ops = { ...makeOps(legacyWrite), ...makeReads(legacyWrite) };
