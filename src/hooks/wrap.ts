/**
 * How the plugin puts its wrappers on Mongoose's objects, and finds the implementation behind them.
 */

/** Marks every wrapper of ours (Symbol.for: two copies of the plugin recognise each other's). */
export const WRAPPER = Symbol.for('mongoose-tripwire.wrapper');
/** On a model whose entry points are wrapped: the registration watching it. */
export const INSTRUMENTED = Symbol('mongoose-tripwire.instrumented');

export type AnyFunction = (this: unknown, ...args: unknown[]) => unknown;
type Wrapper = AnyFunction & { [WRAPPER]?: true };

/**
 * The nearest implementation from `start` up the prototype chain that is not one of our wrappers.
 * Called on every wrapped call (an app may replace a method after the plugin wrapped it): a plain
 * property read answers it whenever the nearest method is not a wrapper of ours (Mongoose's methods
 * are data properties), without allocating a descriptor per prototype level.
 */
export function inherited(start: object | null, name: string): AnyFunction {
  const nearest: unknown = start === null ? undefined : (start as Record<string, unknown>)[name];
  if (typeof nearest === 'function' && (nearest as Wrapper)[WRAPPER] !== true) return nearest as AnyFunction;
  return inheritedPastWrappers(start, name);
}

function inheritedPastWrappers(start: object | null, name: string): AnyFunction {
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

/**
 * The app's own method on `target` (a schema static Mongoose copied onto the model, say), if any: an own
 * data property holding a function that is not one of our wrappers.
 */
export function ownMethod(target: object, name: string): AnyFunction | undefined {
  const value: unknown = Object.getOwnPropertyDescriptor(target, name)?.value;
  return typeof value === 'function' && !(value as Wrapper)[WRAPPER] ? (value as AnyFunction) : undefined;
}

export function isOurWrapper(value: unknown): boolean {
  return typeof value === 'function' && (value as Wrapper)[WRAPPER] === true;
}

/**
 * Replaces Mongoose's own `name` on a shared prototype in place: the wrapper `make` builds from the
 * original shows Mongoose's name and arity and keeps the property's attributes. Not marked as ours:
 * `inherited()` must still reach Mongoose's implementation through it. Undefined when there is no
 * such method (another Mongoose version).
 */
export function wrapInPlace(target: object, name: string, make: (original: AnyFunction) => Function): Function | undefined {
  const descriptor = Object.getOwnPropertyDescriptor(target, name);
  const original: unknown = descriptor?.value;
  if (!descriptor || typeof original !== 'function') return undefined;
  const wrapper = make(original as AnyFunction);
  Object.defineProperty(wrapper, 'name', { value: original.name, configurable: true });
  Object.defineProperty(wrapper, 'length', { value: original.length, configurable: true });
  Object.defineProperty(target, name, { ...descriptor, value: wrapper });
  return wrapper;
}
