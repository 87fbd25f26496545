/**
 * Every rogue write's report on `diagnostics_channel`, for consumers that are not a registration's
 * `onBypass` (Sentry, an OpenTelemetry log pipeline, the app's own logger): they subscribe by name,
 * from anywhere, without touching the plugin's options. Publishing is skipped (and the report not
 * built for it) while nobody subscribes.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { BypassReport } from '../types.js';

/** The channel's name. Messages are `BypassReport`s (`blocked: true` for a write refused in throw mode). */
export const ROGUE_WRITE_CHANNEL = 'mongoose-tripwire:rogue-write';

const channel = diagnosticsChannel.channel(ROGUE_WRITE_CHANNEL);

/** Does anyone listen? Read for each rogue write: subscribers come and go at run time. */
export function hasRogueWriteSubscribers(): boolean {
  return channel.hasSubscribers;
}

/** Who receives what a subscriber threw, while a report is being published (publishing is synchronous). */
let onSubscriberError: ((error: unknown) => void) | undefined;

/** Publishes a report; a subscriber that throws is reported to `onError` and reaches nothing else. */
export function publishRogueWrite(report: BypassReport, onError: (error: unknown) => void): void {
  if (!channel.hasSubscribers) return;
  onSubscriberError = onError;
  try {
    channel.publish(report);
  } finally {
    onSubscriberError = undefined;
  }
}

/**
 * Node's `publish` catches what a subscriber throws and re-throws it on `process.nextTick` as an
 * uncaught exception (Node 20-24 lib/diagnostics_channel.js, `ActiveChannel.publish`): a faulty
 * log pipeline would crash the app on a rogue write. So each subscriber of this channel is wrapped
 * as it subscribes, by own `subscribe`/`unsubscribe` methods on this one channel object (shared by
 * name: `diagnostics_channel.subscribe(name, fn)` calls `channel(name).subscribe(fn)`), and a
 * throw goes to the publishing registration's `onError` instead (`subscriber_threw`).
 */
const GUARDED = Symbol.for('mongoose-tripwire.guarded-subscribers');
type Subscriber = (message: unknown, name: string | symbol) => void;
interface Guardable {
  subscribe(subscriber: Subscriber): void;
  unsubscribe(subscriber: Subscriber): boolean;
  [GUARDED]?: true;
}

function guardSubscribers(target: Guardable): void {
  if (target[GUARDED]) return; // another copy of this package guarded it already
  const wrappers = new WeakMap<Subscriber, Subscriber>();
  const isWrapper = new WeakSet<Subscriber>();
  const wrap = (subscriber: Subscriber): Subscriber => {
    if (typeof subscriber !== 'function' || isWrapper.has(subscriber)) return subscriber;
    let wrapper = wrappers.get(subscriber);
    if (!wrapper) {
      wrapper = (message, name) => {
        try {
          subscriber(message, name);
        } catch (error) {
          if (onSubscriberError) onSubscriberError(error);
          else throw error; // published by someone else: Node's own behaviour
        }
      };
      isWrapper.add(wrapper);
      wrappers.set(subscriber, wrapper);
    }
    return wrapper;
  };
  // The prototype's methods, looked up at each call: Node switches the channel's prototype when it
  // gains its first subscriber or loses its last, and the inactive `subscribe` calls `this.subscribe` again.
  const proto = (): Guardable => Object.getPrototypeOf(target) as Guardable;
  Object.defineProperties(target, {
    subscribe: { value: (subscriber: Subscriber) => proto().subscribe.call(target, wrap(subscriber)), configurable: true },
    unsubscribe: {
      value: (subscriber: Subscriber) => proto().unsubscribe.call(target, wrappers.get(subscriber) ?? subscriber),
      configurable: true,
    },
    [GUARDED]: { value: true, configurable: true },
  });
  // Subscribers that came before this module was loaded: their functions are only in Node's private
  // `_subscribers` array (Node 20-24 lib/diagnostics_channel.js). Re-subscribed, wrapped.
  const earlier = (target as unknown as { _subscribers?: unknown })._subscribers;
  if (Array.isArray(earlier)) {
    for (const subscriber of earlier.slice() as Subscriber[]) {
      if (isWrapper.has(subscriber)) continue;
      target.unsubscribe(subscriber);
      target.subscribe(subscriber);
    }
  }
}

try {
  guardSubscribers(channel as unknown as Guardable);
} catch {
  /* a Node whose channel objects cannot be given own methods: subscribers are as Node runs them */
}
