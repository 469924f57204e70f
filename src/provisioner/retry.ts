/** Another attempt after a transient failure, while retries are left, after a backoff wait. */
import { ProvisionError } from '../protocol/errors';
import { backoffDelay, type Backoff, type Sleep } from './backoff';
import { ProvisionCancelledError } from './errors';

export interface RetryPolicy {
  /** Further attempts after the first. */
  retries: number;
  backoff: Backoff;
  random: () => number;
  sleep: Sleep;
  /** Ends the attempts and the waits at once. */
  signal: AbortSignal;
  /** Starts no further attempt (closing): the one under way may finish. */
  stop?: AbortSignal;
  /** Told of each failure that another attempt follows. */
  onRetry?: (err: ProvisionError) => void;
}

/** `attempt`'s answer; its last error; or a ProvisionCancelledError once `signal` aborted. */
export async function withRetries<T>(attempt: () => Promise<T>, policy: RetryPolicy): Promise<T> {
  const { signal, stop } = policy;
  for (let retry = 0; ; retry++) {
    try {
      return await attempt();
    } catch (err) {
      if (signal.aborted) throw new ProvisionCancelledError(err);
      if (!(err instanceof ProvisionError) || !err.transient || retry >= policy.retries) throw err;
      if (stop?.aborted) throw new ProvisionCancelledError(err);
      policy.onRetry?.(err);
      const wait = stop ? AbortSignal.any([signal, stop]) : signal;
      await policy
        .sleep(backoffDelay(retry, policy.backoff, policy.random), wait)
        .catch((cause: unknown) => {
          throw new ProvisionCancelledError(cause);
        });
      if (signal.aborted || stop?.aborted) throw new ProvisionCancelledError();
    }
  }
}
