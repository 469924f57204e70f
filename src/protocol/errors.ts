import type { ErrorStatus } from './types';

/**
 * The one error type every layer throws. `status` is what the flow sees in msg.payload.status;
 * `transient` says whether another attempt may succeed (connection refused or lost, timeout,
 * HTTP 5xx, CoAP 5.xx). The message tells the user what to do and never contains a secret.
 */
export class ProvisionError extends Error {
  override readonly name = 'ProvisionError';
  readonly status: ErrorStatus;
  readonly transient: boolean;
  /** The server's errorMsg when it sent one. */
  readonly serverMessage?: string;
  /** Whether the request may have reached the server (a lost answer is possible). */
  readonly maybeDelivered: boolean;

  constructor(
    status: ErrorStatus,
    message: string,
    options: {
      transient?: boolean;
      serverMessage?: string;
      maybeDelivered?: boolean;
      cause?: unknown;
    } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = status;
    this.transient = options.transient ?? false;
    this.serverMessage = options.serverMessage;
    this.maybeDelivered = options.maybeDelivered ?? false;
  }
}

/** A ProvisionError for input that cannot succeed as it is; `message` says what to fix. */
export function invalidProvisionInput(message: string): ProvisionError {
  return new ProvisionError('INVALID_INPUT', message);
}

export function isProvisionError(value: unknown): value is ProvisionError {
  return value instanceof ProvisionError;
}

/** The message of whatever was thrown, for a sentence that explains it (never its stack). */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
