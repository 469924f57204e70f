/**
 * An MQTT device session (MqttTransportHandler.processDevicePublish and processSubscribe): telemetry,
 * attributes, attribute requests, server-side RPC, and the gateway API for gateways.
 */

import type { IPublishPacket, ISubscribePacket, Packet } from 'mqtt-packet';
import { MqttGateway } from './mqtt-gateway';
import type { MqttConnection, MqttSessionHandler } from './mqtt-server';
import {
  answerAttributes,
  isJsonObject,
  keyList,
  parseJson,
  type AttributeQuery,
  type JsonObject,
  type Reading,
} from './payload';
import { rpcBody, type DeviceSessionPort, type ServerRpc } from './sessions';
import type { EmulatedDevice, SessionInfo } from './types';

export const DEVICE_TOPICS = {
  telemetry: 'v1/devices/me/telemetry',
  attributes: 'v1/devices/me/attributes',
  attributesRequest: 'v1/devices/me/attributes/request/',
  attributesResponse: 'v1/devices/me/attributes/response/',
  rpcRequest: 'v1/devices/me/rpc/request/',
  rpcResponse: 'v1/devices/me/rpc/response/',
  claim: 'v1/devices/me/claim',
  gatewayPrefix: 'v1/gateway/',
} as const;
const RPC_REQUEST_FILTER = 'v1/devices/me/rpc/request/+';

/** Filters the server accepts only to learn the QoS of what it sends there. */
const QOS_ONLY_FILTERS = new Set([
  'v1/devices/me/rpc/response/+',
  'v1/devices/me/attributes/response/+',
  'v1/gateway/attributes',
  'v1/gateway/rpc',
  'v1/gateway/attributes/response',
  '/provision/response',
]);

const SUBACK_FAILURE = 0x80;
const PUBACK_SUCCESS = 0;
const PUBACK_TOPIC_NAME_INVALID = 0x90;
const PUBACK_PAYLOAD_FORMAT_INVALID = 0x99;
const DISCONNECT_SESSION_TAKEN_OVER = 0x8e;

export class DeviceSession implements MqttSessionHandler, DeviceSessionPort {
  readonly deviceName: string;
  /** Granted subscriptions: filter → QoS. */
  private readonly subscriptions = new Map<string, 0 | 1>();
  private readonly gateway: MqttGateway | undefined;

  constructor(
    private readonly connection: MqttConnection,
    private readonly device: EmulatedDevice,
  ) {
    this.deviceName = device.name;
    // Whether a device is a gateway is read once, at CONNECT.
    this.gateway = device.gateway
      ? new MqttGateway(connection, device, (topic) => this.qosFor(topic))
      : undefined;
    connection.context.registry.open(this);
  }

  get receivesAttributes(): boolean {
    return this.subscriptions.has(DEVICE_TOPICS.attributes);
  }

  get receivesRpc(): boolean {
    return this.subscriptions.has(RPC_REQUEST_FILTER);
  }

  info(): SessionInfo {
    return {
      device: this.deviceName,
      transport: 'mqtt',
      clientId: this.connection.clientId,
      protocolVersion: this.connection.protocolVersion,
      remoteAddress: this.connection.remoteAddress,
      remotePort: this.connection.remotePort,
      connectedAt: this.connection.connectedAt,
      subscriptions: { attributes: this.receivesAttributes, rpc: this.receivesRpc },
    };
  }

  onPacket(packet: Packet): void {
    switch (packet.cmd) {
      case 'subscribe':
        this.onSubscribe(packet);
        return;
      case 'unsubscribe':
        for (const filter of packet.unsubscriptions) this.subscriptions.delete(filter);
        this.connection.send({
          cmd: 'unsuback',
          messageId: packet.messageId ?? 0,
          granted: packet.unsubscriptions.map(() => 0),
        });
        return;
      case 'publish':
        this.onPublish(packet);
        return;
      default:
        return;
    }
  }

  pushAttributes(update: JsonObject): void {
    this.connection.publish(
      DEVICE_TOPICS.attributes,
      JSON.stringify(update),
      this.qosFor(DEVICE_TOPICS.attributes),
    );
  }

