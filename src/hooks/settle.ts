/**
 * Seeing a write complete without changing its promise: the app gets `promise.then(observer)`, which
 * settles with the same value or the same error, and is unhandled exactly when the app leaves it
 * unhandled (observing the original promise directly would mark its rejection handled).
 */
import { isObject } from './write-shapes.js';

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return isObject(value) && typeof value.then === 'function';
}

/** Runs an observer; whatever it does wrong stays out of the app's promise. */
function quietly(observer: (outcome: unknown) => void, outcome: unknown): void {
  try {
    observer(outcome);
  } catch {
    /* an outcome the shape readers could not read: the write itself is unaffected */
  }
}

/** The app's promise, observed: same value, same error, same unhandled-rejection behaviour. */
export function whenSettled(result: unknown, done: (value: unknown) => void, failed?: (error: unknown) => void): unknown {
  if (!isThenable(result)) return result;
  return result.then(
    (value) => {
      quietly(done, value);
      return value;
    },
    failed &&
      ((error: unknown) => {
        quietly(failed, error);
        throw error;
      }),
  );
}
