/**
 * The gateway API of a gateway's MQTT session (GatewaySessionHandler): devices named in a message
 * are connected (and created) on the fly, each one PUBACK for the whole message.
 */

import type { MqttConnection } from './mqtt-server';
import { isJsonObject, parseJson, readTelemetry, type JsonObject } from './payload';
import type { DeviceSessionPort, ServerRpc } from './sessions';
import type { EmulatedDevice, SessionInfo, TelemetryPoint } from './types';

export const GATEWAY_TOPICS = {
  connect: 'v1/gateway/connect',
  disconnect: 'v1/gateway/disconnect',
  telemetry: 'v1/gateway/telemetry',
  attributes: 'v1/gateway/attributes',
  attributesRequest: 'v1/gateway/attributes/request',
  attributesResponse: 'v1/gateway/attributes/response',
  rpc: 'v1/gateway/rpc',
  claim: 'v1/gateway/claim',
} as const;

const DEFAULT_DEVICE_TYPE = 'default';
const PUBACK_SUCCESS = 0;
const PUBACK_IMPLEMENTATION_SPECIFIC_ERROR = 0x83;
const PUBACK_TOPIC_NAME_INVALID = 0x90;
const PUBACK_PAYLOAD_FORMAT_INVALID = 0x99;

/** Why a gateway message was refused: its shape (PUBACK then close) or a device's data. */
class WrongShape extends Error {}
class ConversionError extends Error {}

export class MqttGateway {
  private readonly devices = new Map<string, GatewayDeviceSession>();
  /** Devices connected by the message being handled: registered once it is acknowledged. */
  private readonly connecting: GatewayDeviceSession[] = [];

  constructor(
    readonly connection: MqttConnection,
    readonly gateway: EmulatedDevice,
    readonly qosFor: (topic: string) => 0 | 1,
  ) {}

  onPublish(topic: string, payload: Buffer, messageId: number): void {
    const connection = this.connection;
    const json = parseJson(payload);
    if (!json.ok) return this.refuse(topic, json.reason, messageId, false);
    let followUp: (() => void) | undefined;
    try {
      switch (topic) {
        case GATEWAY_TOPICS.connect:
          this.connect(json.value);
          break;
        case GATEWAY_TOPICS.disconnect:
          this.forget(deviceName(objectOf(json.value).device));
          break;
        case GATEWAY_TOPICS.telemetry:
          this.telemetry(json.value);
          break;
        case GATEWAY_TOPICS.attributes:
        case GATEWAY_TOPICS.claim:
          this.perDeviceObjects(json.value, topic === GATEWAY_TOPICS.attributes);
          break;
        case GATEWAY_TOPICS.attributesRequest:
          followUp = this.attributesRequest(json.value);
          break;
        case GATEWAY_TOPICS.rpc:
          this.rpcReply(json.value);
          break;
        default:
          connection.note(`${topic} from gateway ${quote(this.gateway.name)}: unknown topic`);
          connection.puback(messageId, PUBACK_TOPIC_NAME_INVALID);
          return;
      }
    } catch (error) {
      if (error instanceof ConversionError) this.refuse(topic, error.message, messageId, false);
      else if (error instanceof WrongShape) this.refuse(topic, error.message, messageId, true);
      else throw error;
      this.registerConnected();
      return;
    }
    connection.context.recorder.gatewayMessage(this.gateway, topic, json.value);
    connection.note(`${topic} from gateway ${quote(this.gateway.name)}`);
    connection.puback(messageId, PUBACK_SUCCESS);
    // Pushes waiting for these devices (RPC) follow the PUBACK of the message that named them.
    this.registerConnected();
    followUp?.();
  }

  /** Every device of the gateway leaves with its connection. */
  dispose(): void {
    for (const session of this.devices.values()) this.connection.context.registry.close(session);
    this.devices.clear();
  }

  /** Deregisters a device from this gateway, silently (as a remote session close does). */
  forget(name: string): void {
    const session = this.devices.get(name);
    if (session === undefined) return;
    this.devices.delete(name);
    this.connection.context.registry.close(session);
  }

  /** The session of a named device, connecting it (and creating the device) on first mention. */
  private sessionOf(name: string, type = DEFAULT_DEVICE_TYPE): GatewayDeviceSession {
    let session = this.devices.get(name);
    if (session !== undefined) return session;
    const device = this.connection.context.tenant.findOrCreateForGateway(
      name,
      type,
      this.gateway.name,
    );
    session = new GatewayDeviceSession(this, device);
    this.devices.set(name, session);
    this.connecting.push(session);
    return session;
  }

  private registerConnected(): void {
    for (const session of this.connecting.splice(0)) {
      if (this.devices.get(session.deviceName) === session) {
        this.connection.context.registry.open(session);
      }
    }
  }

  private connect(json: unknown): void {
    const request = objectOf(json);
    const type = request.type;
    const typeName =
      type === undefined || type === null ? DEFAULT_DEVICE_TYPE : textOf(type, 'type');
    this.sessionOf(deviceName(request.device), typeName);
  }

  /** `{"D":[entries]}`: entries that are not arrays are skipped; no usable entry is a wrong shape. */
  private telemetry(json: unknown): void {
    const perDevice: Array<[string, unknown[], TelemetryPoint[]]> = [];
    const now = Date.now();
    for (const [name, entries] of Object.entries(objectOf(json))) {
      if (!Array.isArray(entries)) continue;
      const points = readTelemetry(entries, now);
      if (!points.ok) throw new ConversionError(`telemetry of ${quote(name)}: ${points.reason}`);
      perDevice.push([deviceName(name), entries, points.value]);
    }
    if (perDevice.length === 0) throw new WrongShape('no device with a telemetry array');
    for (const [name, entries, points] of perDevice) {
      this.connection.context.recorder.telemetry(this.sessionOf(name).device, entries, points);
    }
  }

