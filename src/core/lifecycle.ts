/**
 * The process around the registrations: delivery when a script ends without any call from the app,
 * and `flush()` / `close()` on demand.
 *
 * Neither process hook keeps a process alive: `beforeExit` is emitted only once the event loop is
 * already empty.
 *   - `beforeExit` (the script ended naturally): deliver what is pending and flush the sockets the
 *     plugin owns; the sends are new work, so Node runs them and emits `beforeExit` again, when
 *     nothing is pending any more and the process exits. At most two rounds per burst of writes
 *     (the second carries faults of the first, such as `send_failed`), so a dead agent cannot make
 *     a loop of it.
 *   - `exit` (`process.exit()`, or after the above): no more asynchronous work can run, so do what
 *     can be done synchronously: build the pending reports, call `onBypass`, and hand every datagram
 *     to the socket. With an IP address as agent host the datagrams leave synchronously; a host name
 *     needs a DNS lookup that `process.exit()` does not wait for (docs/datadog.md, "Delivery").
 */

/** What the process hooks and `flush()`/`close()` ask of a registration. */
export interface Deliverable {
  hasUnsent(): boolean;
  flush(): Promise<void>;
  flushSync(): void;
  close(): Promise<void>;
}

const active = new Set<Deliverable>();
let exitRounds = 0;
const MAX_EXIT_ROUNDS = 2;

function beforeExit(): void {
  if (exitRounds >= MAX_EXIT_ROUNDS) return;
  const unsent = [...active].filter((registration) => registration.hasUnsent());
  if (unsent.length === 0) return;
  exitRounds += 1;
  for (const registration of unsent) void registration.flush();
}

function onExit(): void {
  for (const registration of active) if (registration.hasUnsent()) registration.flushSync();
}

export function track(registration: Deliverable): void {
  if (active.size === 0) {
    process.on('beforeExit', beforeExit);
    process.on('exit', onExit);
  }
  active.add(registration);
}

export function untrack(registration: Deliverable): void {
  active.delete(registration);
  if (active.size === 0) {
    process.off('beforeExit', beforeExit);
    process.off('exit', onExit);
  }
}

/** A rogue write completed: the end of the process may deliver again, two rounds as for the first. */
export function rogueWriteCompleted(): void {
  exitRounds = 0;
}

/**
 * Resolves once every rogue write that already completed has been counted, `onBypass` has been
 * called for it and its event handed to the DogStatsD client, the summed counters have been sent,
 * and every client the plugin owns has flushed its buffer to the socket. Never rejects: faults go
 * to `onError` and `tripwire.errors`. Counters are also sent every 2 s.
 */
export async function flush(): Promise<void> {
  await Promise.all([...active].map((registration) => registration.flush()));
}

/**
 * `flush()`, then closes the DogStatsD clients the plugin created (never one the app passed in).
 * Call it at shutdown, before `process.exit()`.
 */
export async function close(): Promise<void> {
  await Promise.all([...active].map((registration) => registration.close()));
}
