// What any observer of issue 28's kind pays before the plugin's own work, for section 8 of the bench:
// the floor (bench/floor.mjs) is read by the caller in its own code, where no wrapper of Mongoose's
// methods can be; these read the same frames, in the same private realm, from a wrapper of a model's
// query-building statics.
//
// - `readInWrapper`: the static wrapped, the floor's read above the wrapper, nothing else.
// - `observeMinimally`: the least observer that counts approved writes when they completed, as the
//   plugin's exact counters need: the read, the deciding frame looked up by path, the verdict left
//   in a slot for the query's `exec` (wrapped once on the model's Query class), and a `then` on the
//   write's promise. No rule of who decides beyond those two frames, no pass-through files, no fault
//   handling, no queries built by hand or run later than the next one is built.
import { realmReadAbove } from './floor.mjs';

const STATICS = ['updateOne', 'deleteOne'];

export function readInWrapper(M) {
  const parent = Object.getPrototypeOf(M);
  for (const name of STATICS) {
    const wrapper = function (...args) {
      realmReadAbove(wrapper);
      return parent[name].apply(this, args);
    };
    Object.defineProperty(M, name, { value: wrapper, writable: true, configurable: true });
  }
}

export function observeMinimally(M, approvedDir) {
  const counts = { approved: 0, rogue: 0 };
  let slotQuery;
  let slotApproved = false;
  const parent = Object.getPrototypeOf(M);
  for (const name of STATICS) {
    const wrapper = function (...args) {
      let approved = false;
      for (const site of realmReadAbove(wrapper)) {
        if (site.getFileName()?.startsWith(approvedDir)) {
          approved = true;
          break;
        }
      }
      slotQuery = parent[name].apply(this, args);
      slotApproved = approved;
      return slotQuery;
    };
    Object.defineProperty(M, name, { value: wrapper, writable: true, configurable: true });
  }
  const exec = Object.getPrototypeOf(M.Query.prototype).exec;
  const approvedDone = (result) => {
    counts.approved++;
    return result;
  };
  const rogueDone = (result) => {
    counts.rogue++;
    return result;
  };
  Object.defineProperty(M.Query.prototype, 'exec', {
    value: function (...args) {
      const approved = this === slotQuery && slotApproved;
      return exec.apply(this, args).then(approved ? approvedDone : rogueDone);
    },
    writable: true,
    configurable: true,
  });
  return counts;
}