  pushRpc(rpc: ServerRpc): void {
    const topic = `${DEVICE_TOPICS.rpcRequest}${rpc.id}`;
    this.connection.publish(topic, JSON.stringify(rpcBody(rpc)), this.qosFor(topic));
  }

  takenOver(): void {
    this.connection.note(`session of ${JSON.stringify(this.deviceName)} taken over`);
    this.connection.disconnect(DISCONNECT_SESSION_TAKEN_OVER);
  }

  kick(): void {
    this.connection.note(`session of ${JSON.stringify(this.deviceName)} closed on request`);
    // Gone from the sessions at once, not when the socket has finished closing.
    this.dispose();
    this.connection.closeGracefully();
  }

  dispose(): void {
    this.connection.context.registry.close(this);
    this.gateway?.dispose();
  }

  /** The QoS of the subscription a topic falls under; QoS 1 when there is none. */
  private qosFor(topic: string): 0 | 1 {
    for (const [filter, qos] of this.subscriptions) if (matches(filter, topic)) return qos;
    return 1;
  }

  private onSubscribe(packet: ISubscribePacket): void {
    let rpcNow = false;
    const granted = packet.subscriptions.map(({ topic, qos }) => {
      const known =
        topic === DEVICE_TOPICS.attributes ||
        topic === RPC_REQUEST_FILTER ||
        QOS_ONLY_FILTERS.has(topic);
      if (!known) return SUBACK_FAILURE;
      const qosGranted = qos >= 1 ? 1 : 0;
      if (topic === RPC_REQUEST_FILTER && !this.receivesRpc) rpcNow = true;
      this.subscriptions.set(topic, qosGranted);
      return qosGranted;
    });
    this.connection.send({ cmd: 'suback', messageId: packet.messageId ?? 0, granted });
    if (rpcNow) this.connection.context.registry.subscribedToRpc(this);
  }

  private onPublish(packet: IPublishPacket): void {
    // QoS 2 is answered with a PUBACK as if it were QoS 1 (no PUBREC).
    const messageId = packet.qos > 0 ? (packet.messageId ?? 0) : 0;
    const topic = packet.topic;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    if (topic.startsWith(DEVICE_TOPICS.gatewayPrefix)) {
      // A device that is not a gateway gets nothing at all: no PUBACK, no close.
      this.gateway?.onPublish(topic, payload, messageId);
      return;
    }
    let outcome: Reading<FollowUp>;
    if (topic === DEVICE_TOPICS.telemetry) {
      outcome = this.take('telemetry', payload);
    } else if (topic === DEVICE_TOPICS.attributes) {
      outcome = this.take('attributes', payload);
    } else if (topic.startsWith(DEVICE_TOPICS.attributesRequest)) {
      outcome = this.attributesRequest(
        topic.slice(DEVICE_TOPICS.attributesRequest.length),
        payload,
      );
    } else if (topic.startsWith(DEVICE_TOPICS.rpcResponse)) {
      outcome = this.rpcReply(topic.slice(DEVICE_TOPICS.rpcResponse.length), payload);
    } else if (topic.startsWith(DEVICE_TOPICS.rpcRequest)) {
      outcome = this.clientRpc(topic.slice(DEVICE_TOPICS.rpcRequest.length), payload);
    } else if (topic === DEVICE_TOPICS.claim) {
      outcome = DONE;
    } else {
      this.connection.note(`${topic} from ${JSON.stringify(this.deviceName)}: unknown topic`);
      this.connection.puback(messageId, PUBACK_TOPIC_NAME_INVALID);
      return;
    }
    if (outcome.ok) {
      this.connection.note(`${topic} from ${JSON.stringify(this.deviceName)}`);
      // The PUBACK says the message was taken; answers to it come after.
      this.connection.puback(messageId, PUBACK_SUCCESS);
      outcome.value?.();
      return;
    }
    this.connection.note(`${topic} from ${JSON.stringify(this.deviceName)}: ${outcome.reason}`);
    // MQTT 5 can say so in the PUBACK; 3.1.1 cannot, so the server closes the connection.
    if (this.connection.v5 && messageId > 0) {
      this.connection.puback(messageId, PUBACK_PAYLOAD_FORMAT_INVALID);
    } else {
      this.connection.closeGracefully();
    }
  }

