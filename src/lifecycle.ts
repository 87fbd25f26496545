import { activeWatchers } from './watcher.js';

/** Sends the summed counters of every registration now (they are also sent every 2 s and on close). */
export function flush(): void {
  for (const watcher of activeWatchers) watcher.sink?.flushCounters();
}

/** Flushes counters and closes the DogStatsD clients the plugin created (never one the app passed in). */
export async function close(): Promise<void> {
  await Promise.all([...activeWatchers].map((watcher) => watcher.close()));
}
