/**
 * Raw clients for the emulator tests: mqtt-packet over net, node:http, coap with a private agent,
 * and coap-packet over dgram where the exact datagrams matter. Nothing from our own transports.
 */

import assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as http from 'node:http';
import * as net from 'node:net';
import * as coap from 'coap';
import { generate as generateCoap, parse as parseCoap, type ParsedPacket } from 'coap-packet';
import { generate, parser, type Packet, type IConnectPacket } from 'mqtt-packet';
import { delay } from './common';
import { Emulator } from '../../src/emulator';
import type { EmulatorOptions, ProfileSpec } from '../../src/emulator/types';

export const CREATE: ProfileSpec = {
  name: 'create-profile',
  provisionDeviceKey: 'create-key',
  provisionDeviceSecret: 'create-secret',
  strategy: 'allow-create',
};
export const PRE: ProfileSpec = {
  name: 'pre-profile',
  provisionDeviceKey: 'pre-key',
  provisionDeviceSecret: 'pre-secret',
  strategy: 'check-pre-provisioned',
};
export const LEGACY: ProfileSpec = {
  name: 'legacy-profile',
  provisionDeviceKey: 'legacy-key',
  provisionDeviceSecret: 'legacy-secret',
  strategy: 'check-pre-provisioned-legacy',
};
export const DISABLED: ProfileSpec = {
  name: 'disabled-profile',
  provisionDeviceKey: 'disabled-key',
  provisionDeviceSecret: 'disabled-secret',
  strategy: 'disabled',
};

export const NOT_FOUND = '{"errorMsg":"Provision data was not found!","status":"NOT_FOUND"}';
export const FAILURE = '{"errorMsg":"Failed to provision device!","status":"FAILURE"}';

/** An emulator on ephemeral ports with the four test profiles. */
export function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  return Emulator.start({
    mqttPort: 0,
    httpPort: 0,
    coapPort: 0,
    profiles: [CREATE, PRE, LEGACY, DISABLED],
    ...options,
  });
}

export function request(profile: ProfileSpec, fields: Record<string, unknown> = {}): string {
  return JSON.stringify({
    provisionDeviceKey: profile.provisionDeviceKey,
    provisionDeviceSecret: profile.provisionDeviceSecret,
    ...fields,
  });
}

/** Resource names left after a couple of event-loop turns (closing handles need one to go). */
export async function activeResources(): Promise<string[]> {
  await new Promise((resolve) => setImmediate(resolve));
  await delay(20);
  return process.getActiveResourcesInfo().filter((name) => name !== 'TTYWrap');
}

/**
 * Fails if any kind of resource (socket, server, timer…) is more numerous than in `before`. Fewer
 * is fine: a timer someone else left may have fired meanwhile.
 */
export async function assertNoNewResources(
  before: string[],
  message = 'no handle left',
): Promise<void> {
  const count = (names: string[]) =>
    names.reduce(
      (counts, name) => counts.set(name, (counts.get(name) ?? 0) + 1),
      new Map<string, number>(),
    );
  const was = count(before);
  const now = count(await activeResources());
  const grown = [...now].filter(([name, n]) => n > (was.get(name) ?? 0));
  assert.deepEqual(grown, [], `${message}: ${JSON.stringify(grown)}`);
}

// ---------------------------------------------------------------- MQTT

export type MqttEvent = Packet | { cmd: 'closed' };

/** An MQTT client that shows every packet and the close, in order, and does nothing by itself. */
export class RawMqttClient {
  readonly events: MqttEvent[] = [];
  readonly closed: Promise<void>;
  private readonly waiters: Array<() => void> = [];
  private cursor = 0;
  private readonly protocolVersion: 4 | 5;

