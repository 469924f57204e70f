/** Shared pieces of the transport tests: emulator set-up, raw servers, certificates, leak checks. */

import * as assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { fork } from 'node:child_process';
import * as path from 'node:path';
import * as mqttPacket from 'mqtt-packet';
import type {
  EmulatedCredentials,
  EmulatedDevice,
  EmulatorOptions,
  EmulatorPorts,
  FaultSpec,
  ProfileSpec,
  RecordedRequest,
} from '../../src/emulator';
import { ProvisionError } from '../../src/protocol';
import type { ErrorStatus, ProvisionRequest } from '../../src/protocol';
import { closeHttpAgents } from '../../src/transports';
import type { TransportName, TransportTarget } from '../../src/transports';

export const HOST = '127.0.0.1';

export const ALLOW = { key: 'allow-key', secret: 'allow-secret' };
export const DISABLED = { key: 'disabled-key', secret: 'disabled-secret' };
export const PRE = { key: 'pre-key', secret: 'pre-secret' };
export const LEGACY = { key: 'legacy-key', secret: 'legacy-secret' };

export interface RemoteEmulator {
  ports: EmulatorPorts;
  setFaults(faults: FaultSpec): Promise<void>;
  addDevice(device: {
    name: string;
    profile: string;
    credentials: EmulatedCredentials;
  }): Promise<void>;
  device(name: string): Promise<EmulatedDevice | undefined>;
  devices(): Promise<EmulatedDevice[]>;
  requests(): Promise<RecordedRequest[]>;
  stop(): Promise<void>;
}

const DEFAULT_PROFILES: ProfileSpec[] = [
  {
    name: 'allow',
    provisionDeviceKey: ALLOW.key,
    provisionDeviceSecret: ALLOW.secret,
    strategy: 'allow-create',
  },
  {
    name: 'disabled',
    provisionDeviceKey: DISABLED.key,
    provisionDeviceSecret: DISABLED.secret,
    strategy: 'disabled',
  },
  {
    name: 'pre',
    provisionDeviceKey: PRE.key,
    provisionDeviceSecret: PRE.secret,
    strategy: 'check-pre-provisioned',
  },
  {
    name: 'legacy',
    provisionDeviceKey: LEGACY.key,
    provisionDeviceSecret: LEGACY.secret,
    strategy: 'check-pre-provisioned-legacy',
  },
];

/**
 * Starts the emulator in a child process (its sockets and timers stay out of the leak checks),
 * listening on ephemeral ports of 127.0.0.1, with the four test profiles.
 */
export async function startEmulator(extra: Partial<EmulatorOptions> = {}): Promise<RemoteEmulator> {
  const options: EmulatorOptions = {
    host: HOST,
    mqttPort: 0,
    httpPort: 0,
    coapPort: 0,
    profiles: DEFAULT_PROFILES,
    ...extra,
  };
  const child = fork(path.join(__dirname, 'transport-emulator-process.ts'), [], {
    execArgv: ['-r', require.resolve('tsx/cjs')],
    env: { ...process.env, TRANSPORT_TEST_EMULATOR: JSON.stringify(options) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  let nextId = 0;
  const ports = await new Promise<EmulatorPorts>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`emulator process exited (${code})`)));
    child.on(
      'message',
      (message: {
        ready?: boolean;
        ports?: EmulatorPorts;
        error?: string;
        id?: number;
        result?: unknown;
      }) => {
        if (message.ready === true && message.ports) resolve(message.ports);
        else if (message.ready === false) reject(new Error(message.error));
        else if (message.id !== undefined) {
          const call = pending.get(message.id);
          pending.delete(message.id);
          if (message.error !== undefined) call?.reject(new Error(message.error));
          else call?.resolve(message.result);
        }
      },
    );
  });
  child.removeAllListeners('exit');
  const call = <T>(method: string, ...args: unknown[]): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      nextId += 1;
      pending.set(nextId, { resolve: resolve as (value: unknown) => void, reject });
      child.send({ id: nextId, method, args });
    });
  return {
    ports,
    setFaults: (faults) => call('setFaults', faults),
    addDevice: (device) => call('addDevice', device),
    device: (name) => call('device', name),
    devices: () => call('devices'),
    requests: () => call('requests'),
    stop: async () => {
      if (child.exitCode !== null || !child.connected) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      await call('stop');
      await exited;
    },
  };
}