  /** `{"D":{..}}` for attributes and claims: entries that are not objects are skipped. */
  private perDeviceObjects(json: unknown, attributes: boolean): void {
    const perDevice = Object.entries(objectOf(json)).filter(
      (entry): entry is [string, JsonObject] => isJsonObject(entry[1]),
    );
    if (perDevice.length === 0) throw new WrongShape('no device with a JSON object');
    for (const [name] of perDevice) deviceName(name);
    for (const [name, values] of perDevice) {
      const session = this.sessionOf(name);
      if (attributes) this.connection.context.recorder.attributes(session.device, values);
    }
  }

  /** `{"id","device","client","key"|"keys"}` → `{"id","device","value"|"values"}` on the response topic. */
  private attributesRequest(json: unknown): () => void {
    const request = objectOf(json);
    const id = integerOf(request.id);
    const name = deviceName(request.device);
    const client = booleanOf(request.client);
    let keys: string[];
    if ('key' in request) keys = [textOf(request.key, 'key')];
    else if (Array.isArray(request.keys)) keys = request.keys.map((key) => textOf(key, 'keys'));
    else throw new WrongShape('"key" or "keys" is missing');
    const device = this.sessionOf(name).device;
    const stored = client ? device.attributes : device.sharedAttributes;
    const found = keys.filter((key) => Object.prototype.hasOwnProperty.call(stored, key));
    const answer: JsonObject = { id, device: name };
    if (found.length === 1) answer.value = stored[found[0]];
    else if (found.length > 1) answer.values = Object.fromEntries(found.map((k) => [k, stored[k]]));
    const topic = GATEWAY_TOPICS.attributesResponse;
    return () => this.connection.publish(topic, JSON.stringify(answer), this.qosFor(topic));
  }

  /** `{"device","id","data"}`: data is forwarded as its JSON text. */
  private rpcReply(json: unknown): void {
    const reply = objectOf(json);
    const name = deviceName(reply.device);
    const id = integerOf(reply.id);
    if (!('data' in reply)) throw new WrongShape('"data" is missing');
    const device = this.sessionOf(name).device;
    this.connection.context.registry.reply(device, id, JSON.stringify(reply.data));
  }

  /** Invalid JSON and a device's bad data as a device session; a wrong shape: PUBACK, then close. */
  private refuse(topic: string, reason: string, messageId: number, wrongShape: boolean): void {
    const connection = this.connection;
    connection.note(`${topic} from gateway ${quote(this.gateway.name)}: ${reason}`);
    if (wrongShape) {
      connection.puback(messageId, connection.v5 ? PUBACK_IMPLEMENTATION_SPECIFIC_ERROR : 0);
      connection.closeGracefully();
    } else if (connection.v5 && messageId > 0) {
      connection.puback(messageId, PUBACK_PAYLOAD_FORMAT_INVALID);
    } else {
      connection.closeGracefully();
    }
  }
}

/** A device behind the gateway: pushes go out on the gateway's connection, without SUBSCRIBE. */
class GatewayDeviceSession implements DeviceSessionPort {
  readonly deviceName: string;
  readonly receivesAttributes = true;
  readonly receivesRpc = true;
  private readonly connectedAt = Date.now();

  constructor(
    private readonly owner: MqttGateway,
    readonly device: EmulatedDevice,
  ) {
    this.deviceName = device.name;
  }

  info(): SessionInfo {
    const connection = this.owner.connection;
    return {
      device: this.deviceName,
      transport: 'mqtt',
      gateway: this.owner.gateway.name,
      clientId: connection.clientId,
      protocolVersion: connection.protocolVersion,
      remoteAddress: connection.remoteAddress,
      remotePort: connection.remotePort,
      connectedAt: this.connectedAt,
      subscriptions: { attributes: true, rpc: true },
    };
  }

  pushAttributes(update: JsonObject): void {
    this.publish(GATEWAY_TOPICS.attributes, { device: this.deviceName, data: update });
  }

  pushRpc(rpc: ServerRpc): void {
    this.publish(GATEWAY_TOPICS.rpc, {
      device: this.deviceName,
      data: { id: rpc.id, method: rpc.method, params: rpc.params },
    });
  }

  takenOver(): void {
    this.owner.connection.note(`${quote(this.deviceName)} left gateway: another session opened`);
    this.owner.forget(this.deviceName);
  }

  kick(): void {
    this.owner.connection.note(`${quote(this.deviceName)} removed from its gateway on request`);
    this.owner.forget(this.deviceName);
  }

  private publish(topic: string, body: JsonObject): void {
    this.owner.connection.publish(topic, JSON.stringify(body), this.owner.qosFor(topic));
  }
}

function objectOf(json: unknown): JsonObject {
  if (!isJsonObject(json)) throw new WrongShape('payload is not a JSON object');
  return json;
}

/** Gson's getAsString for a field: text, or a number or boolean as its text. */
function textOf(value: unknown, field: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new WrongShape(`"${field}" is missing or not text`);
}

function deviceName(value: unknown): string {
  const name = textOf(value, 'device');
  if (name === '') throw new WrongShape('device name is empty');
  return name;
}

function integerOf(value: unknown): number {
  const number = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isInteger(number)) {
    throw new WrongShape('"id" is missing or not a whole number');
  }
  return number;
}

function booleanOf(value: unknown): boolean {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') return value.toLowerCase() === 'true';
  throw new WrongShape('"client" is missing or not a boolean');
}

function quote(name: string): string {
  return JSON.stringify(name);
}
