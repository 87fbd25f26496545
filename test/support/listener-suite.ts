/**
 * A test file's connection and local DogStatsD listener: opened once, closed at the end; after each
 * test the plugin's clients are closed (counters flushed) and the received datagrams cleared.
 */
import type { Connection } from 'mongoose';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { type Listener, startListener } from '../../src/cli/listen.js';
import { close } from '../../src/index.js';

export interface ListenerSuite {
  connection: Connection;
  listener: Listener;
}

export function listenerSuite(open: () => Promise<Connection>): ListenerSuite {
  const suite = {} as ListenerSuite;
  beforeAll(async () => {
    suite.connection = await open();
    const listener = await startListener({ port: 0 });
    // A loaded machine delivers late, not never: waits without their own bound get 15 s, not 5 s.
    const waitFor = listener.waitFor.bind(listener);
    listener.waitFor = (predicate, timeoutMs = 15_000) => waitFor(predicate, timeoutMs);
    suite.listener = listener;
  });
  afterEach(async () => {
    await close();
    suite.listener.datagrams.length = 0;
    suite.listener.malformed.length = 0;
  });
  afterAll(async () => {
    await suite.listener?.close();
    await suite.connection?.close();
  });
  return suite;
}
