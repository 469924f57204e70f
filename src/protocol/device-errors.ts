/** The errors of sending and receiving as a device: ProvisionError's sibling, with the device statuses. */

export const DEVICE_STATUSES = [
  'NOT_PROVISIONED',
  'UNAUTHORIZED',
  'TIMEOUT',
  'CONNECTION_ERROR',
  'QUEUE_FULL',
  'INVALID_INPUT',
  'PROTOCOL_ERROR',
] as const;

/** What a flow sees in msg.thingsboard.status when data could not be sent as a device. */
export type DeviceStatus = (typeof DEVICE_STATUSES)[number];

/**
 * One message's failure. `status` is what the flow sees; the message says what to do next and
 * never contains a token, password or key. `sent` tells whether the data may have reached the
 * server (written, but its acknowledgement never came).
 */
export class DeviceError extends Error {
  override readonly name = 'DeviceError';
  readonly status: DeviceStatus;
  readonly sent: boolean;

  constructor(
    status: DeviceStatus,
    message: string,
    options: { sent?: boolean; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = status;
    this.sent = options.sent ?? false;
  }
}

export function isDeviceError(value: unknown): value is DeviceError {
  return value instanceof DeviceError;
}

export function invalidInput(message: string): DeviceError {
  return new DeviceError('INVALID_INPUT', message);
}
