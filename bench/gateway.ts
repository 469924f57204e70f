/**
 * Readings of many devices through one gateway connection (src/devices' gateway session) against
 * mqtt.js, in one run, with the emulator in a process of its own:
 *   - readings/s for DEVICES devices through one gateway, IN_FLIGHT readings in flight (reading n
 *     belongs to device n % DEVICES): DeviceConnections.sendViaGateway against one mqtt.js client
 *     publishing each reading alone on v1/gateway/telemetry (QoS 1), and against the same client
 *     given the same batching (readings join the publish waiting to be written, two publishes
 *     unacknowledged at most, 65 536-byte packets), without the product's checks and deadlines;
 *   - memory for DEVICES announced devices: heap + external grown by announcing them and sending
 *     one reading each, product against the raw batching client.
 * Every row runs in a fresh process after a warm-up that announces every device; medians over the
 * rounds, the order of the rows rotated each round. Not part of the test suite.
 * Run: npm run build && npx tsx bench/gateway.ts [readings] [rounds] [devices]
 */
import type { MqttClient } from 'mqtt';
import { Emulator } from '../src/emulator';
import { MAX_MQTT_PACKET_BYTES } from '../src/protocol/device-data';
import { closedLoop, median } from './common';
import { forkChild, settledMemory } from './forked';

const [mode = '', ...rest] = process.argv.slice(2);
const settings = mode === '--row' ? rest.slice(2) : mode === '--emulator' ? rest : [mode, ...rest];
const READINGS = Number(settings[0] || 50_000);
const ROUNDS = Number(settings[1] || 3);
const DEVICES = Number(settings[2] || 1000);
const WARMUP = 2 * DEVICES;
const IN_FLIGHT = DEVICES;
/** The raw batching client's publishes in flight: the product's gateway window. */
const RAW_WINDOW = 2;
const HOST = '127.0.0.1';
const PROFILE = 'gateway-bench';
const GATEWAY = 'gateway-bench-gw';
const GATEWAY_TOKEN = 'gateway-bench-gw-token';
const TYPE = 'bench-sensor';
const TELEMETRY = 'v1/gateway/telemetry';

type Kind = 'product' | 'raw each' | 'raw batched' | 'memory product' | 'memory raw';
type Ports = { mqtt: number; http: number; coap: number };
type Send = (n: number) => Promise<unknown>;

interface RateResult {
  rate: number;
  cpuPerReading: number;
  failures: number;
}

interface MemoryResult {
  heapPerDevice: number;
  rssPerDevice: number;
}

const device = (n: number): string => `gateway-bench-dev-${n % DEVICES}`;
const reading = (n: number): { temperature: number; n: number } => ({
  temperature: 20 + (n % 10) / 2,
  n,
});

/** The devices layer as it ships (`npm run build` first): compiled, not through tsx's loader. */
function devicesModule(): typeof import('../src/devices') {
  try {
    return require('../nodes/devices') as typeof import('../src/devices');
  } catch {
    throw new Error('bench/gateway.ts measures the build: run `npm run build` first.');
  }
}

function productSender(ports: Ports): { send: Send; close(): Promise<unknown> } {
  const { DeviceConnections } = devicesModule();
  const connections = new DeviceConnections({ server: { host: HOST, ports } });
  const gatewayLogin = { type: 'ACCESS_TOKEN', token: GATEWAY_TOKEN } as const;
  return {
    send: (n) =>
      connections.sendViaGateway({
        gatewayName: GATEWAY,
        gatewayLogin,
        deviceName: device(n),
        deviceType: TYPE,
        message: { kind: 'telemetry', payload: reading(n) },
        timeoutMs: 30_000,
      }),
    close: () => connections.close(),
  };
}

