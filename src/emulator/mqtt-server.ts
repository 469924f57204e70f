/**
 * MQTT listener (3.1.1 and 5) that behaves like ThingsBoard's MqttTransportHandler: one connection
 * per socket, which after CONNECT becomes a provisioning session or a device session.
 */

import * as net from 'node:net';
import * as tls from 'node:tls';
import { generate, parser, type IConnectPacket, type Packet } from 'mqtt-packet';
import type { ProvisioningDesk } from './desk';
import { mask } from './format';
import { listenOn } from './listen';
import { DeviceSession } from './mqtt-device';
import { FrameReader } from './mqtt-frames';
import { ProvisioningSession } from './mqtt-provision';
import type { Recorder } from './records';
import type { SessionRegistry } from './sessions';
import type { Tenant } from './state';
import type { EmulatedDevice, EmulatorTlsOptions } from './types';

const CONNACK_ACCEPTED = 0;
const DISCONNECT_MALFORMED_PACKET = 0x81;

/** CONNACK refusals by what the login carried (onValidateDeviceResponse): 3.1.1 code, then 5. */
const REFUSED_WITH_USERNAME = { v3: 5, v5: 0x86 };
const REFUSED_CLIENT_ID_ONLY = { v3: 2, v5: 0x85 };
const REFUSED_NOTHING_OR_CERTIFICATE = { v3: 5, v5: 0x87 };

export interface MqttServerContext {
  tenant: Tenant;
  desk: ProvisioningDesk;
  registry: SessionRegistry;
  recorder: Recorder;
  closeAfterAnswerMs: number;
  connectTimeoutMs: number;
  inactivityTimeoutMs: number;
  clientRpcTimeoutMs: number;
}

/** What a session does with the packets the connection does not handle itself. */
export interface MqttSessionHandler {
  onPacket(packet: Packet): void;
  /** The connection is gone. */
  dispose(): void;
}

export class MqttServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly connections = new Set<MqttConnection>();

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
    for (const connection of this.connections) connection.dispose();
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
    const connection = new MqttConnection(socket, this.context);
    this.connections.add(connection);
    socket.once('close', () => this.connections.delete(connection));
  }
}

