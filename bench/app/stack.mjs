// Calls `fn` with `depth` frames of ordinary application code beneath it, as a real request
// handler stack would have (router, middleware, services).
export function atDepth(depth, fn) {
  return depth <= 1 ? fn() : atDepth(depth - 1, fn);
}
