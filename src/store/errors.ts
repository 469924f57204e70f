/** Why a store cannot be used right now; the provisioner sends nothing to the server then. */
export type StoreUnavailableReason = 'locked' | 'notWritable' | 'newerVersion';

/**
 * The store cannot take credentials now: another process holds it, a write fails, or its files
 * come from a newer version of the package. The message is whole sentences that say what to do.
 */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';

  constructor(
    readonly reason: StoreUnavailableReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isStoreUnavailable(err: unknown): err is StoreUnavailableError {
  return err instanceof StoreUnavailableError;
}
