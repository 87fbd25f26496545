// Legacy code: the same writes, not approved.
import { makeOps } from '../ops.mjs';

export const ops = makeOps(function legacyWrite(write) {
  return write();
});
