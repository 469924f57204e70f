/**
 * MQTT listener (3.1.1 and 5) that behaves like ThingsBoard's MqttTransportHandler for provisioning
 * sessions and, minimally, for device sessions (telemetry, attributes, gateway topics).
 */

import * as net from 'node:net';
import * as tls from 'node:tls';
import { generate, parser, type Packet, type IConnectPacket } from 'mqtt-packet';
import type { ProvisioningDesk, Verdict } from './desk';
import { mask } from './format';
import { listenOn } from './listen';
import type { Tenant } from './state';
import type { EmulatedDevice, EmulatorTlsOptions } from './types';

export const PROVISION_REQUEST_TOPIC = '/provision/request';
export const PROVISION_RESPONSE_TOPIC = '/provision/response';

const CONNACK_ACCEPTED = 0;
const CONNACK_NOT_AUTHORIZED_V3 = 5;
const CONNACK_NOT_AUTHORIZED_V5 = 0x87;
const SUBACK_FAILURE_V3 = 0x80;
const SUBACK_TOPIC_FILTER_INVALID_V5 = 0x8f;
const PUBACK_SUCCESS = 0;
const PUBACK_IMPLEMENTATION_SPECIFIC_ERROR = 0x83;
const PUBACK_TOPIC_NAME_INVALID = 0x90;
const PUBACK_PAYLOAD_FORMAT_INVALID = 0x99;
const UNSUBACK_NO_SUBSCRIPTION_EXISTED = 0x11;

const DEVICE_TOPICS = {
  telemetry: 'v1/devices/me/telemetry',
  attributes: 'v1/devices/me/attributes',
} as const;
const GATEWAY_TOPIC_PREFIX = 'v1/gateway/';

export interface MqttServerContext {
  tenant: Tenant;
  desk: ProvisioningDesk;
  closeAfterAnswerMs: number;
}

export class MqttServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly sessions = new Set<MqttSession>();

  constructor(
    private readonly context: MqttServerContext,
    tlsOptions?: EmulatorTlsOptions,
  ) {
    if (tlsOptions === undefined) {
      this.server = net.createServer((socket) => this.accept(socket));
    } else {
      this.server = tls.createServer(
        {
          key: tlsOptions.key,
          cert: tlsOptions.cert,
          ca: tlsOptions.ca,
          requestCert: tlsOptions.requestCert === true,
          // Device certificates are matched to stored X509 credentials, not to a CA.
          rejectUnauthorized: false,
        },
        (socket) => this.accept(socket),
      );
    }
    // Raw sockets too, so stop() also ends connections still in the TLS handshake.
    this.server.on('connection', (socket: net.Socket) => this.track(socket));
  }

  listen(port: number, host: string): Promise<number> {
    return listenOn(this.server, port, host);
  }

  async close(): Promise<void> {
    for (const session of this.sessions) session.dispose();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  private accept(socket: net.Socket): void {
    this.track(socket);
    // As Netty does by default; otherwise Nagle holds the answer back behind its PUBACK.
    socket.setNoDelay(true);
    const session = new MqttSession(socket, this.context);
    this.sessions.add(session);
    socket.once('close', () => this.sessions.delete(session));
  }
}

type Mode = 'connecting' | 'provision' | 'device';

class MqttSession {
  private mode: Mode = 'connecting';
  private protocolVersion: 3 | 4 | 5 = 4;
  private device: EmulatedDevice | undefined;
  /** Granted QoS of the /provision/response subscription, when there is one. */
  private responseQos: 0 | 1 | undefined;
  private nextMessageId = 1;
  private closeTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private readonly peerGone = new AbortController();

  constructor(
    private readonly socket: net.Socket,
    private readonly context: MqttServerContext,
  ) {
    const packets = parser();
    packets.on('packet', (packet: Packet) => this.onPacket(packet));
    packets.on('error', () => this.socket.destroy());
    socket.on('data', (chunk: Buffer) => packets.parse(chunk));
    socket.on('error', () => undefined);
    socket.once('close', () => this.dispose());
  }

  dispose(): void {
    if (this.closeTimer !== undefined) clearTimeout(this.closeTimer);
    this.closeTimer = undefined;
    this.peerGone.abort();
  }

  private get v5(): boolean {
    return this.protocolVersion === 5;
  }