async function rawClient(ports: Ports): Promise<MqttClient> {
  const mqtt = require('mqtt') as typeof import('mqtt');
  const client = mqtt.connect({
    host: HOST,
    port: ports.mqtt,
    username: GATEWAY_TOKEN,
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  (client.stream as unknown as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
  await new Promise((resolve) => client.once('connect', resolve));
  return client;
}

interface RawBatch {
  devices: Map<string, string[]>;
  bytes: number;
  done: Array<() => void>;
}

/** The product's batching with nothing else: texts joined as they come, two publishes in flight. */
class RawBatcher {
  readonly announced = new Set<string>();
  private readonly batches: RawBatch[] = [];
  private inFlight = 0;
  private due = false;

  constructor(private readonly client: MqttClient) {}

  send(name: string, value: object): Promise<void> {
    return new Promise((resolve) => {
      if (!this.announced.has(name)) {
        this.announced.add(name);
        this.client.publish('v1/gateway/connect', JSON.stringify({ device: name, type: TYPE }), {
          qos: 1,
        });
      }
      const text = JSON.stringify(value);
      const growth = text.length + name.length + 6;
      let batch = this.batches.at(-1);
      if (batch === undefined || batch.bytes + growth > MAX_MQTT_PACKET_BYTES - 100) {
        batch = { devices: new Map(), bytes: 2, done: [] };
        this.batches.push(batch);
      }
      const pieces = batch.devices.get(name);
      if (pieces === undefined) batch.devices.set(name, [text]);
      else pieces.push(text);
      batch.bytes += growth;
      batch.done.push(resolve);
      if (!this.due) {
        this.due = true;
        setImmediate(() => {
          this.due = false;
          this.write();
        });
      }
    });
  }

  private write(): void {
    while (this.inFlight < RAW_WINDOW && this.batches.length > 0) {
      const batch = this.batches.shift() as RawBatch;
      let text = '{';
      for (const [name, pieces] of batch.devices) {
        if (text.length > 1) text += ',';
        text += `${JSON.stringify(name)}:[${pieces.join(',')}]`;
      }
      this.inFlight++;
      this.client.publish(TELEMETRY, `${text}}`, { qos: 1 }, () => {
        this.inFlight--;
        for (const done of batch.done) done();
        this.write();
      });
    }
  }
}

async function rawSender(
  ports: Ports,
  batched: boolean,
): Promise<{ send: Send; close(): Promise<unknown> }> {
  const client = await rawClient(ports);
  const close = (): Promise<unknown> => client.endAsync();
  if (batched) {
    const batcher = new RawBatcher(client);
    return { send: (n) => batcher.send(device(n), reading(n)), close };
  }
  const announced = new Set<string>();
  return {
    send: (n) => {
      const name = device(n);
      if (!announced.has(name)) {
        announced.add(name);
        client.publish('v1/gateway/connect', JSON.stringify({ device: name, type: TYPE }), {
          qos: 1,
        });
      }
      return client.publishAsync(TELEMETRY, JSON.stringify({ [name]: [reading(n)] }), { qos: 1 });
    },
    close,
  };
}

async function drive(send: Send, first: number, count: number): Promise<number> {
  let failures = 0;
  await closedLoop(count, IN_FLIGHT, (i) =>
    send(first + i).then(
      () => undefined,
      () => void failures++,
    ),
  );
  return failures;
}

async function rateRow(kind: Kind, ports: Ports): Promise<RateResult> {
  const sender =
    kind === 'product' ? productSender(ports) : await rawSender(ports, kind === 'raw batched');
  await drive(sender.send, 0, WARMUP);
  const cpu = process.cpuUsage();
  const started = performance.now();
  const failures = await drive(sender.send, WARMUP, READINGS);
  const wallMs = performance.now() - started;
  const used = process.cpuUsage(cpu);
  await sender.close();
  return {
    rate: (READINGS / wallMs) * 1000,
    cpuPerReading: (used.user + used.system) / READINGS,
    failures,
  };
}

async function memoryRow(kind: Kind, ports: Ports): Promise<MemoryResult> {
  const sender = kind === 'memory product' ? productSender(ports) : await rawSender(ports, true);
  // The connection open and one device announced before the baseline.
  await sender.send(DEVICES);
  await new Promise((resolve) => setTimeout(resolve, 200));
  const before = settledMemory();
  await Promise.all(Array.from({ length: DEVICES }, (_, n) => sender.send(n)));
  await new Promise((resolve) => setTimeout(resolve, 200));
  const after = settledMemory();
  await sender.close();
  return {
    heapPerDevice: (after.heapUsed + after.external - before.heapUsed - before.external) / DEVICES,
    rssPerDevice: (after.rss - before.rss) / DEVICES,
  };
}

async function emulatorProcess(): Promise<void> {
  const emulator = await Emulator.start({
    host: HOST,
    mqttPort: 0,
    httpPort: 0,
    coapPort: 0,
    // Keeps the emulator's records small over a long run.
    recordLimit: 100,
    profiles: [
      {
        name: PROFILE,
        provisionDeviceKey: 'k',
        provisionDeviceSecret: 's',
        strategy: 'allow-create',
      },
    ],
    devices: [
      {
        name: GATEWAY,
        profile: PROFILE,
        credentials: { credentialsType: 'ACCESS_TOKEN', token: GATEWAY_TOKEN },
        gateway: true,
      },
    ],
  });
  process.on('message', (message) => {
    if (message !== 'stop') return;
    void emulator.stop().then(() => process.exit(0));
  });
  process.send?.(emulator.ports);
}

const pad = (text: string | number, width: number): string => String(text).padStart(width);

async function main(): Promise<void> {
  const emulator = await forkChild<Ports>(__filename, ['--emulator', ...settings]);
  const ports = emulator.value;
  const rates = new Map<Kind, RateResult[]>();
  const memory = new Map<Kind, MemoryResult[]>();
  const rateKinds: Kind[] = ['product', 'raw each', 'raw batched'];
  const memoryKinds: Kind[] = ['memory product', 'memory raw'];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const order = [...rateKinds.slice(round % 3), ...rateKinds.slice(0, round % 3)];
      for (const kind of [...order, ...(round % 2 ? [...memoryKinds].reverse() : memoryKinds)]) {
        const isMemory = kind.startsWith('memory');
        const row = await forkChild<RateResult | MemoryResult>(
          __filename,
          ['--row', kind, JSON.stringify(ports), ...settings],
          isMemory ? ['--expose-gc'] : [],
        );
        const target = (isMemory ? memory : rates) as Map<Kind, Array<RateResult | MemoryResult>>;
        target.set(kind, [...(target.get(kind) ?? []), row.value]);
        process.stderr.write(
          `  round ${round + 1}/${ROUNDS} ${kind}: ${JSON.stringify(row.value)}\n`,
        );
      }
    }
  } finally {
    emulator.stop();
  }
  const out = (line: string): boolean => process.stdout.write(`${line}\n`);
  out(
    `Telemetry of ${DEVICES} devices through one gateway: ${READINGS} readings after ${WARMUP} ` +
      `warm-up, ${IN_FLIGHT} in flight, QoS 1; medians of ${ROUNDS} rounds\n`,
  );
  out(
    `${'row'.padEnd(13)}${pad('readings/s', 11)}${pad('CPU us/reading', 16)}${pad('fail', 6)}${pad('product/row (rounds)', 24)}`,
  );
  const product = rates.get('product') ?? [];
  for (const kind of rateKinds) {
    const rows = rates.get(kind) ?? [];
    const ratios = product.map((p, i) => p.rate / rows[i].rate);
    const ratio =
      kind === 'product'
        ? ''
        : `${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`;
    out(
      `${kind.padEnd(13)}${pad(median(rows.map((r) => r.rate)).toFixed(0), 11)}` +
        `${pad(median(rows.map((r) => r.cpuPerReading)).toFixed(2), 16)}` +
        `${pad(Math.max(...rows.map((r) => r.failures)), 6)}${pad(ratio, 24)}`,
    );
  }
  out(`\n${DEVICES} devices announced through one gateway, medians of ${ROUNDS} rounds\n`);
  out(`${'row'.padEnd(16)}${pad('heap+ext B/device', 19)}${pad('RSS B/device', 14)}`);
  for (const kind of memoryKinds) {
    const rows = memory.get(kind) ?? [];
    out(
      `${kind.padEnd(16)}${pad(median(rows.map((r) => r.heapPerDevice)).toFixed(0), 19)}` +
        `${pad(median(rows.map((r) => r.rssPerDevice)).toFixed(0), 14)}`,
    );
  }
}

if (mode === '--emulator') {
  void emulatorProcess();
} else if (mode === '--row') {
  const [kind, ports] = rest as [Kind, string];
  const run = kind.startsWith('memory') ? memoryRow : rateRow;
  void run(kind, JSON.parse(ports) as Ports).then((result) => {
    process.send?.(result);
    process.exit(0);
  });
} else {
  void main();
}
