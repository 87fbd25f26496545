/** Observing a write's promise changes nothing the app can see: value, error, unhandled rejections. */
import { describe, expect, it } from 'vitest';
import { whenSettled } from '../src/hooks/settle.js';
import { settle, waitFor } from './support/wait.js';

describe('whenSettled', () => {
  it('settles with the same value or error, even when the observer throws', async () => {
    const value = { n: 1 };
    await expect(
      whenSettled(Promise.resolve(value), () => {
        throw new Error('observer');
      }) as Promise<unknown>,
    ).resolves.toBe(value);
    const error = new Error('write failed');
    await expect(
      whenSettled(
        Promise.reject(error),
        () => undefined,
        () => {
          throw new Error('observer');
        },
      ) as Promise<unknown>,
    ).rejects.toBe(error);
    expect(
      whenSettled(value, () => {
        throw new Error('never called');
      }),
    ).toBe(value); // not a promise: returned as it is
  });

  it('leaves a rejection the app ignores unhandled, and one it handles handled', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    const listeners = process.listeners('unhandledRejection');
    process.removeAllListeners('unhandledRejection');
    process.on('unhandledRejection', onUnhandled);
    try {
      const ignored = new Error('ignored by the app');
      whenSettled(
        Promise.reject(ignored),
        () => undefined,
        () => undefined,
      );
      const handled = new Error('handled by the app');
      (
        whenSettled(
          Promise.reject(handled),
          () => undefined,
          () => undefined,
        ) as Promise<unknown>
      ).catch(() => undefined);
      await waitFor(() => unhandled.length > 0, 'the unhandled rejection');
      await settle(); // and not the handled one
      expect(unhandled).toEqual([ignored]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      for (const listener of listeners) process.on('unhandledRejection', listener);
    }
  });
});