/**
 * Starts one emulator process before the enclosing suite and stops it after, handing it to `use`;
 * with `clearFaults`, every test starts without faults.
 */
export function emulatorForSuite(
  use: (emulator: RemoteEmulator) => void,
  extra: Partial<EmulatorOptions> = {},
  { clearFaults = false } = {},
): void {
  let emulator: RemoteEmulator | undefined;
  before(async function () {
    emulator = await startEmulator(extra);
    use(emulator);
  });
  after(async function () {
    await emulator?.stop();
  });
  if (clearFaults) {
    beforeEach(async function () {
      await emulator?.setFaults({});
    });
  }
}

export function targetOf(emulator: RemoteEmulator, transport: TransportName): TransportTarget {
  return { host: HOST, port: emulator.ports[transport] };
}

let counter = 0;
/** A device name no other test uses. */
export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}

export function allowRequest(
  deviceName: string,
  extra: Partial<ProvisionRequest> = {},
): ProvisionRequest {
  return {
    provisionDeviceKey: ALLOW.key,
    provisionDeviceSecret: ALLOW.secret,
    deviceName,
    ...extra,
  };
}

export function deadlineIn(ms: number): number {
  return Date.now() + ms;
}

export interface ExpectedError {
  status: ErrorStatus;
  transient?: boolean;
  maybeDelivered?: boolean;
  message?: RegExp;
}

/** Awaits a rejection and checks it is the ProvisionError described. */
export async function expectProvisionError(
  promise: Promise<unknown>,
  expected: ExpectedError,
): Promise<ProvisionError> {
  let caught: unknown;
  try {
    const value = await promise;
    assert.fail(`expected a ${expected.status} rejection, got ${JSON.stringify(value)}`);
  } catch (err) {
    caught = err;
  }
  if (!(caught instanceof ProvisionError)) {
    assert.fail(`expected a ProvisionError, got ${String(caught)}`);
  }
  assert.equal(caught.status, expected.status, caught.message);
  if (expected.transient !== undefined)
    assert.equal(caught.transient, expected.transient, caught.message);
  if (expected.maybeDelivered !== undefined) {
    assert.equal(caught.maybeDelivered, expected.maybeDelivered, caught.message);
  }
  if (expected.message !== undefined) assert.match(caught.message, expected.message);
  return caught;
}

/** Counts of each kind of active resource (sockets, timers, pending requests). */
export function resourceCounts(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo())
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return counts;
}

function excess(baseline: Map<string, number>): string[] {
  const found: string[] = [];
  for (const [kind, count] of resourceCounts()) {
    const before = baseline.get(kind) ?? 0;
    if (count > before) found.push(`${kind} x${count - before}`);
  }
  return found;
}

async function settledExcess(baseline: Map<string, number>, graceMs: number): Promise<string[]> {
  const until = Date.now() + graceMs;
  await new Promise((resolve) => setImmediate(resolve));
  let left = excess(baseline);
  while (left.length > 0 && Date.now() < until) {
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 5));
    left = excess(baseline);
  }
  return left;
}

/**
 * Fails when more resources are active than in the baseline: first as the exchange left them
 * (an idle pooled HTTP connection is unref'd, so it does not count), then once the HTTP pool is
 * closed. Closing handles finish within a few event-loop turns; the grace is far below any timer
 * we could leak.
 */
export async function assertNoLeaks(baseline: Map<string, number>, graceMs = 250): Promise<void> {
  const left = await settledExcess(baseline, graceMs);
  closeHttpAgents();
  assert.deepEqual(left, [], `resources left behind: ${left.join(', ')}`);
  const afterPool = await settledExcess(baseline, graceMs);
  assert.deepEqual(
    afterPool,
    [],
    `resources left behind after closeHttpAgents(): ${afterPool.join(', ')}`,
  );
}

