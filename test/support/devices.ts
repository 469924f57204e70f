/**
 * For the device connection suites: the emulator in this process (its device records read
 * directly, restartable on the same ports), devices with known logins, a TCP proxy whose
 * connections a test can cut, and a guard against leaked handles and unhandled rejections.
 */

import assert from 'node:assert/strict';
import * as net from 'node:net';
import { Emulator } from '../../src/emulator';
import type { EmulatedCredentials, EmulatorOptions } from '../../src/emulator';
import { DeviceConnections } from '../../src/devices';
import type { DeviceConnectionsOptions, DeviceLogin, DeviceServer } from '../../src/devices';
import { closeHttpAgents } from '../../src/transports';
import { HOST, resourceCounts } from './transport-helpers';

// What the device suites take from the transport suites' helpers, in one place.
export { HOST, closedTcpPort, pemBody, rawTcpServer } from './transport-helpers';
export { TEST_CA_CERT, TEST_SERVER_CERT, TEST_SERVER_KEY } from './transport-certificates';

export const PROFILE = {
  name: 'devices',
  provisionDeviceKey: 'devices-key',
  provisionDeviceSecret: 'devices-secret',
  strategy: 'allow-create',
} as const;

export function startEmulator(extra: Partial<EmulatorOptions> = {}): Promise<Emulator> {
  return Emulator.start({
    host: HOST,
    mqttPort: 0,
    httpPort: 0,
    coapPort: 0,
    profiles: [PROFILE],
    ...extra,
  });
}

export function serverOf(emulator: Emulator, mqttPort = emulator.ports.mqtt): DeviceServer {
  return {
    host: HOST,
    ports: { mqtt: mqttPort, http: emulator.ports.http, coap: emulator.ports.coap },
  };
}

let counter = 0;

export interface TestDevice {
  name: string;
  login: DeviceLogin;
}

/** A device the emulator knows, logging in with a token of its own (or other credentials). */
export function addDevice(
  emulator: Emulator,
  prefix: string,
  credentials?: EmulatedCredentials,
  login?: DeviceLogin,
): TestDevice {
  counter += 1;
  const name = `${prefix}-${process.pid}-${counter}`;
  const token = `token-${prefix}-${process.pid}-${counter}`;
  emulator.addDevice({
    name,
    profile: PROFILE.name,
    credentials: credentials ?? { credentialsType: 'ACCESS_TOKEN', token },
  });
  return { name, login: login ?? { type: 'ACCESS_TOKEN', token } };
}

/** A gateway ("Is gateway" ticked) the emulator knows, logging in with a token of its own. */
export function addGateway(emulator: Emulator, prefix: string): TestDevice {
  counter += 1;
  const name = `${prefix}-${process.pid}-${counter}`;
  const token = `token-${prefix}-${process.pid}-${counter}`;
  emulator.addDevice({
    name,
    profile: PROFILE.name,
    credentials: { credentialsType: 'ACCESS_TOKEN', token },
    gateway: true,
  });
  return { name, login: { type: 'ACCESS_TOKEN', token } };
}

/** What a gateway published on one v1/gateway/* topic and the emulator accepted, in order. */
export function gatewayMessagesOf(emulator: Emulator, gateway: string, topic: string): unknown[] {
  return (emulator.device(gateway)?.gatewayMessages ?? [])
    .filter((message) => message.topic === topic)
    .map((message) => message.payload);
}

export function telemetryOf(emulator: Emulator, name: string): unknown[] {
  return emulator.device(name)?.telemetry ?? [];
}

/** Polls until `check` holds; fails with `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export type Outcome = { ok: true } | { ok: false; err: Error & { status?: string } };

/** Every promise's outcome, in order. */
export function outcomes(promises: Array<Promise<unknown>>): Promise<Outcome[]> {
  return Promise.all(
    promises.map((p) =>
      p.then(
        (): Outcome => ({ ok: true }),
        (err: Error): Outcome => ({ ok: false, err }),
      ),
    ),
  );
}

/** Test-speed limits: reconnects in tens of milliseconds. */
export const FAST: Partial<DeviceConnectionsOptions> = {
  reconnect: { initialMs: 20, maxMs: 100 },
  takeover: { initialMs: 300, maxMs: 1200, shortSessionMs: 500 },
  connectTimeoutMs: 2000,
};

