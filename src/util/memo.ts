/**
 * A function of a string, computed once per key. Keys are file names and call sites: a bounded set
 * in a real app, so the cache is simply emptied at `limit` entries, which only generated code
 * (eval, vm) could reach.
 */
export function memoize<V>(compute: (key: string) => V, limit: number): (key: string) => V {
  const cache = new Map<string, V>();
  return (key) => {
    let value = cache.get(key);
    if (value === undefined) {
      value = compute(key);
      if (cache.size >= limit) cache.clear();
      cache.set(key, value);
    }
    return value;
  };
}