  private onPacket(packet: Packet): void {
    if (this.closing) return;
    if (this.mode === 'connecting') {
      if (packet.cmd === 'connect') this.onConnect(packet);
      else this.socket.destroy();
      return;
    }
    switch (packet.cmd) {
      case 'connect':
        // A second CONNECT is a protocol violation.
        this.socket.destroy();
        return;
      case 'pingreq':
        this.send({ cmd: 'pingresp' });
        return;
      case 'disconnect':
        this.closeGracefully();
        return;
      case 'subscribe':
        if (this.mode === 'provision') this.onProvisionSubscribe(packet.messageId ?? 0, packet);
        else this.onDeviceSubscribe(packet.messageId ?? 0, packet);
        return;
      case 'unsubscribe':
        this.onUnsubscribe(packet.messageId ?? 0, packet.unsubscriptions);
        return;
      case 'publish':
        if (this.mode === 'provision') void this.onProvisionPublish(packet);
        else this.onDevicePublish(packet);
        return;
      default:
        // PUBACK for our QoS 1 response and anything else: nothing to do.
        return;
    }
  }

  private onConnect(packet: IConnectPacket): void {
    this.protocolVersion = packet.protocolVersion ?? 4;
    const username = packet.username;
    if (username === 'provision' || packet.clientId === 'provision') {
      // Provisioning sessions: the password is ignored and CONNACK is always 0.
      this.mode = 'provision';
      this.connack(CONNACK_ACCEPTED);
      return;
    }
    const device = this.authenticate(packet);
    if (device === undefined) {
      this.context.desk.note('mqtt', `device login refused (username ${describeSecret(username)})`);
      this.connack(this.v5 ? CONNACK_NOT_AUTHORIZED_V5 : CONNACK_NOT_AUTHORIZED_V3);
      this.closeGracefully();
      return;
    }
    this.mode = 'device';
    this.device = device;
    this.context.desk.note('mqtt', `device ${JSON.stringify(device.name)} connected`);
    this.connack(CONNACK_ACCEPTED);
  }

  private authenticate(packet: IConnectPacket): EmulatedDevice | undefined {
    if (this.socket instanceof tls.TLSSocket) {
      const certificate = this.socket.getPeerCertificate();
      // With a client certificate the server authenticates by it alone.
      if (certificate?.raw !== undefined) {
        return this.context.tenant.deviceByCertificate(certificate.raw.toString('base64'));
      }
    }
    return this.context.tenant.authenticateMqtt({
      clientId: packet.clientId,
      username: packet.username,
      password: packet.password?.toString('utf8'),
    });
  }

  private onProvisionSubscribe(
    messageId: number,
    packet: { subscriptions: Array<{ topic: string; qos: number }> },
  ): void {
    // Servers before November 2024 neither answered nor registered the subscription.
    if (this.context.desk.noSuback) return;
    const granted = packet.subscriptions.map(({ topic, qos }) => {
      if (topic !== PROVISION_RESPONSE_TOPIC) {
        return this.v5 ? SUBACK_TOPIC_FILTER_INVALID_V5 : SUBACK_FAILURE_V3;
      }
      const qosGranted = qos >= 1 ? 1 : 0;
      this.responseQos = qosGranted;
      return qosGranted;
    });
    this.send({ cmd: 'suback', messageId, granted });
  }

  private onDeviceSubscribe(
    messageId: number,
    packet: { subscriptions: Array<{ topic: string; qos: number }> },
  ): void {
    const granted = packet.subscriptions.map(({ topic, qos }) => {
      if (!topic.startsWith('v1/')) {
        return this.v5 ? SUBACK_TOPIC_FILTER_INVALID_V5 : SUBACK_FAILURE_V3;
      }
      return qos >= 1 ? 1 : 0;
    });
    this.send({ cmd: 'suback', messageId, granted });
  }

  private onUnsubscribe(messageId: number, filters: string[]): void {
    if (this.mode === 'provision') {
      if (this.context.desk.noSuback) return;
      const had = filters.map(
        (filter) => filter === PROVISION_RESPONSE_TOPIC && this.responseQos !== undefined,
      );
      if (filters.includes(PROVISION_RESPONSE_TOPIC)) this.responseQos = undefined;
      this.send({
        cmd: 'unsuback',
        messageId,
        granted: this.v5 ? had.map((was) => (was ? 0 : UNSUBACK_NO_SUBSCRIPTION_EXISTED)) : [],
      });
      return;
    }
    this.send({ cmd: 'unsuback', messageId, granted: filters.map(() => 0) });
  }

