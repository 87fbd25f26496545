/**
 * Mongoose `Aggregate`s that write into a watched collection (`$out`, `$merge` as the final stage),
 * whatever model or connection they run on and however they were built (`Model.aggregate([...])`,
 * `new mongoose.Aggregate(...)`, `.append()`, `.out()`, `.merge()`).
 *
 * An aggregate runs when it is awaited, where no frame of the app is left (`then` runs in a
 * microtask): it is judged where the stage that writes was added, by a call of the app that ends in
 * Mongoose's `Aggregate#append` (its constructor, `out()` and `merge()` call it too: mongoose 8 and 9
 * lib/aggregate.js), and known to have happened when `exec` settles. A pipeline changed by hand
 * (`aggregate.pipeline().push(...)`) is judged at `exec`.
 *
 * `append` and `exec` are wrapped in place on the base `Aggregate.prototype`, once per Mongoose
 * package, with Mongoose's name, arity and property attributes: every aggregate of the process goes
 * through them, and what they add to one that does not write is a look at its last stage.
 */
import type { Capture, WriteJudge } from '../types.js';
import { aggregateWrite, judgedStages, judgeWhole } from './destructive.js';
import { judgesOfName, watchedIn } from './driver.js';
import { whenSettled } from './settle.js';
import { wrapInPlace } from './wrap.js';
import { isObject, writeStageOf } from './write-shapes.js';

interface AggregateLike {
  _pipeline?: unknown;
  _model?: { db?: { name?: unknown } };
  _connection?: { name?: unknown };
}

/** Each aggregate's verdict, taken where the app added the stage that writes, per registration. */
const aggregateCaptures = new WeakMap<object, Map<WriteJudge, Capture>>();

const wrappedPrototypes = new WeakSet<object>();

function databaseOf(aggregate: AggregateLike): string | undefined {
  const name = aggregate._model?.db?.name ?? aggregate._connection?.name;
  return typeof name === 'string' ? name : undefined;
}

/** Wraps `Aggregate.prototype.append` and `exec` of the Mongoose that compiled a watched model (`model.base`), once. */
export function watchAggregates(mongoose: unknown): void {
  const Aggregate = isObject(mongoose) ? mongoose.Aggregate : undefined;
  const proto = typeof Aggregate === 'function' ? (Aggregate as { prototype?: unknown }).prototype : undefined;
  if (!isObject(proto) || wrappedPrototypes.has(proto)) return;
  wrappedPrototypes.add(proto);
  wrapInPlace(proto, 'append', (original) => {
    const wrapper = function (this: AggregateLike): unknown {
      const result = Reflect.apply(original, this, arguments);
      // The database is known only once the aggregate is bound to a model: a name watched anywhere is enough to judge now.
      const stage = writeStageOf(this._pipeline, undefined);
      if (stage === undefined) return result;
      const db = stage.db ?? databaseOf(this);
      const judges = db === undefined ? judgesOfName(stage.collection) : [watchedIn(stage.collection, db)?.judge];
      const captures = new Map<WriteJudge, Capture>();
      // One verdict per registration that may turn out to watch it (one, but for apps with several).
      for (const judge of judges) if (judge) captures.set(judge, judge.capture(wrapper));
      if (captures.size > 0) aggregateCaptures.set(this, captures);
      return result;
    };
    return wrapper;
  });
  wrapInPlace(proto, 'exec', (original) => {
    const wrapper = function (this: AggregateLike): unknown {
      const stage = writeStageOf(this._pipeline, databaseOf(this));
      const write = aggregateWrite(stage, false);
      if (stage === undefined || write === undefined) return Reflect.apply(original, this, arguments);
      const args = Array.prototype.slice.call(arguments) as unknown[];
      const captured = aggregateCaptures.get(this);
      const run = () => {
        // Mongoose hands this very stage object to the collection's `aggregate` after its middleware: judged here.
        judgedStages.add(stage.object);
        const forget = () => void judgedStages.delete(stage.object);
        return whenSettled(Reflect.apply(original, this, args), forget, forget);
      };
      return judgeWhole(write, wrapper, run, captured?.get(write.target.judge));
    };
    return wrapper;
  });
}
