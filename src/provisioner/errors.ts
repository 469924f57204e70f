/** The provisioner's own members of the ProvisionError family. */
import { ProvisionError, errorText } from '../protocol/errors';
import { isStoreUnavailable } from '../store/errors';
import type { TransportName } from '../transports/types';
import type { ProvisionResult } from './types';

/** Rejection of a job that was aborted or whose provisioner closed. */
export class ProvisionCancelledError extends ProvisionError {
  constructor(cause?: unknown) {
    super('CONNECTION_ERROR', 'Provisioning was cancelled', { cause });
  }
}

export function isCancelledError(err: unknown): err is ProvisionCancelledError {
  return err instanceof ProvisionCancelledError;
}

/**
 * The server provisioned the device but the store could not keep its credentials. `result` holds
 * them so the caller can still hand them to the user: ThingsBoard will not send them again.
 */
export class CredentialsNotSavedError extends ProvisionError {
  readonly result: ProvisionResult;
  /** The store as CredentialStore.describe() names it. */
  readonly storeName: string;

  constructor(result: ProvisionResult, storeName: string, cause: unknown) {
    super(
      'FAILURE',
      `Device ${JSON.stringify(result.deviceName)} was provisioned, but its credentials could ` +
        `not be saved to ${storeName}: ${errorText(cause)}. ThingsBoard will not send them ` +
        'again: they come with this error (its result); keep them before anything else, then ' +
        'fix the folder (permissions, free space).',
      { cause },
    );
    this.result = result;
    this.storeName = storeName;
  }
}

export function invalidJob(message: string): ProvisionError {
  return new ProvisionError('INVALID_INPUT', message);
}

/** Whatever a transport threw, as a ProvisionError. */
export function asProvisionError(err: unknown, transport: TransportName): ProvisionError {
  if (err instanceof ProvisionError) return err;
  return new ProvisionError(
    'PROTOCOL_ERROR',
    `The ${transport} transport failed unexpectedly: ${errorText(err)}`,
    { cause: err },
  );
}

/** Nothing was sent: the store cannot keep an answer now (locked, not writable, newer files). */
export function storeRefusal(err: Error): ProvisionError {
  return new ProvisionError(
    'FAILURE',
    'Nothing was sent to the server, so no device was created whose credentials could not be ' +
      `kept. ${err.message}`,
    { cause: err },
  );
}

export function refuseForStore(err: unknown): never {
  throw isStoreUnavailable(err) ? storeRefusal(err) : err;
}
