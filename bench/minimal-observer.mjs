// The least an observer of issue 28's kind can add to an approved query write, for comparison with
// the plugin: the floor's read (bench/floor.mjs, in the private realm) right above a static of the model, the deciding
// frame looked up by path, and the write counted when it completed (a `then` on its promise), as the
// plugin's exact counters need. Nothing else: no rule of who decides beyond the first two frames, no
// fault handling, no hand-built queries, and it sets an `exec` of its own on each query (which the
// plugin may not: an observer must be invisible). Only for statics that build a query.
import { realmReadAbove } from './floor.mjs';

export function observeMinimally(M, approvedDir, names = ['updateOne', 'deleteOne']) {
  const counts = { approved: 0, rogue: 0 };
  const parent = Object.getPrototypeOf(M);
  for (const name of names) {
    const observed = function (...args) {
      const sites = realmReadAbove(observed);
      let approved = false;
      for (const site of sites) {
        const file = site.getFileName();
        if (file?.startsWith(approvedDir)) {
          approved = true;
          break;
        }
      }
      const query = parent[name].apply(this, args);
      const exec = query.exec;
      query.exec = function (...execArgs) {
        return exec.apply(this, execArgs).then((result) => {
          counts[approved ? 'approved' : 'rogue']++;
          return result;
        });
      };
      return query;
    };
    Object.defineProperty(M, name, { value: observed, writable: true, configurable: true });
  }
  return counts;
}