/** One TCP (or TLS) connection: framing, limits, CONNECT, and the packets every session shares. */
export class MqttConnection {
  protocolVersion = 4;
  clientId = '';
  readonly connectedAt = Date.now();
  private handler: MqttSessionHandler | undefined;
  private connected = false;
  private closing = false;
  private disposed = false;
  private nextMessageId = 1;
  private lastPacketAt = Date.now();
  private readonly frames = new FrameReader();
  private readonly packets = parser();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    readonly socket: net.Socket,
    readonly context: MqttServerContext,
  ) {
    this.packets.on('packet', (packet: Packet) => this.onPacket(packet));
    this.packets.on('error', () => this.socket.destroy());
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined);
    socket.once('close', () => this.dispose());
    this.after(context.connectTimeoutMs, () => {
      if (!this.connected) {
        this.note('connection closed: no CONNECT in time');
        this.socket.destroy();
      }
    });
    this.watchInactivity(context.inactivityTimeoutMs);
  }

  get v5(): boolean {
    return this.protocolVersion === 5;
  }

  get open(): boolean {
    return !this.closing && !this.socket.destroyed;
  }

  get remoteAddress(): string {
    return this.socket.remoteAddress ?? '';
  }

  get remotePort(): number {
    return this.socket.remotePort ?? 0;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.handler?.dispose();
  }

  send(packet: Packet): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    this.socket.write(generate(packet, { protocolVersion: this.protocolVersion as 3 | 4 | 5 }));
  }

  /** QoS 0 publishes (message id 0) get no PUBACK; 3.1.1 has no reason codes. */
  puback(messageId: number, reasonCode: number): void {
    if (messageId <= 0) return;
    if (this.v5) this.send({ cmd: 'puback', messageId, reasonCode });
    else this.send({ cmd: 'puback', messageId });
  }

  /** Publishes to the client; returns the message id used (0 for QoS 0). */
  publish(topic: string, payload: string, qos: 0 | 1): number {
    const messageId = qos > 0 ? this.takeMessageId() : 0;
    this.send({
      cmd: 'publish',
      topic,
      payload: Buffer.from(payload, 'utf8'),
      qos,
      messageId: qos > 0 ? messageId : undefined,
      retain: false,
      dup: false,
    });
    return messageId;
  }

  /** Flushes what was written, sends FIN, then releases the socket. */
  closeGracefully(): void {
    if (this.closing) return;
    this.closing = true;
    if (this.socket.destroyed) return;
    this.socket.end(() => this.socket.destroy());
  }

  /** MQTT 5: DISCONNECT with this reason, then close; 3.1.1 just closes. */
  disconnect(reasonCode: number): void {
    if (this.closing) return;
    if (this.v5) this.send({ cmd: 'disconnect', reasonCode });
    this.closeGracefully();
  }

  /** A timer that dies with the connection. */
  after(ms: number, action: () => void): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      action();
    }, ms);
    this.timers.add(timer);
    return timer;
  }

  note(text: string): void {
    this.context.desk.note('mqtt', text);
  }

  private takeMessageId(): number {
    const id = this.nextMessageId;
    this.nextMessageId = id >= 0xffff ? 1 : id + 1;
    return id;
  }

  private onData(chunk: Buffer): void {
    for (const event of this.frames.push(chunk)) {
      if (event.kind === 'packet') {
        this.packets.parse(event.bytes);
        if (this.socket.destroyed) return;
        continue;
      }
      if (event.kind === 'too-large') {
        this.note(`connection closed: a packet of ${event.length} bytes is over the limit`);
        if (this.connected) this.disconnect(DISCONNECT_MALFORMED_PACKET);
        else this.closeGracefully();
      } else {
        this.socket.destroy();
      }
      return;
    }
  }

  private onPacket(packet: Packet): void {
    if (this.closing || this.disposed) return;
    this.lastPacketAt = Date.now();
    if (!this.connected) {
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
      default:
        this.handler?.onPacket(packet);
    }
  }

  private onConnect(packet: IConnectPacket): void {
    this.connected = true;
    this.protocolVersion = packet.protocolVersion ?? 4;
    this.clientId = packet.clientId;
    const username = packet.username;
    if (username === 'provision' || packet.clientId === 'provision') {
      // Provisioning sessions: the password is ignored and CONNACK is always 0.
      this.connack(CONNACK_ACCEPTED, packet.clean === false);
      this.handler = new ProvisioningSession(this);
      return;
    }
    const login = this.authenticate(packet);
    if (login.device === undefined) {
      this.note(`device login refused (username ${describeSecret(username)})`);
      this.connack(this.v5 ? login.refusal.v5 : login.refusal.v3, false);
      // No DISCONNECT after a refused CONNACK: MQTT 5 forbids it, and clients cannot parse these codes.
      this.closeGracefully();
      return;
    }
    this.note(`device ${JSON.stringify(login.device.name)} connected`);
    this.connack(CONNACK_ACCEPTED, packet.clean === false);
    this.handler = new DeviceSession(this, login.device);
  }

  private authenticate(packet: IConnectPacket): {
    device: EmulatedDevice | undefined;
    refusal: { v3: number; v5: number };
  } {
    if (this.socket instanceof tls.TLSSocket) {
      const certificate = this.socket.getPeerCertificate();
      // With a client certificate the server authenticates by it alone.
      if (certificate?.raw !== undefined) {
        const body = certificate.raw.toString('base64');
        return {
          device: this.context.tenant.deviceByCertificate(body),
          refusal: REFUSED_NOTHING_OR_CERTIFICATE,
        };
      }
    }
    const device = this.context.tenant.authenticateMqtt({
      clientId: packet.clientId,
      username: packet.username,
      password: packet.password?.toString('utf8'),
    });
    let refusal = REFUSED_NOTHING_OR_CERTIFICATE;
    if (packet.username !== undefined || packet.password !== undefined) {
      refusal = REFUSED_WITH_USERNAME;
    } else if (packet.clientId.trim() !== '') {
      refusal = REFUSED_CLIENT_ID_ONLY;
    }
    return { device, refusal };
  }

  private connack(code: number, sessionPresent: boolean): void {
    // The server echoes "not clean" as session present, though it keeps nothing.
    const present = code === CONNACK_ACCEPTED && sessionPresent;
    if (this.v5) this.send({ cmd: 'connack', reasonCode: code, sessionPresent: present });
    else this.send({ cmd: 'connack', returnCode: code, sessionPresent: present });
  }

  /** Closed after `timeoutMs` without a packet from the client (the server's session timeout). */
  private watchInactivity(timeoutMs: number): void {
    const check = () => {
      const idle = Date.now() - this.lastPacketAt;
      if (idle < timeoutMs) {
        this.after(timeoutMs - idle, check);
        return;
      }
      this.note('connection closed: inactive');
      this.closeGracefully();
    };
    this.after(timeoutMs, check);
  }
}

function describeSecret(value: string | undefined): string {
  return value === undefined || value === '' ? '(none)' : mask(value);
}
