/**
 * A gateway's one MQTT connection, speaking for the devices behind it (spec §5): an MqttSession
 * whose hooks announce each device on `v1/gateway/connect` once per connection (again after every
 * reconnect, and always before the device's first data on it), whose queue holds shared publishes
 * that messages for many devices join until they are written, and whose inbound messages are
 * routed by their `device` field.
 *
 * ThingsBoard answers nothing at all on v1/gateway/* to a device that is not a gateway, so the
 * first announcement on each connection is watched: no PUBACK within the timeout, and the session
 * gives up as refused, failing what waits and what comes until new credentials or a redeploy.
 */

import type { DeviceDataKind } from '../protocol/device-data';
import {
  MAX_MQTT_PACKET_BYTES,
  maxPublishPayload,
  mqttPublishSize,
  rpcRequestId,
} from '../protocol/device-data';
import { invalidInput } from '../protocol/device-errors';
import type { DeviceError } from '../protocol/device-errors';
import {
  GATEWAY_TOPICS,
  gatewayConnectText,
  gatewayDataPart,
  gatewayDisconnectText,
  gatewayRpcReplyText,
  parseGatewayAttributes,
  parseGatewayRpc,
} from '../protocol/gateway-data';
import { quotePrefix } from '../protocol/text';
import { GatewayBatch, devicePartBytes } from './gateway-batch';
import { namedDevice } from './gateway-batch';
import type { Announcer, NamedDevice } from './gateway-batch';
import { MqttSession } from './mqtt-session';
import { DEVICE_SUBSCRIPTIONS, readDeviceMessage } from './settings';
import type { InboundEvents, MqttSessionSettings } from './settings';
import type { Announcement, ComposedPayload } from './outgoing-queue';
import { copyError, notGatewayError } from './session-errors';
import type {
  DeviceLogin,
  DeviceMessage,
  DeviceServer,
  SessionChange,
  SessionCloseReason,
  SessionState,
} from './types';

export interface GatewayEvents extends InboundEvents {
  state(change: Omit<SessionChange, 'deviceName'>): void;
}

/** A publish naming one device (an RPC reply, a disconnect), announced first where needed. */
class OneDevicePublish implements ComposedPayload {
  readonly count = 1;
  constructor(
    private readonly text: string,
    private readonly announce: () => readonly Announcement[],
  ) {}

  compose(): { text: string; before: readonly Announcement[] } {
    return { text: this.text, before: this.announce() };
  }
}

export class GatewaySession {
  private readonly session: MqttSession;
  /** Every device announced so far, with its type: announced again on each new connection. */
  private readonly known = new Map<string, NamedDevice>();
  /** Devices announced on the current connection. */
  private announcedHere = new Set<string>();
  /** The publish of each kind that messages may still join. */
  private open: Partial<Record<DeviceDataKind, GatewayBatch>> = {};
  private readonly maxPayload: Record<DeviceDataKind, number>;
  /** Counts connections, so a late answer or timer is not taken for the current one's. */
  private connection = 0;
  private verified = false;
  private check: NodeJS.Timeout | undefined;
  /** How long the first announcement may wait for its PUBACK: the latest message's timeout. */
  private answerTimeoutMs: number;
  /**
   * Moves on with each connection and each disconnect: every device known is announced on the
   * current connection unless one of those happened since.
   */
  private epoch = 0;
  private readonly announcer: Announcer = (names, deviceOf, allKnownAt) =>
    allKnownAt === this.epoch ? [] : this.announcementsFor(names, deviceOf);

  constructor(
    readonly name: string,
    login: DeviceLogin,
    server: DeviceServer,
    private readonly settings: MqttSessionSettings,
    private readonly events: GatewayEvents,
    timeoutMs: number,
  ) {
    this.answerTimeoutMs = timeoutMs;
    const shape = { qos: 1, protocolVersion: settings.protocolVersion } as const;
    this.maxPayload = {
      telemetry: maxPublishPayload(GATEWAY_TOPICS.telemetry, shape),
      attributes: maxPublishPayload(GATEWAY_TOPICS.attributes, shape),
    };
    this.session = new MqttSession(name, login, server, settings, {
      // The gateway's own device topics too: it is also the device's one session.
      subscriptions: [GATEWAY_TOPICS.attributes, GATEWAY_TOPICS.rpc, ...DEVICE_SUBSCRIPTIONS],
      coalesceWrites: true,
      onConnected: () => this.onConnected(),
      onMessage: (topic, payload) => this.onMessage(topic, payload),
      onState: (change) => {
        if (change.state !== 'connected') this.stopCheck();
        this.events.state(change);
      },
    });
  }