  private async onProvisionPublish(packet: {
    topic: string;
    qos: number;
    messageId?: number;
    payload: Buffer | string;
  }): Promise<void> {
    const messageId = packet.qos > 0 ? (packet.messageId ?? 0) : 0;
    if (packet.qos > 1) {
      // The server supports QoS 0 and 1 only.
      this.closeGracefully();
      return;
    }
    if (packet.topic !== PROVISION_REQUEST_TOPIC) {
      this.puback(messageId, PUBACK_TOPIC_NAME_INVALID);
      this.closeGracefully();
      return;
    }
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    let verdict: Verdict;
    try {
      verdict = await this.context.desk.receive('mqtt', payload, this.peerGone.signal);
    } catch {
      verdict = { kind: 'internal-error' };
    }
    if (this.socket.destroyed || this.closing) return;
    switch (verdict.kind) {
      case 'answer':
        // For QoS 1 the PUBACK waits for the result and goes just before the response.
        this.puback(messageId, PUBACK_SUCCESS);
        this.send({
          cmd: 'publish',
          topic: PROVISION_RESPONSE_TOPIC,
          payload: Buffer.from(verdict.body, 'utf8'),
          // Not subscribed: QoS 1 all the same.
          qos: this.responseQos ?? 1,
          messageId: (this.responseQos ?? 1) > 0 ? this.takeMessageId() : undefined,
          retain: false,
          dup: false,
        });
        this.scheduleClose();
        return;
      case 'malformed':
      case 'internal-error':
        this.puback(messageId, PUBACK_IMPLEMENTATION_SPECIFIC_ERROR);
        this.closeGracefully();
        return;
      case 'drop':
        this.socket.destroy();
        return;
      case 'hold':
        return;
    }
  }

  private onDevicePublish(packet: {
    topic: string;
    qos: number;
    messageId?: number;
    payload: Buffer | string;
  }): void {
    const device = this.device;
    if (device === undefined) return;
    const messageId = packet.qos > 0 ? (packet.messageId ?? 0) : 0;
    if (packet.qos > 1) {
      this.closeGracefully();
      return;
    }
    const topic = packet.topic;
    const recorded =
      topic === DEVICE_TOPICS.telemetry ||
      topic === DEVICE_TOPICS.attributes ||
      (topic.startsWith(GATEWAY_TOPIC_PREFIX) && device.gateway);
    if (!recorded) {
      if (topic.startsWith('v1/devices/me/') || topic.startsWith(GATEWAY_TOPIC_PREFIX)) {
        // RPC replies, attribute requests, claims, a non-gateway on gateway topics: acknowledged, ignored.
        this.puback(
          messageId,
          topic.startsWith(GATEWAY_TOPIC_PREFIX) ? PUBACK_TOPIC_NAME_INVALID : PUBACK_SUCCESS,
        );
      } else {
        this.puback(messageId, PUBACK_TOPIC_NAME_INVALID);
      }
      return;
    }
    let data: unknown;
    try {
      data = JSON.parse(Buffer.from(packet.payload).toString('utf8'));
    } catch {
      // v5 clients get a PUBACK saying so; v3.1.1 has no way to say it, so the server closes.
      if (this.v5 && messageId > 0) this.puback(messageId, PUBACK_PAYLOAD_FORMAT_INVALID);
      else this.closeGracefully();
      return;
    }
    if (topic === DEVICE_TOPICS.telemetry) {
      device.telemetry.push(data);
    } else if (topic === DEVICE_TOPICS.attributes) {
      if (typeof data === 'object' && data !== null && !Array.isArray(data)) {
        Object.assign(device.attributes, data);
      }
    } else {
      device.gatewayMessages.push({ topic, payload: data });
    }
    this.context.desk.note('mqtt', `${topic} from ${JSON.stringify(device.name)}`);
    this.puback(messageId, PUBACK_SUCCESS);
  }

  private connack(code: number): void {
    if (this.v5) this.send({ cmd: 'connack', reasonCode: code, sessionPresent: false });
    else this.send({ cmd: 'connack', returnCode: code, sessionPresent: false });
  }

  /** QoS 0 publishes (message id 0) get no PUBACK. */
  private puback(messageId: number, reasonCode: number): void {
    if (messageId <= 0) return;
    if (this.v5) this.send({ cmd: 'puback', messageId, reasonCode });
    else this.send({ cmd: 'puback', messageId });
  }

  private send(packet: Packet): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    this.socket.write(generate(packet, { protocolVersion: this.protocolVersion }));
  }

  private takeMessageId(): number {
    const id = this.nextMessageId;
    this.nextMessageId = id >= 0xffff ? 1 : id + 1;
    return id;
  }

  /** The server closes the connection some time after answering, without a DISCONNECT. */
  private scheduleClose(): void {
    if (this.closeTimer !== undefined) return;
    this.closeTimer = setTimeout(() => {
      this.closeTimer = undefined;
      this.closeGracefully();
    }, this.context.closeAfterAnswerMs);
  }

  /** Flushes what was written, sends FIN, then releases the socket. */
  private closeGracefully(): void {
    if (this.closing) return;
    this.closing = true;
    if (this.socket.destroyed) return;
    this.socket.end(() => this.socket.destroy());
  }
}

function describeSecret(value: string | undefined): string {
  return value === undefined || value === '' ? '(none)' : mask(value);
}
