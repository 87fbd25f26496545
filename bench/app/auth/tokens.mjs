// The approved module: it calls Mongoose itself.
import { makeOps } from '../ops.mjs';

export const ops = makeOps(function authWrite(write) {
  return write();
});