  get state(): SessionState {
    return this.session.state;
  }

  get currentLogin(): DeviceLogin {
    return this.session.currentLogin;
  }

  /** Publishes waiting to be written. */
  get waitingCount(): number {
    return this.session.waitingCount;
  }

  /** Devices announced so far (and announced again after a reconnect). */
  get deviceCount(): number {
    return this.known.size;
  }

  /** The name exactly as announced before (so already checked and trimmed). */
  isKnown(deviceName: unknown): deviceName is string {
    return typeof deviceName === 'string' && this.known.has(deviceName);
  }

  updateLogin(login: DeviceLogin): void {
    this.session.updateLogin(login);
  }

  /**
   * Sends one message of a device behind the gateway (names and type checked by the caller);
   * INVALID_INPUT before it joins any publish, so a bad one fails alone.
   */
  send(
    deviceName: string,
    deviceType: string,
    message: DeviceMessage,
    timeoutMs: number,
  ): Promise<void> {
    this.answerTimeoutMs = timeoutMs;
    if (message.kind === 'rpc-reply') {
      const text = gatewayRpcReplyText(deviceName, rpcRequestId(message.id), message.payload);
      this.checkSize(GATEWAY_TOPICS.rpc, Buffer.byteLength(text, 'utf8'), deviceName);
      const device = this.known.get(deviceName) ?? namedDevice(deviceName, deviceType);
      const reply = new OneDevicePublish(text, () =>
        this.announcer([deviceName], () => device, undefined),
      );
      return this.publish(GATEWAY_TOPICS.rpc, reply, timeoutMs);
    }
    const { kind, payload } = message;
    const part = gatewayDataPart(kind, payload);
    const partBytes = Buffer.byteLength(part, 'utf8');
    const topic = GATEWAY_TOPICS[kind];
    // Alone in its publish, `{` + the device's entry + `}`, under the limit however the name is
    // escaped (at most 6 bytes a character), or checked exactly.
    const known = this.known.get(deviceName);
    const device = known ?? namedDevice(deviceName, deviceType);
    if (partBytes + 6 * deviceName.length + 16 > this.maxPayload[kind]) {
      this.checkSize(topic, 2 + devicePartBytes(kind, device.json, partBytes), deviceName);
    }
    return new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + timeoutMs;
      const open = this.open[kind];
      // A message joins a waiting publish that must be accepted by its own deadline, and not
      // much before it: the publish fails as a whole at the deadline of the message that opened it.
      if (
        open !== undefined &&
        open.deadline <= deadline &&
        open.deadline >= deadline - timeoutMs / 10 &&
        open.add(deviceName, device, part, partBytes, resolve, reject, known !== undefined)
      ) {
        return;
      }
      const batch = new GatewayBatch(
        kind,
        deadline,
        this.maxPayload[kind],
        this.announcer,
        this.epoch,
      );
      batch.add(deviceName, device, part, partBytes, resolve, reject, known !== undefined);
      this.open[kind] = batch;
      this.session.enqueue(topic, batch, 1, timeoutMs, (err) => batch.settle(this.verdict(err)));
    });
  }

  /** A message of the gateway as a device itself (v1/devices/me/*), on its one connection. */
  sendAsDevice(topic: string, text: string, qos: 0 | 1, timeoutMs: number): Promise<void> {
    return this.session.send(topic, text, qos, timeoutMs);
  }

  /** `v1/gateway/disconnect` for the device, after what was queued for it; it is forgotten. */
  disconnectDevice(deviceName: string, timeoutMs: number): Promise<void> {
    this.known.delete(deviceName);
    this.epoch++;
    // Data sent later must not join a publish queued before the disconnect.
    this.open = {};
    const disconnect = new OneDevicePublish(gatewayDisconnectText(deviceName), () => {
      // Announced before this was written (for data queued ahead of it): forgotten again.
      this.announcedHere.delete(deviceName);
      this.known.delete(deviceName);
      this.epoch++;
      return [];
    });
    return this.publish(GATEWAY_TOPICS.disconnect, disconnect, timeoutMs);
  }

  /** As MqttSession.end; resolves with the count of messages never sent. */
  end(reason: SessionCloseReason, rejectWaiting: boolean): Promise<number> {
    this.open = {};
    return this.session.end(reason, rejectWaiting);
  }

  private publish(topic: string, body: ComposedPayload, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.session.enqueue(topic, body, 1, timeoutMs, (err?: DeviceError) => {
        const verdict = this.verdict(err);
        if (verdict === undefined) resolve();
        else reject(verdict);
      });
    });
  }

  private checkSize(topic: string, payloadBytes: number, deviceName: string): void {
    const size = mqttPublishSize(topic, payloadBytes, {
      qos: 1,
      protocolVersion: this.settings.protocolVersion,
    });
    if (size > MAX_MQTT_PACKET_BYTES) {
      throw invalidInput(
        `This message of device ${quotePrefix(deviceName, 64)} would make an MQTT packet of ` +
          `${size} bytes on ${topic}, even alone; ThingsBoard closes the connection of a gateway ` +
          `that sends more than ${MAX_MQTT_PACKET_BYTES}, with it every device behind it. Split ` +
          'the data into several messages.',
      );
    }
  }

  /** A new connection: every device known is announced again, ahead of the queue. */
  private onConnected(): readonly Announcement[] {
    this.connection++;
    this.epoch++;
    this.verified = false;
    this.stopCheck();
    this.announcedHere = new Set();
    return this.announcementsFor(this.known.keys(), (name) => this.known.get(name) as NamedDevice);
  }

  /** Announcements for the devices not yet announced on this connection. */
  private announcementsFor(
    names: Iterable<string>,
    deviceOf: (name: string) => NamedDevice,
  ): Announcement[] {
    const announcements: Announcement[] = [];
    for (const name of names) {
      if (this.announcedHere.has(name)) continue;
      this.announcedHere.add(name);
      let known = this.known.get(name);
      if (known === undefined) {
        known = deviceOf(name);
        this.known.set(name, known);
      }
      const announcement: Announcement = {
        topic: GATEWAY_TOPICS.connect,
        text: gatewayConnectText(name, known.type),
      };
      if (!this.verified && this.check === undefined) this.watch(announcement);
      announcements.push(announcement);
    }
    return announcements;
  }

  /** The first announcement on a connection: its PUBACK shows the server takes us as a gateway. */
  private watch(announcement: Announcement): void {
    const connection = this.connection;
    const waitMs = this.answerTimeoutMs;
    announcement.acknowledged = () => {
      if (connection !== this.connection) return;
      this.verified = true;
      this.stopCheck();
    };
    this.check = setTimeout(() => {
      this.check = undefined;
      if (connection === this.connection && !this.verified && this.state === 'connected') {
        this.notGateway(waitMs);
      }
    }, waitMs);
  }

  /**
   * A publish that timed out unanswered while the first announcement waits too: nothing on this
   * connection was ever acknowledged within a message's whole timeout, so the server ignores us.
   */
  private verdict(err: DeviceError | undefined): DeviceError | undefined {
    if (err?.status !== 'TIMEOUT' || !err.sent || this.verified || this.check === undefined) {
      return err;
    }
    return this.notGateway(this.answerTimeoutMs);
  }

  /** Fails what waits and what comes with the advice, until new credentials or a redeploy. */
  private notGateway(waitedMs: number): DeviceError {
    this.stopCheck();
    this.open = {};
    const problem = notGatewayError(this.session.endpoint, quotePrefix(this.name, 64), waitedMs);
    this.session.refuse(problem);
    return copyError(problem);
  }

  private stopCheck(): void {
    if (this.check !== undefined) clearTimeout(this.check);
    this.check = undefined;
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic === GATEWAY_TOPICS.rpc) {
      const request = parseGatewayRpc(payload);
      if (request !== undefined) this.events.rpc({ ...request, gateway: this.name });
    } else if (topic === GATEWAY_TOPICS.attributes) {
      const update = parseGatewayAttributes(payload);
      if (update !== undefined) this.events.attributes({ ...update, gateway: this.name });
    } else {
      readDeviceMessage(this.name, topic, payload, this.events);
    }
  }
}
