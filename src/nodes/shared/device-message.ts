/** What the device nodes read from a message, and the msg.thingsboard they write. */

import type { GeneratedKeys } from '../../devices';
import { DeviceError, invalidInput } from '../../protocol/device-errors';
import { validateDeviceName } from '../../protocol/request';
import { isPlainObject } from '../../protocol/text';
import { isCredentialsType } from '../../protocol/types';
import type { ProvisionAnswer } from '../../protocol/types';
import type { TransportName } from '../../transports/types';

/** Credentials a provision node's output message hands over. */
export interface Handover {
  deviceName: string;
  answer: ProvisionAnswer;
  generated?: GeneratedKeys;
}

/**
 * A message straight from a provision node: msg.thingsboard.provisionedAt set and
 * msg.payload.status SUCCESS. Undefined for any other message; INVALID_INPUT when it looks like
 * one but its credentials cannot be used, or belong to another server.
 */
export function handoverOf(msg: Record<string, unknown>, host: string): Handover | undefined {
  const { thingsboard, payload } = msg;
  if (!isPlainObject(thingsboard) || !thingsboard.provisionedAt) return undefined;
  if (!isPlainObject(payload) || payload.status !== 'SUCCESS') return undefined;
  const { credentialsType, credentialsValue, certificate, privateKey } = payload;
  if (
    !isCredentialsType(credentialsType) ||
    (credentialsType === 'MQTT_BASIC'
      ? !isPlainObject(credentialsValue)
      : typeof credentialsValue !== 'string')
  ) {
    throw invalidInput(
      'The message from the provision node holds no usable credentials in msg.payload ' +
        '(credentialsType, credentialsValue): pass it on unchanged to device out.',
    );
  }
  if (typeof thingsboard.host === 'string' && !sameHost(thingsboard.host, host)) {
    throw invalidInput(
      `These credentials are for ThingsBoard at ${thingsboard.host}, but this node sends to ` +
        `${host}: choose the same server on both nodes.`,
    );
  }
  let deviceName: string;
  try {
    deviceName = validateDeviceName(payload.deviceName);
  } catch (err) {
    throw new DeviceError('INVALID_INPUT', (err as Error).message);
  }
  const answer = { status: 'SUCCESS', credentialsType, credentialsValue } as ProvisionAnswer;
  const handover: Handover = { deviceName, answer };
  if (typeof privateKey === 'string') {
    handover.generated = {
      privateKey,
      certificate: typeof certificate === 'string' ? certificate : undefined,
    };
  }
  return handover;
}

function sameHost(a: string, b: string): boolean {
  return a.trim().toLowerCase() === b.trim().toLowerCase();
}

/** msg.thingsboard of a message sent as a device, or of its failure. */
export interface DeviceFields {
  host: string;
  via: 'device' | 'gateway';
  transport: TransportName;
  deviceName: string | undefined;
  gateway?: string;
  status?: string;
  errorMsg?: string;
}

/** The RPC request id a message answers (msg.rpc.id, as device in emits it), if any. */
export function rpcIdOf(msg: Record<string, unknown>): unknown {
  const { rpc } = msg;
  return isPlainObject(rpc) ? rpc.id : undefined;
}
