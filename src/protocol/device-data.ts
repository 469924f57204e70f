/**
 * What a device sends to ThingsBoard and what it is sent, as JSON text: telemetry, client
 * attributes, RPC replies, inbound RPC requests and shared-attribute updates. Pure: no I/O.
 *
 * Everything is checked here, before anything is sent: over MQTT 3.1.1 the server answers a
 * payload it cannot read by closing the device's connection, which would cost the messages behind it.
 */

import { invalidInput, isDeviceError } from './device-errors';
import { validateDeviceName } from './request';
import { describeType, isPlainObject, quotePrefix } from './text';

export const DEVICE_TOPICS = {
  telemetry: 'v1/devices/me/telemetry',
  attributes: 'v1/devices/me/attributes',
  /** The exact filter ThingsBoard accepts for server-side RPC requests. */
  rpcRequests: 'v1/devices/me/rpc/request/+',
  rpcRequestPrefix: 'v1/devices/me/rpc/request/',
  rpcResponsePrefix: 'v1/devices/me/rpc/response/',
} as const;

export const DEVICE_DATA_KINDS = ['telemetry', 'attributes'] as const;
export type DeviceDataKind = (typeof DEVICE_DATA_KINDS)[number];

export function isDeviceDataKind(value: unknown): value is DeviceDataKind {
  return value === 'telemetry' || value === 'attributes';
}

/** The device name, trimmed as the provisioner keeps it, or INVALID_INPUT saying what to fix. */
export function deviceNameOf(raw: unknown): string {
  try {
    return validateDeviceName(raw);
  } catch (err) {
    throw invalidInput((err as Error).message);
  }
}

/** ThingsBoard closes an MQTT connection that sends a packet larger than this (Netty's limit). */
export const MAX_MQTT_PACKET_BYTES = 65_536;

/** Timestamps below this (early 1973 in ms) are seconds given where milliseconds are meant. */
const EARLIEST_MS = 1e11;
/** Timestamps from here on (year 5138 in ms) are micro- or nanoseconds. */
const LATEST_MS = 1e14;

const TELEMETRY_SHAPES = '{key: value, ...}, {ts, values: {key: value, ...}} or an array of those';

/**
 * JSON.stringify that refuses what it would otherwise change silently: undefined, functions and
 * symbols (left out), NaN and Infinity (null), bigints (an exception).
 */
function jsonText(value: unknown, what: string): string {
  let text: string | undefined;
  try {
    // A walk before a plain stringify costs a fraction of a replacer called for every value.
    checkRepresentable(value, '', what, []);
    text = JSON.stringify(value);
  } catch (err) {
    if (isDeviceError(err)) throw err;
    // A cycle, or a toJSON() that threw: neither names a secret.
    throw invalidInput(
      `${capitalise(what)} cannot be turned into JSON (${(err as Error).message}). ${FIX}`,
    );
  }
  if (text === undefined) throw invalidInput(`${capitalise(what)} is empty. ${FIX}`);
  return text;
}

/**
 * Visits values as JSON.stringify does (toJSON first, then own enumerable keys, depth first) and
 * throws at the first it cannot carry; a cycle ends the walk, and JSON.stringify names it.
 */
function checkRepresentable(value: unknown, key: string, what: string, above: object[]): void {
  if (typeof value === 'object' && value !== null) {
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') value = (toJSON as (key: string) => unknown).call(value, key);
  }
  const problem = unrepresentable(value);
  if (problem !== undefined) {
    const where = key === '' ? what : `the value of ${quotePrefix(key)} in ${what}`;
    throw invalidInput(`${capitalise(where)} is ${problem}, which JSON cannot carry. ${FIX}`);
  }
  if (typeof value !== 'object' || value === null || above.includes(value)) return;
  above.push(value);
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++) {
      checkRepresentable(value[index], String(index), what, above);
    }
  } else {
    const object = value as Record<string, unknown>;
    for (const entryKey of Object.keys(object)) {
      checkRepresentable(object[entryKey], entryKey, what, above);
    }
  }
  above.pop();
}

const FIX = 'Send numbers, strings, booleans, or objects and arrays of them.';

