// The auth module calling into a write: for the classification-only benchmark.
export function fromAuth(write) {
  return write();
}