  private constructor(
    private readonly socket: net.Socket,
    protocolVersion: 4 | 5,
  ) {
    this.protocolVersion = protocolVersion;
    const packets = parser({ protocolVersion });
    packets.on('packet', (packet: Packet) => this.push(packet));
    socket.on('data', (chunk: Buffer) => packets.parse(chunk));
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.push({ cmd: 'closed' });
        resolve();
      }),
    );
  }

  /** Opens TCP and sends CONNECT; resolves with the client and its CONNACK. */
  static async connect(
    port: number,
    connect: Partial<IConnectPacket> & { protocolVersion?: 4 | 5 } = {},
  ): Promise<{ client: RawMqttClient; connack: MqttEvent }> {
    const protocolVersion = connect.protocolVersion ?? 4;
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new RawMqttClient(socket, protocolVersion);
    client.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion,
      clean: true,
      keepalive: 60,
      clientId: 'test-client',
      ...connect,
    } as IConnectPacket);
    const connack = await client.next();
    return { client, connack };
  }

  static async provisionSession(port: number, protocolVersion: 4 | 5 = 4): Promise<RawMqttClient> {
    const { client } = await RawMqttClient.connect(port, {
      protocolVersion,
      username: 'provision',
      clientId: 'provision-test',
    });
    return client;
  }

  send(packet: Packet): void {
    this.socket.write(generate(packet, { protocolVersion: this.protocolVersion }));
  }

  /** Bytes as they are, for what a packet encoder would refuse to produce. */
  writeRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  publish(topic: string, payload: string | Buffer, qos: 0 | 1, messageId = 1): void {
    this.send({
      cmd: 'publish',
      topic,
      payload: Buffer.from(payload),
      qos,
      messageId: qos > 0 ? messageId : undefined,
      retain: false,
      dup: false,
    });
  }

  subscribe(topics: Array<{ topic: string; qos: 0 | 1 | 2 }>, messageId = 1): void {
    this.send({ cmd: 'subscribe', messageId, subscriptions: topics });
  }

  /** The next event not yet taken; rejects after timeoutMs. */
  async next(timeoutMs = 3000): Promise<MqttEvent> {
    const deadline = Date.now() + timeoutMs;
    while (this.cursor >= this.events.length) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`no MQTT packet within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.events[this.cursor++];
  }

  /** Resolves true if nothing arrives within ms (the connection staying open). */
  async quietFor(ms: number): Promise<boolean> {
    await delay(ms);
    return this.cursor >= this.events.length;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private push(event: MqttEvent): void {
    this.events.push(event);
    for (const wake of this.waiters.splice(0)) wake();
  }
}

/** Provisions over MQTT the simple way (QoS 1, no subscription) and returns the response text. */
export async function provisionOverMqtt(port: number, body: string | Buffer): Promise<string> {
  const client = await RawMqttClient.provisionSession(port);
  try {
    client.publish('/provision/request', body, 1, 7);
    const puback = await client.next();
    if (puback.cmd !== 'puback') throw new Error(`expected PUBACK, got ${puback.cmd}`);
    const response = await client.next();
    if (response.cmd !== 'publish') throw new Error(`expected PUBLISH, got ${response.cmd}`);
    if (response.topic !== '/provision/response') throw new Error(`topic ${response.topic}`);
    return Buffer.from(response.payload).toString('utf8');
  } finally {
    client.destroy();
    await client.closed;
  }
}

// ---------------------------------------------------------------- HTTP

export interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export function httpRequest(
  port: number,
  path: string,
  options: {
    method?: string;
    body?: string | Buffer;
    agent?: http.Agent;
    signal?: AbortSignal;
  } = {},
): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'POST',
        agent: options.agent ?? false,
        signal: options.signal,
        headers: { 'Content-Type': 'application/json' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

export async function provisionOverHttp(
  port: number,
  body: string | Buffer,
  signal?: AbortSignal,
): Promise<HttpReply> {
  return httpRequest(port, '/api/v1/provision', { body, signal });
}

// ---------------------------------------------------------------- CoAP

export interface CoapReply {
  code: string;
  contentFormat: unknown;
  body: string;
}

/** One CoAP request through a private agent that is closed afterwards. */
export async function coapRequest(
  port: number,
  pathname: string,
  payload: string | Buffer,
  options: { confirmable?: boolean; method?: 'GET' | 'POST' } = {},
): Promise<CoapReply> {
  const agent = new coap.Agent({ type: 'udp4' });
  // The agent closes its socket by itself once its last request has its response.
  const agentClosed = new Promise<void>((resolve) => agent.once('close', () => resolve()));
  let answered = false;
  try {
    return await new Promise<CoapReply>((resolve, reject) => {
      const req = coap.request({
        hostname: '127.0.0.1',
        port,
        method: options.method ?? 'POST',
        pathname,
        confirmable: options.confirmable ?? true,
        agent,
      });
      req.on('response', (res: coap.IncomingMessage) => {
        answered = true;
        resolve({
          code: res.code,
          contentFormat: res.headers['Content-Format'],
          body: res.payload.toString('utf8'),
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  } finally {
    if (!answered) agent.close();
    await agentClosed;
  }
}

export function provisionOverCoap(port: number, body: string | Buffer): Promise<CoapReply> {
  return coapRequest(port, '/api/v1/provision', body);
}

/** A CoAP peer on a bare UDP socket: sends exact datagrams and records each one received. */
export class RawCoapPeer {
  readonly received: Array<{ at: number; packet: ParsedPacket }> = [];
  private readonly socket = dgram.createSocket('udp4');
  private readonly waiters: Array<() => void> = [];
  private readonly started = Date.now();

  static async open(): Promise<RawCoapPeer> {
    const peer = new RawCoapPeer();
    await new Promise<void>((resolve) => peer.socket.bind(0, '127.0.0.1', resolve));
    return peer;
  }

  private constructor() {
    this.socket.on('message', (message) => {
      this.received.push({ at: Date.now() - this.started, packet: parseCoap(message) });
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  post(
    port: number,
    path: string,
    payload: string,
    options: { confirmable: boolean; messageId: number; token?: Buffer },
  ): void {
    const message = generateCoap({
      messageId: options.messageId,
      token: options.token ?? Buffer.from('a1b2', 'hex'),
      code: '0.02',
      confirmable: options.confirmable,
      options: path
        .split('/')
        .filter((segment) => segment !== '')
        .map((segment) => ({ name: 'Uri-Path', value: Buffer.from(segment) })),
      payload: Buffer.from(payload),
    });
    this.socket.send(message, port, '127.0.0.1');
  }

  ack(port: number, messageId: number): void {
    const message = generateCoap({ messageId, code: '0.00', ack: true, token: Buffer.alloc(0) });
    this.socket.send(message, port, '127.0.0.1');
  }

  async waitFor(count: number, timeoutMs = 3000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.received.length < count) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`only ${this.received.length} CoAP messages received`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The first message that is not an empty ACK, or undefined after timeoutMs. */
  async response(timeoutMs: number): Promise<ParsedPacket | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.received.find(({ packet }) => packet.code !== '0.00');
      if (found !== undefined) return found.packet;
      const remaining = deadline - Date.now();
      if (remaining <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}