function unrepresentable(value: unknown): string | undefined {
  switch (typeof value) {
    case 'undefined':
      return 'undefined';
    case 'function':
      return 'a function';
    case 'symbol':
      return 'a symbol';
    case 'bigint':
      return 'a bigint';
    case 'number':
      return Number.isFinite(value) ? undefined : String(value);
    default:
      return undefined;
  }
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Keys of a {key: value} object: at least one, none null (ThingsBoard drops nulls silently). */
function checkValues(values: Record<string, unknown>, what: string): void {
  const keys = Object.keys(values);
  if (keys.length === 0) {
    throw invalidInput(`${capitalise(what)} has no keys: there is nothing to send.`);
  }
  for (const key of keys) {
    if (values[key] === null) {
      throw invalidInput(
        `The value of ${quotePrefix(key)} in ${what} is null; ThingsBoard drops null values ` +
          'without a word. Leave the key out, or send a value.',
      );
    }
  }
}

function checkTimestamp(ts: unknown, what: string): void {
  if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0) {
    throw invalidInput(
      `The ts of ${what} must be a whole number of milliseconds since 1970 (as Date.now() ` +
        `gives), but ${typeof ts === 'number' ? String(ts) : describeType(ts)} was given.`,
    );
  }
  if (ts < EARLIEST_MS) {
    throw invalidInput(
      `The ts ${ts} of ${what} looks like seconds; ThingsBoard takes milliseconds since 1970 ` +
        '(as Date.now() gives): multiply it by 1000.',
    );
  }
  if (ts >= LATEST_MS) {
    throw invalidInput(
      `The ts ${ts} of ${what} looks like micro- or nanoseconds; ThingsBoard takes ` +
        'milliseconds since 1970 (as Date.now() gives).',
    );
  }
}

/** One telemetry entry: {key: value, ...} or {ts, values}. */
function checkTelemetryEntry(entry: unknown, what: string): void {
  if (!isPlainObject(entry)) {
    throw invalidInput(
      `${capitalise(what)} is ${describeType(entry)}; telemetry is ${TELEMETRY_SHAPES}.`,
    );
  }
  const hasTs = Object.hasOwn(entry, 'ts');
  const hasValues = Object.hasOwn(entry, 'values');
  if (hasTs && hasValues) {
    const other = Object.keys(entry).find((key) => key !== 'ts' && key !== 'values');
    if (other !== undefined) {
      throw invalidInput(
        `${capitalise(what)} has ts and values, and also ${quotePrefix(other)}, which ThingsBoard ` +
          'would ignore: move it into values.',
      );
    }
    checkTimestamp(entry.ts, what);
    if (!isPlainObject(entry.values)) {
      throw invalidInput(
        `The values of ${what} must be an object {key: value, ...}, but ` +
          `${describeType(entry.values)} was given.`,
      );
    }
    checkValues(entry.values, `the values of ${what}`);
    return;
  }
  if (hasTs || hasValues) {
    // ThingsBoard would store "ts" or "values" as an ordinary key, at the server's time.
    throw invalidInput(
      `${capitalise(what)} has ${hasTs ? 'ts but no values' : 'values but no ts'}; to give the ` +
        'time of the data send {ts: <milliseconds>, values: {key: value, ...}}, otherwise ' +
        `leave ${hasTs ? 'ts' : 'values'} out.`,
    );
  }
  checkValues(entry, what);
}

/** The JSON text of a telemetry payload, or an INVALID_INPUT DeviceError saying what to fix. */
export function telemetryText(payload: unknown): string {
  if (Array.isArray(payload)) {
    if (payload.length === 0) {
      throw invalidInput('The telemetry is an empty array: there is nothing to send.');
    }
    payload.forEach((entry, index) => checkTelemetryEntry(entry, `telemetry entry ${index}`));
  } else {
    checkTelemetryEntry(payload, 'the telemetry');
  }
  return jsonText(payload, 'the telemetry');
}

/** The JSON text of client attributes (a flat {key: value} object, no timestamp). */
export function attributesText(payload: unknown): string {
  if (!isPlainObject(payload)) {
    throw invalidInput(
      `The attributes are ${describeType(payload)}; attributes are an object {key: value, ...}.`,
    );
  }
  if (Object.hasOwn(payload, 'ts') && Object.hasOwn(payload, 'values')) {
    throw invalidInput(
      'Attributes take no timestamp: send the values object itself, {key: value, ...}.',
    );
  }
  checkValues(payload, 'the attributes');
  return jsonText(payload, 'the attributes');
}

