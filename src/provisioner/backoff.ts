/** How long to wait before another attempt, and the wait itself. */
import { ProvisionCancelledError } from './errors';

export interface Backoff {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 500, maxMs: 10_000 };

/** Settles promptly, rejecting, when `signal` aborts. */
export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

/** Full jitter: a uniformly random wait in [0, min(maxMs, baseMs * 2^retry)). */
export function backoffDelay(retry: number, backoff: Backoff, random: () => number): number {
  return Math.min(backoff.maxMs, backoff.baseMs * 2 ** retry) * random();
}

export const sleep: Sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new ProvisionCancelledError());
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new ProvisionCancelledError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
