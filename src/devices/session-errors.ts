/** The texts of an MQTT device session's failures: what happened, where, and what to do. */

import { DeviceError } from '../protocol/device-errors';
import type { ProvisionError } from '../protocol/errors';
import { connectionFailure, describeEndpoint, formatWait } from '../transports/exchange';
import type { Endpoint } from '../transports/exchange';
import { CREDENTIALS_REFUSED, connackReason } from '../transports/mqtt';
import type { SessionCloseReason, SessionState } from './types';

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

/** A message whose deadline passed: unacknowledged, stuck behind others, or without a connection. */
export function expiredError(
  endpoint: Endpoint,
  device: string,
  at: { waitedMs: number; written: boolean; connected: boolean; problem?: DeviceError },
): DeviceError {
  const waited = formatWait(at.waitedMs);
  const where = describeEndpoint(endpoint);
  if (at.written) {
    return new DeviceError(
      'TIMEOUT',
      `No acknowledgement from ${where} within ${waited} for a message of device ${device}; ` +
        'it may have reached the server.',
      { sent: true },
    );
  }
  if (at.connected) {
    return new DeviceError(
      'TIMEOUT',
      `A message of device ${device} waited ${waited} behind earlier ones and was not sent: ` +
        `${where} acknowledges too slowly. Send less at once or allow a longer timeout.`,
    );
  }
  const problem = at.problem;
  return new DeviceError(
    problem === undefined ? 'TIMEOUT' : problem.status,
    `Not sent within ${waited}: device ${device} ` +
      (problem === undefined
        ? `could not connect to ${where} in time.`
        : `has no connection. ${problem.message}`),
  );
}

const NOT_SENT_BECAUSE: Record<SessionCloseReason, string> = {
  close: 'the node was closed (redeploy or shutdown)',
  disconnect: 'the device was disconnected',
  idle: 'its connection closed for lack of traffic',
  limit: 'its connection was closed to stay within the number of open device sessions',
};

/** A message still waiting when its session ended. */
export function notSentError(device: string, reason: SessionCloseReason): DeviceError {
  return new DeviceError(
    'CONNECTION_ERROR',
    `A message of device ${device} was not sent: ${NOT_SENT_BECAUSE[reason]}. Send it again.`,
  );
}

/** The server refused the connection for another reason than the credentials (busy, limits). */
export function serverRefusedError(
  endpoint: Endpoint,
  device: string,
  reason: string,
): DeviceError {
  return new DeviceError(
    'CONNECTION_ERROR',
    `The MQTT server at ${describeEndpoint(endpoint)} refused the connection of device ` +
      `${device} (${reason}); trying again.`,
  );
}

/** Another client connected as the device and ThingsBoard closed this, the older, session. */
export function takenOverError(endpoint: Endpoint, device: string, waitMs: number): DeviceError {
  return new DeviceError(
    'CONNECTION_ERROR',
    `Another client took over the session of device ${device} at ` +
      `${describeEndpoint(endpoint)} (ThingsBoard keeps one connection per device and closes ` +
      'the older). Make sure nothing else connects as this device (a core mqtt node, say); ' +
      `trying again in ${formatWait(waitMs)}.`,
  );
}

/** A device with as many messages waiting as its queue holds. */
export function queueFullError(device: string, limit: number, state: SessionState): DeviceError {
  const why = state === 'connected' ? 'the server acknowledges slowly' : `it is ${state}`;
  return new DeviceError(
    'QUEUE_FULL',
    `${limit} messages of device ${device} are already waiting (${why}); this one was not ` +
      'queued. Slow the flow down or send again later.',
  );
}

/** mqtt.js's own errors for a server that stopped answering: no CONNACK, or no PINGRESP. */
export function silentServerError(
  endpoint: Endpoint,
  device: string,
  reported: string,
): DeviceError | undefined {
  const where = describeEndpoint(endpoint);
  if (reported === 'connack timeout') {
    return new DeviceError(
      'CONNECTION_ERROR',
      `${where} did not answer the connection of device ${device} (no CONNACK). Check that the ` +
        "port is ThingsBoard's MQTT port (MQTTS when TLS is on).",
    );
  }
  if (reported === 'Keepalive timeout') {
    return new DeviceError(
      'CONNECTION_ERROR',
      `${where} stopped answering the connection of device ${device} (no PINGRESP); reconnecting.`,
    );
  }
  return undefined;
}

/** What an mqtt.js client's error means for the session: a refusal, a silent server, a failure. */
export function clientProblem(
  err: Error & { code?: unknown },
  connected: boolean,
  endpoint: Endpoint,
  device: string,
): DeviceError {
  const code = err.code;
  if (typeof code === 'number' && !connected && CREDENTIALS_REFUSED.has(code)) {
    return refusedError(endpoint, device, connackReason(code));
  }
  if (typeof code === 'number') return serverRefusedError(endpoint, device, connackReason(code));
  return (
    silentServerError(endpoint, device, err.message) ??
    fromTransportError(connectionFailure(err, endpoint, false))
  );
}

/**
 * The server never acknowledged a gateway's announcement: ThingsBoard ignores v1/gateway/* from a
 * device without the gateway flag (read at CONNECT), and before 3.8 provisioning ignored it.
 */
export function notGatewayError(
  endpoint: Endpoint,
  gateway: string,
  waitedMs: number,
): DeviceError {
  return new DeviceError(
    'UNAUTHORIZED',
    `Device ${gateway} is not a gateway at ${describeEndpoint(endpoint)}: ThingsBoard gave no ` +
      `answer within ${formatWait(waitedMs)} to its announcement of a device on ` +
      'v1/gateway/connect, which it does for a device without the gateway flag (servers before ' +
      '3.8 also provision a plain device when asked for a gateway). Tick "Is gateway" on the ' +
      'device in ThingsBoard, then redeploy; until then nothing is sent through it.',
  );
}
