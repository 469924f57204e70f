/**
 * The product: a real Node-RED runtime (embedded, editor off) with the package installed in its
 * user directory as npm would put it, and a flow source → thingsboard-provision → sink. Messages
 * enter through the source node's send() and are counted when they reach the sink.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROVISION_KEY, PROVISION_SECRET, ROOT } from './common';
import type { RowSpec, Transport } from './common';

const PACKAGE_NAME = 'node-red-contrib-thingsboard-provision';

/**
 * A source node the bench sends from, a sink that hands what arrives to the bench, and a node that
 * provisions with the fastest raw client alone (the rawInFlow rows).
 */
const BENCH_NODES_JS = `module.exports = function (RED) {
  const { fastestRawClient } = require(${JSON.stringify(path.join(__dirname, 'raw.js'))});
  function BenchSource(config) {
    RED.nodes.createNode(this, config);
  }
  RED.nodes.registerType('bench-source', BenchSource);
  function BenchRaw(config) {
    RED.nodes.createNode(this, config);
    const provision = fastestRawClient(config.transport, config.emulator);
    this.on('input', function (msg, send, done) {
      provision(msg.deviceName).then(
        function () {
          msg.payload = { status: 'SUCCESS' };
          send(msg);
          done();
        },
        function (err) {
          done(err);
        },
      );
    });
  }
  RED.nodes.registerType('bench-raw', BenchRaw);
  function BenchSink(config) {
    RED.nodes.createNode(this, config);
    const kind = config.kind;
    this.on('input', function (msg, send, done) {
      globalThis.tbBenchSink[kind](msg);
      done();
    });
  }
  RED.nodes.registerType('bench-sink', BenchSink);
};
`;

interface SinkMessage {
  deviceName?: string;
  payload?: { status?: string };
  error?: { message?: string };
}

interface BenchGlobal {
  tbBenchSink?: { output(msg: SinkMessage): void; error(msg: SinkMessage): void };
}

interface NodeRed {
  init(server: undefined, settings: Record<string, unknown>): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  nodes: { getNode(id: string): { send(msg: Record<string, unknown>): void } | null };
  events: { once(event: string, listener: () => void): void };
}

/** A provision node as the bench flows use it: the editor's defaults, the row's settings, config 'cfg'. */
export function provisionNodeSettings(
  transport: Transport,
  concurrency: number,
  persist: boolean,
): { type: string } & Record<string, unknown> {
  return {
    type: 'thingsboard-provision',
    config: 'cfg',
    transport,
    deviceName: 'deviceName',
    deviceNameType: 'msg',
    credentialsType: 'server',
    gateway: false,
    timeout: 10,
    retries: 2,
    concurrency,
    persist,
    mqttConnect: false,
  };
}

export function benchFlow(spec: RowSpec): Array<Record<string, unknown>> {
  const position = { x: 320, y: 80, wires: [['sink']] };
  const provisioning = spec.rawInFlow
    ? { type: 'bench-raw', transport: spec.transport, emulator: spec.emulator, ...position }
    : {
        ...provisionNodeSettings(spec.transport, spec.concurrency, spec.persist !== false),
        ...position,
      };
  return [
    { id: 'tab', type: 'tab', label: 'bench' },
    {
      id: 'cfg',
      type: 'thingsboard-provision-config',
      name: 'emulator',
      host: spec.emulator.host,
      mqttPort: spec.emulator.ports.mqtt,
      httpPort: spec.emulator.ports.http,
      coapPort: spec.emulator.ports.coap,
      usetls: false,
      tls: '',
    },
    { id: 'src', z: 'tab', type: 'bench-source', x: 120, y: 80, wires: [['prov']] },
    { id: 'prov', z: 'tab', ...provisioning },
    { id: 'sink', z: 'tab', type: 'bench-sink', kind: 'output', x: 520, y: 80, wires: [] },
    {
      id: 'catcher',
      z: 'tab',
      type: 'catch',
      scope: ['prov'],
      uncaught: false,
      x: 120,
      y: 160,
      wires: [['errors']],
    },
    { id: 'errors', z: 'tab', type: 'bench-sink', kind: 'error', x: 320, y: 160, wires: [] },
  ];
}

/** A Node-RED user directory with the package installed (a link, as `npm install <dir>` makes). */
export function makeUserDir(options: {
  withPackage: boolean;
  flow?: unknown[];
  credentials?: unknown;
}): string {
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-bench-red-'));
  if (options.withPackage) {
    fs.mkdirSync(path.join(userDir, 'node_modules'));
    fs.symlinkSync(ROOT, path.join(userDir, 'node_modules', PACKAGE_NAME), 'dir');
  }
  fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(options.flow ?? []));
  if (options.credentials) {
    fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify(options.credentials));
  }
  return userDir;
}

export function nodeRedSettings(userDir: string): Record<string, unknown> {
  return {
    userDir,
    flowFile: 'flows.json',
    // Credentials stay plain text in the throw-away user directory.
    credentialSecret: false,
    httpAdminRoot: false,
    httpNodeRoot: false,
    logging: { console: { level: 'info', metrics: false, audit: false } },
  };
}

/** Starts Node-RED with the bench flow; resolves with the function that provisions one device. */
export async function productClient(spec: RowSpec): Promise<{
  provision: (deviceName: string) => Promise<void>;
  stop(): Promise<void>;
}> {
  const userDir = makeUserDir({
    withPackage: true,
    flow: benchFlow(spec),
    credentials: {
      cfg: { provisionDeviceKey: PROVISION_KEY, provisionDeviceSecret: PROVISION_SECRET },
    },
  });
  fs.mkdirSync(path.join(userDir, 'nodes'));
  fs.writeFileSync(path.join(userDir, 'nodes', 'bench-nodes.js'), BENCH_NODES_JS);
  fs.writeFileSync(path.join(userDir, 'nodes', 'bench-nodes.html'), '');

  const pending = new Map<string, { resolve(): void; reject(err: Error): void }>();
  (globalThis as BenchGlobal).tbBenchSink = {
    output(msg) {
      const waiter = pending.get(msg.deviceName ?? '');
      pending.delete(msg.deviceName ?? '');
      if (msg.payload?.status === 'SUCCESS') waiter?.resolve();
      else waiter?.reject(new Error(`output without SUCCESS: ${JSON.stringify(msg.payload)}`));
    },
    error(msg) {
      const waiter = pending.get(msg.deviceName ?? '');
      pending.delete(msg.deviceName ?? '');
      waiter?.reject(new Error(msg.error?.message ?? 'error'));
    },
  };

  const RED = require(require.resolve('node-red', { paths: [ROOT] })) as NodeRed;
  RED.init(undefined, nodeRedSettings(userDir));
  const started = new Promise<void>((resolve) => RED.events.once('flows:started', resolve));
  await RED.start();
  await started;
  const source = RED.nodes.getNode('src');
  // A node missing here means the flow did not start whole (Node-RED logs why and carries on).
  if (!source || !RED.nodes.getNode('prov') || !RED.nodes.getNode('catcher')) {
    throw new Error('the bench flow did not start: is the package built (npm run build)?');
  }
  return {
    provision: (deviceName) =>
      new Promise<void>((resolve, reject) => {
        pending.set(deviceName, { resolve, reject });
        source.send({ deviceName, payload: deviceName });
      }),
    stop: async () => {
      await RED.stop();
      fs.rmSync(userDir, { recursive: true, force: true });
    },
  };
}
