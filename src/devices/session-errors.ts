/** The texts of an MQTT device session's failures: what happened, where, and what to do. */

import { DeviceError } from '../protocol/device-errors';
import type { ProvisionError } from '../protocol/errors';
import { describeEndpoint } from '../transports/exchange';
import type { Endpoint } from '../transports/exchange';

/** The server refused the device's credentials: deleted, or its credentials changed. */
export function refusedError(endpoint: Endpoint, device: string, reason: string): DeviceError {
  return new DeviceError(
    'UNAUTHORIZED',
    `ThingsBoard at ${describeEndpoint(endpoint)} refused the credentials of device ${device} ` +
      `(${reason}): the device was deleted or its credentials changed. Provision it again or ` +
      'hand over its current credentials; until then nothing is sent for it.',
  );
}

export function connectionLostError(
  endpoint: Endpoint,
  device: string,
  wasConnected: boolean,
): DeviceError {
  return new DeviceError(
    'CONNECTION_ERROR',
    wasConnected
      ? `The connection of device ${device} to ${describeEndpoint(endpoint)} was closed; ` +
          'reconnecting.'
      : `The connection of device ${device} to ${describeEndpoint(endpoint)} closed before the ` +
          'server accepted it. Check the host, the port and that the server is running.',
  );
}

/** MQTT 5 PUBACK reason codes ThingsBoard uses, with what they mean for the flow. */
const PUBACK_REASONS: Record<number, { status: DeviceError['status']; text: string }> = {
  0x80: { status: 'PROTOCOL_ERROR', text: 'unspecified error; see the server log' },
  0x83: {
    status: 'PROTOCOL_ERROR',
    text: 'implementation specific error: a rate limit or a server-side failure',
  },
  0x87: { status: 'UNAUTHORIZED', text: 'not authorised' },
  0x90: {
    status: 'PROTOCOL_ERROR',
    text: "topic name invalid: check the device profile's MQTT topics",
  },
  0x97: { status: 'PROTOCOL_ERROR', text: 'quota exceeded: a rate limit of the server' },
  0x99: {
    status: 'INVALID_INPUT',
    text: "payload format invalid: check that the device profile's payload type is JSON",
  },
};

/** An MQTT 5 PUBACK with an error reason code. */
export function pubackError(endpoint: Endpoint, device: string, code: number): DeviceError {
  const known = PUBACK_REASONS[code];
  const hex = `0x${code.toString(16).padStart(2, '0')}`;
  return new DeviceError(
    known?.status ?? 'PROTOCOL_ERROR',
    `${describeEndpoint(endpoint)} refused a message of device ${device} (PUBACK ${hex}: ` +
      `${known?.text ?? 'refused'}).`,
    { sent: true },
  );
}

/** A transport's ProvisionError as the device error of the same kind (its text carries no secret). */
export function fromTransportError(err: unknown): DeviceError {
  if (err instanceof DeviceError) return err;
  const { status, message, maybeDelivered } = err as ProvisionError;
  const known: readonly string[] = ['TIMEOUT', 'CONNECTION_ERROR', 'INVALID_INPUT'];
  return new DeviceError(
    known.includes(status) ? (status as DeviceError['status']) : 'PROTOCOL_ERROR',
    typeof message === 'string' ? message : String(err),
    { sent: maybeDelivered === true, cause: err },
  );
}

/** A fresh error of the same status and text, for each message it fails. */
export function copyError(err: DeviceError): DeviceError {
  return new DeviceError(err.status, err.message, { sent: err.sent });
}