/**
 * Installs beforeEach/afterEach hooks that compare active resources around every test. The
 * baseline is taken after the mqtt and coap packages are loaded (coap opens two idle sockets for
 * its global agents when it loads).
 */
export function watchForLeaks(): void {
  let baseline = new Map<string, number>();
  before(() => {
    require('mqtt');
    require('coap');
  });
  // Snapshots are taken after an await in both hooks, so each counts mocha's own hook timer once.
  beforeEach(async () => {
    await new Promise((resolve) => setImmediate(resolve));
    baseline = resourceCounts();
  });
  afterEach(async function () {
    if (this.currentTest?.state === 'failed') {
      closeHttpAgents();
      return;
    }
    await assertNoLeaks(baseline);
  });
}

/** A TCP port with nothing listening on it. */
export async function closedTcpPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A UDP port with nothing bound to it. */
export async function closedUdpPort(): Promise<number> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, HOST, resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

/**
 * Keeps an in-process test server out of the leak checks: its handles are unref'd (uncounted), and
 * retiring it stops listening but leaves accepted connections open a while longer, so that a
 * client socket the transport forgot to close stays visible instead of being closed by the server.
 */
export function serverSide(server: net.Server): () => void {
  const sockets = new Set<net.Socket>();
  server.unref();
  server.on('connection', (socket: net.Socket) => {
    socket.unref();
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  });
  return () => {
    server.close();
    setTimeout(() => {
      for (const socket of sockets) socket.destroy();
    }, 2000).unref();
  };
}

export interface RawTcpServer {
  port: number;
  connections: number;
  close(): Promise<void>;
}

type MqttReply = (packet: mqttPacket.Packet) => void;

/** The least an MQTT provisioning server does: CONNACK 0, then the answer at QoS 0; no SUBACK, no PUBACK. */
export function answerOnly(answer: string): (packet: mqttPacket.Packet, reply: MqttReply) => void {
  return (packet, reply) => {
    if (packet.cmd === 'connect') reply({ cmd: 'connack', returnCode: 0, sessionPresent: false });
    if (packet.cmd === 'publish') {
      reply({
        cmd: 'publish',
        topic: '/provision/response',
        payload: answer,
        qos: 0,
        dup: false,
        retain: false,
      });
    }
  };
}

/**
 * Speaks MQTT 3.1.1 on the server side of a socket: each packet the client sends goes to `onPacket`
 * with a function that answers it.
 */
export function serveMqtt(
  socket: net.Socket,
  onPacket: (packet: mqttPacket.Packet, reply: MqttReply) => void,
): void {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const reply = (packet: mqttPacket.Packet): void => {
    if (!socket.destroyed) socket.write(mqttPacket.generate(packet, { protocolVersion: 4 }));
  };
  parser.on('packet', (packet) => onPacket(packet, reply));
  socket.on('data', (chunk: Buffer) => parser.parse(chunk));
}

/** A raw TCP server on an ephemeral port of 127.0.0.1 (see serverSide for its clean-up). */
export async function rawTcpServer(
  onConnection: (socket: net.Socket) => void,
): Promise<RawTcpServer> {
  const server = net.createServer((socket) => {
    handle.connections += 1;
    onConnection(socket);
  });
  const retire = serverSide(server);
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const handle: RawTcpServer = {
    port: (server.address() as net.AddressInfo).port,
    connections: 0,
    close: async () => retire(),
  };
  return handle;
}

export interface RawUdpServer {
  port: number;
  socket: dgram.Socket;
  close(): Promise<void>;
}

/** A raw UDP server on an ephemeral port of 127.0.0.1, unref'd (out of the leak checks). */
export async function rawUdpServer(
  onMessage: (message: Buffer, remote: dgram.RemoteInfo, socket: dgram.Socket) => void,
): Promise<RawUdpServer> {
  const socket = dgram.createSocket('udp4');
  socket.on('message', (message, remote) => onMessage(message, remote, socket));
  await new Promise<void>((resolve) => socket.bind(0, HOST, resolve));
  socket.unref();
  return {
    port: socket.address().port,
    socket,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** The PEM body as ThingsBoard returns it: no BEGIN/END lines, no line breaks. */
export function pemBody(pem: string): string {
  return pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
}
