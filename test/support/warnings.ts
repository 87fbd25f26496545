/**
 * Process warnings emitted while `run` runs, captured instead of printed: Node's own `warning`
 * listener (which writes them to stderr) is detached for that time and put back after, so a test
 * asserts the warnings it causes and none leaks into the test output.
 */
export async function captureWarnings(run: () => unknown): Promise<Error[]> {
  const warnings: Error[] = [];
  const existing = process.listeners('warning');
  const capture = (warning: Error): void => void warnings.push(warning);
  for (const listener of existing) process.off('warning', listener);
  process.on('warning', capture);
  try {
    await run();
    // process.emitWarning emits on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', capture);
    for (const listener of existing) process.on('warning', listener);
  }
  return warnings;
}
