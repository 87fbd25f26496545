/**
 * Delivery on demand: `flush()` and `close()`. A process that ends naturally delivers without them
 * (see the `beforeExit` hook in watcher.ts); `process.exit()` right after a write needs `await close()`.
 */
import { activeWatchers } from './watcher.js';

/**
 * Resolves once every rogue write that already completed has been counted, `onBypass` has been
 * called for it and its event handed to the DogStatsD client, the summed counters have been sent,
 * and every client the plugin owns has flushed its buffer to the socket. Never rejects: faults go
 * to `onError` and `tripwire.errors`. Counters are also sent every 2 s.
 */
export async function flush(): Promise<void> {
  await Promise.all([...activeWatchers].map((watcher) => watcher.flush()));
}

/**
 * `flush()`, then closes the DogStatsD clients the plugin created (never one the app passed in).
 * Call it at shutdown, before `process.exit()`.
 */
export async function close(): Promise<void> {
  await Promise.all([...activeWatchers].map((watcher) => watcher.close()));
}