  private take(kind: 'telemetry' | 'attributes', payload: Buffer): Reading<FollowUp> {
    const taken = this.connection.context.recorder.accept(this.device, kind, payload);
    return taken.ok ? DONE : taken;
  }

  /** The reply is forwarded as text, whatever it holds. */
  private rpcReply(idText: string, payload: Buffer): Reading<FollowUp> {
    const id = requestId(idText);
    if (id === undefined) return { ok: false, reason: 'bad request id' };
    this.connection.context.registry.reply(this.device, id, payload.toString('utf8'));
    return DONE;
  }

  /** `{"clientKeys":"a,b","sharedKeys":"c"}` (`{}`: all) → response/{id}, subscribed or not. */
  private attributesRequest(idText: string, payload: Buffer): Reading<FollowUp> {
    const id = requestId(idText);
    if (id === undefined) return { ok: false, reason: 'bad request id' };
    const json = parseJson(payload);
    if (!json.ok) return json;
    if (!isJsonObject(json.value)) return { ok: false, reason: 'request is not a JSON object' };
    const clientKeys = keysField(json.value, 'clientKeys');
    const sharedKeys = keysField(json.value, 'sharedKeys');
    if (clientKeys === null || sharedKeys === null) return { ok: false, reason: 'bad key list' };
    const query: AttributeQuery =
      clientKeys === undefined && sharedKeys === undefined
        ? { client: [], shared: [] }
        : { client: clientKeys, shared: sharedKeys };
    const topic = `${DEVICE_TOPICS.attributesResponse}${id}`;
    const answer = JSON.stringify(answerAttributes(this.device, query));
    return { ok: true, value: () => this.connection.publish(topic, answer, this.qosFor(topic)) };
  }

  /** The device's own RPC: no rule chain answers it here, so the server's timeout reply follows. */
  private clientRpc(idText: string, payload: Buffer): Reading<FollowUp> {
    const id = requestId(idText);
    if (id === undefined) return { ok: false, reason: 'bad request id' };
    const json = parseJson(payload);
    if (!json.ok) return json;
    if (!isJsonObject(json.value) || !('method' in json.value) || !('params' in json.value)) {
      return { ok: false, reason: 'an RPC request needs "method" and "params"' };
    }
    const topic = `${DEVICE_TOPICS.rpcResponse}${id}`;
    this.connection.after(this.connection.context.clientRpcTimeoutMs, () =>
      this.connection.publish(topic, '{"error":"timeout"}', this.qosFor(topic)),
    );
    return DONE;
  }
}

/** What to send once the message is acknowledged, if anything. */
type FollowUp = (() => void) | undefined;
const DONE: Reading<FollowUp> = { ok: true, value: undefined };

/** Integer.parseInt of what follows the topic prefix. */
function requestId(text: string): number | undefined {
  if (!/^[-+]?\d{1,10}$/.test(text)) return undefined;
  const id = Number(text);
  return id >= -2_147_483_648 && id <= 2_147_483_647 ? id : undefined;
}

/** A key list field: undefined when absent, null when it is not text (Gson's getAsString fails). */
function keysField(request: JsonObject, name: string): string[] | undefined | null {
  if (!(name in request)) return undefined;
  const value = request[name];
  if (typeof value === 'string') return keyList(value);
  if (typeof value === 'number' || typeof value === 'boolean') return keyList(String(value));
  return null;
}

/** MQTT topic filter matching for the filters the server grants ('+' only). */
function matches(filter: string, topic: string): boolean {
  if (filter === topic) return true;
  const filterLevels = filter.split('/');
  const topicLevels = topic.split('/');
  if (filterLevels.length !== topicLevels.length) return false;
  return filterLevels.every((level, index) => level === '+' || level === topicLevels[index]);
}
