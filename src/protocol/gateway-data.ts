/**
 * What a gateway sends on ThingsBoard's v1/gateway/* topics for the devices behind it, and what it
 * is sent for them, as JSON text. Pure: no I/O. The payloads of the devices are checked by
 * device-data.ts; here they are wrapped per device.
 */

import { invalidInput } from './device-errors';
import { attributesText, rpcReplyText, telemetryText } from './device-data';
import type { DeviceDataKind, RpcRequest } from './device-data';
import { describeType, findBadCharacter, isPlainObject, quotePrefix } from './text';

export const GATEWAY_TOPICS = {
  connect: 'v1/gateway/connect',
  disconnect: 'v1/gateway/disconnect',
  telemetry: 'v1/gateway/telemetry',
  attributes: 'v1/gateway/attributes',
  rpc: 'v1/gateway/rpc',
} as const;

/** The device profile ThingsBoard gives a device a gateway names without a type. */
export const DEFAULT_DEVICE_TYPE = 'default';

/** ThingsBoard's limit on the names of devices and device profiles. */
const MAX_NAME_LENGTH = 255;

/** The gateway's name, trimmed, or INVALID_INPUT (it names the node's setting, not msg.deviceName). */
export function gatewayNameOf(raw: unknown): string {
  const name = typeof raw === 'string' ? raw.trim() : '';
  if (name.length === 0) {
    throw invalidInput(
      `No gateway: ${typeof raw === 'string' ? 'its name is empty' : `${describeType(raw)} was given`}. ` +
        "Set the node's Gateway to the name of the gateway device.",
    );
  }
  nameProblem(name, 'gateway name', 'name');
  return name;
}

/** The device type (profile name) for `v1/gateway/connect`, trimmed, or INVALID_INPUT. */
export function deviceTypeOf(raw: unknown): string {
  if (raw === undefined || raw === null || raw === '') return DEFAULT_DEVICE_TYPE;
  if (typeof raw !== 'string') {
    throw invalidInput(
      `The device type must be a string (the name of a device profile), but ${describeType(raw)} ` +
        "was given: set msg.deviceType or the node's Device type.",
    );
  }
  const type = raw.trim();
  if (type.length === 0) return DEFAULT_DEVICE_TYPE;
  nameProblem(type, 'device type', 'profile name');
  return type;
}

function nameProblem(name: string, what: string, shorter: string): void {
  if (name.length > MAX_NAME_LENGTH) {
    throw invalidInput(
      `The ${what} ${quotePrefix(name)} is ${name.length} characters long; ThingsBoard allows ` +
        `at most ${MAX_NAME_LENGTH}. Use a shorter ${shorter}.`,
    );
  }
  const bad = findBadCharacter(name);
  if (bad !== undefined) {
    throw invalidInput(
      `The ${what} ${quotePrefix(name)} contains ${bad.description} at position ` +
        `${bad.index + 1}: remove it.`,
    );
  }
}

export function gatewayConnectText(deviceName: string, deviceType: string): string {
  return JSON.stringify({ device: deviceName, type: deviceType });
}

export function gatewayDisconnectText(deviceName: string): string {
  return JSON.stringify({ device: deviceName });
}

/** `{"device","id","data"}`: the reply to an RPC request pushed to a device behind the gateway. */
export function gatewayRpcReplyText(deviceName: string, id: number, payload: unknown): string {
  return `{"device":${JSON.stringify(deviceName)},"id":${id},"data":${rpcReplyText(payload)}}`;
}

/**
 * One device's part of a shared publish: for telemetry the entries of its array, without the
 * brackets (`{..}` or `{..},{..}`), for attributes the object. INVALID_INPUT as device-data.ts.
 */
export function gatewayDataPart(kind: DeviceDataKind, payload: unknown): string {
  if (kind === 'attributes') return attributesText(payload);
  const text = telemetryText(payload);
  return Array.isArray(payload) ? text.slice(1, -1) : text;
}

function parseObject(payload: Buffer): Record<string, unknown> | undefined {
  try {
    const body: unknown = JSON.parse(payload.toString('utf8'));
    return isPlainObject(body) ? body : undefined;
  } catch {
    return undefined;
  }
}

/** `{"device":"D","data":{"id","method","params"}}` on v1/gateway/rpc, or undefined. */
export function parseGatewayRpc(
  payload: Buffer,
): (RpcRequest & { deviceName: string }) | undefined {
  const body = parseObject(payload);
  const data = body?.data;
  if (typeof body?.device !== 'string' || body.device === '' || !isPlainObject(data)) {
    return undefined;
  }
  if (!Number.isSafeInteger(data.id) || typeof data.method !== 'string') return undefined;
  return {
    deviceName: body.device,
    id: data.id as number,
    method: data.method,
    params: data.params ?? null,
  };
}

/** `{"device":"D","data":{k:v}}` (or `data: {"deleted":[..]}`) on v1/gateway/attributes. */
export function parseGatewayAttributes(
  payload: Buffer,
): { deviceName: string; data: Record<string, unknown> } | undefined {
  const body = parseObject(payload);
  if (typeof body?.device !== 'string' || body.device === '' || !isPlainObject(body.data)) {
    return undefined;
  }
  return { deviceName: body.device, data: body.data };
}