export function deviceDataText(kind: DeviceDataKind, payload: unknown): string {
  return kind === 'telemetry' ? telemetryText(payload) : attributesText(payload);
}

/** The JSON text of an RPC reply: any JSON value (ThingsBoard refuses a reply that is not JSON). */
export function rpcReplyText(payload: unknown): string {
  return jsonText(payload, 'the RPC reply');
}

/** The request id of msg.rpc.id: a whole number, or its decimal digits. */
export function rpcRequestId(value: unknown): number {
  const id =
    typeof value === 'string' && /^\d{1,15}$/.test(value)
      ? Number(value)
      : typeof value === 'number'
        ? value
        : NaN;
  if (!Number.isSafeInteger(id) || id < 0) {
    throw invalidInput(
      `msg.rpc.id must be the id of the RPC request (a whole number, as device in gives it), ` +
        `but ${typeof value === 'number' ? String(value) : describeType(value)} was given.`,
    );
  }
  return id;
}

export function rpcResponseTopic(id: number): string {
  return `${DEVICE_TOPICS.rpcResponsePrefix}${id}`;
}

export interface MqttPublishShape {
  qos: 0 | 1;
  /** 4 for MQTT 3.1.1, 5 for MQTT 5. */
  protocolVersion: 4 | 5;
}

/** Bytes of a PUBLISH packet: fixed header, remaining length, topic, packet id, properties, payload. */
export function mqttPublishSize(
  topic: string,
  payloadBytes: number,
  shape: MqttPublishShape,
): number {
  const remaining =
    2 +
    Buffer.byteLength(topic, 'utf8') +
    (shape.qos > 0 ? 2 : 0) +
    // MQTT 5: the properties' length, no properties.
    (shape.protocolVersion === 5 ? 1 : 0) +
    payloadBytes;
  const lengthBytes = remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4;
  return 1 + lengthBytes + remaining;
}

/** The largest payload a PUBLISH on `topic` carries within what ThingsBoard reads. */
export function maxPublishPayload(topic: string, shape: MqttPublishShape): number {
  let bytes = MAX_MQTT_PACKET_BYTES - mqttPublishSize(topic, 0, shape);
  while (bytes > 0 && mqttPublishSize(topic, bytes, shape) > MAX_MQTT_PACKET_BYTES) bytes--;
  return bytes;
}

/** INVALID_INPUT when the PUBLISH would exceed what ThingsBoard reads (it would close the connection). */
export function checkMqttPublishSize(
  topic: string,
  payloadBytes: number,
  shape: MqttPublishShape,
): void {
  const size = mqttPublishSize(topic, payloadBytes, shape);
  if (size > MAX_MQTT_PACKET_BYTES) {
    throw invalidInput(
      `This message would make an MQTT packet of ${size} bytes; ThingsBoard closes the ` +
        `connection of a device that sends more than ${MAX_MQTT_PACKET_BYTES}. Split the data ` +
        'into several messages, or send it over HTTP.',
    );
  }
}

/** A server-side RPC request as ThingsBoard pushes it. */
export interface RpcRequest {
  id: number;
  method: string;
  params: unknown;
}

function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/** The RPC request on `v1/devices/me/rpc/request/{id}`, or undefined when it is not one. */
export function parseRpcRequest(topic: string, payload: Buffer): RpcRequest | undefined {
  if (!topic.startsWith(DEVICE_TOPICS.rpcRequestPrefix)) return undefined;
  const idText = topic.slice(DEVICE_TOPICS.rpcRequestPrefix.length);
  if (!/^\d{1,15}$/.test(idText)) return undefined;
  const body = parseJson(payload);
  if (!isPlainObject(body) || typeof body.method !== 'string') return undefined;
  return { id: Number(idText), method: body.method, params: body.params ?? null };
}

/** A shared-attribute update, `{key: value}` or `{"deleted": [keys]}`, or undefined. */
export function parseAttributeUpdate(payload: Buffer): Record<string, unknown> | undefined {
  const body = parseJson(payload);
  return isPlainObject(body) ? body : undefined;
}