/**
 * Installs hooks giving each test fresh DeviceConnections (closed after it), and failing the test
 * on an unhandled rejection or on handles and timers left once they are closed.
 */
export function connectionsForEachTest(
  make: () => DeviceConnectionsOptions,
  { timers = true }: { timers?: boolean } = {},
): {
  readonly current: DeviceConnections;
  make(extra?: Partial<DeviceConnectionsOptions>): DeviceConnections;
} {
  const made: DeviceConnections[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  let baseline = new Map<string, number>();
  const handle = {
    get current(): DeviceConnections {
      return made[0] ?? handle.make();
    },
    make(extra: Partial<DeviceConnectionsOptions> = {}): DeviceConnections {
      const connections = new DeviceConnections({ ...make(), ...extra });
      made.push(connections);
      return connections;
    },
  };
  before(() => {
    process.on('unhandledRejection', onUnhandled);
    require('mqtt');
    require('coap');
  });
  after(() => void process.off('unhandledRejection', onUnhandled));
  beforeEach(async () => {
    await new Promise((resolve) => setImmediate(resolve));
    baseline = resourceCounts();
  });
  afterEach(async function () {
    await Promise.all(made.splice(0).map((connections) => connections.close()));
    // The HTTP pool is the transports' own, shared with provisioning: its idle keep-alive
    // connections are unref'd, but the emulator's ends of them here are not.
    closeHttpAgents();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(unhandled.splice(0).map(String), [], 'unhandled rejections');
    if (this.currentTest?.state !== 'failed') await assertNoLeaks(baseline, timers);
  });
  return handle;
}

/**
 * Fails when more handles (and, with `timers`, timers) are active than in the baseline once the
 * closing ones had time to close. The emulator runs in this process: its ends of the client's
 * connections close when the client's do, but the coap package's server keeps timers of its own
 * for minutes, so suites that use CoAP leave timers out.
 */
async function assertNoLeaks(baseline: Map<string, number>, timers: boolean): Promise<void> {
  const left = (): string[] => {
    const found: string[] = [];
    for (const [kind, count] of resourceCounts()) {
      if (!timers && kind === 'Timeout') continue;
      const before = baseline.get(kind) ?? 0;
      if (count > before) found.push(`${kind} x${count - before}`);
    }
    return found;
  };
  const until = Date.now() + 1500;
  while (left().length > 0 && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.deepEqual(left(), [], 'resources left behind');
}

export interface TcpProxy {
  port: number;
  /** Connections made through it so far. */
  connections: number;
  /** Destroys every open connection, both sides. */
  cut(): void;
  /** Holds back what the server sends (its PUBACKs) until release(). */
  hold(): void;
  release(): void;
  close(): Promise<void>;
}

/** A TCP proxy to `port` on 127.0.0.1: the client's connections can be cut or held while in use. */
export async function tcpProxy(port: number): Promise<TcpProxy> {
  const open = new Set<net.Socket>();
  const fromServer = new Map<net.Socket, net.Socket>();
  let holding = false;
  const server = net.createServer((client) => {
    proxy.connections++;
    const upstream = net.connect(port, HOST);
    for (const [socket, peer] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      open.add(socket);
      socket.on('error', () => peer.destroy());
      socket.on('close', () => {
        open.delete(socket);
        fromServer.delete(upstream);
        peer.destroy();
      });
    }
    client.pipe(upstream);
    fromServer.set(upstream, client);
    if (!holding) upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const proxy: TcpProxy = {
    port: (server.address() as net.AddressInfo).port,
    connections: 0,
    cut: () => {
      for (const socket of open) socket.destroy();
    },
    hold: () => {
      holding = true;
      for (const upstream of fromServer.keys()) {
        upstream.unpipe();
        upstream.pause();
      }
    },
    release: () => {
      holding = false;
      for (const [upstream, client] of fromServer) upstream.pipe(client);
    },
    close: () =>
      new Promise<void>((resolve) => {
        proxy.cut();
        server.close(() => resolve());
      }),
  };
  return proxy;
}
