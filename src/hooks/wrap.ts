/**
 * How the plugin puts its wrappers on Mongoose's objects, and finds the implementation behind them.
 */

/** Marks every wrapper of ours (Symbol.for: two copies of the plugin recognise each other's). */
export const WRAPPER = Symbol.for('mongoose-tripwire.wrapper');
/** On a model whose entry points are wrapped: the registration watching it. */
export const INSTRUMENTED = Symbol('mongoose-tripwire.instrumented');

export type AnyFunction = (this: unknown, ...args: unknown[]) => unknown;
type Wrapper = AnyFunction & { [WRAPPER]?: true };

/** The nearest implementation from `start` up the prototype chain that is not one of our wrappers. */
export function inherited(start: object | null, name: string): AnyFunction {
  for (let holder = start; holder !== null; holder = Object.getPrototypeOf(holder) as object | null) {
    const value: unknown = Object.getOwnPropertyDescriptor(holder, name)?.value;
    if (typeof value === 'function' && !(value as Wrapper)[WRAPPER]) return value as AnyFunction;
  }
  throw new TypeError(`mongoose-tripwire: no Mongoose implementation of ${name} found`);
}

// A wrapper's `this` is whatever Mongoose calls it on (a model, a query, a document).
export function defineWrapper(target: object, name: string, wrapper: (this: never, ...args: never[]) => unknown): void {
  Object.defineProperty(wrapper, WRAPPER, { value: true });
  Object.defineProperty(target, name, { value: wrapper, writable: true, configurable: true, enumerable: false });
}

export function isOurWrapper(value: unknown): boolean {
  return typeof value === 'function' && (value as Wrapper)[WRAPPER] === true;
}
