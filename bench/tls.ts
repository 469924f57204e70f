/**
 * MQTT over TLS, transport level: the product's MQTT transport against clients that set up TLS
 * afresh for every device, all against the emulator's MQTTS port in a process of its own:
 *   - mqtt.js: `mqtt.connect` over mqtts with the CA (the raw library of the main table);
 *   - codec, fresh TLS: the same packets as the product with mqtt-packet, on a `tls.connect` given
 *     the CA each time (its PEM parsed again, a full handshake);
 *   - product: the package's MQTT transport, which keeps one TLS context per configuration and
 *     offers each server's last session.
 * Every row runs in a fresh process: warm-up devices, then the timed devices at a concurrency;
 * medians over the rounds, the kinds rotated each round. The certificates are the test suite's.
 * Run: npx tsx bench/tls.ts [devices] [concurrency] [rounds]
 */
import { fork } from 'node:child_process';
import * as tls from 'node:tls';
import { Emulator } from '../src/emulator';
import { getTransport } from '../src/transports';
import {
  TEST_CA_CERT,
  TEST_SERVER_CERT,
  TEST_SERVER_KEY,
} from '../test/support/transport-certificates';
import { PROVISION_KEY, PROVISION_SECRET } from './common';
import { codecExchange, mqttJsClient, requestBody } from './raw';

const [mode = '', ...rest] = process.argv.slice(2);
// A row's process gets the settings after its own arguments.
const settings = mode === '--row' ? rest.slice(3) : [mode, ...rest];
const DEVICES = Number(settings[0] || 3000);
const CONCURRENCY = Number(settings[1] || 16);
const ROUNDS = Number(settings[2] || 3);
const WARMUP = 500;

type Kind = 'mqtt.js' | 'codec, fresh TLS' | 'product';
const KINDS: readonly Kind[] = ['mqtt.js', 'codec, fresh TLS', 'product'];

interface RowResult {
  rate: number;
  cpuPerDevice: number;
  p50: number;
}

type Provision = (deviceName: string) => Promise<unknown>;

function mqttJs(port: number): Provision {
  return mqttJsClient({ protocol: 'mqtts', host: '127.0.0.1', port, ca: TEST_CA_CERT });
}

function codecFreshTls(port: number): Provision {
  return (deviceName) =>
    codecExchange(
      tls.connect({ host: '127.0.0.1', port, ca: TEST_CA_CERT }),
      requestBody(deviceName),
    );
}

function product(port: number): Provision {
  const transport = getTransport('mqtt');
  return (deviceName) =>
    transport(
      // A new options object per device, as the node builds one per message.
      { host: '127.0.0.1', port, tls: { ca: TEST_CA_CERT } },
      { provisionDeviceKey: PROVISION_KEY, provisionDeviceSecret: PROVISION_SECRET, deviceName },
      { deadline: Date.now() + 10_000 },
    );
}

async function drive(provision: Provision, prefix: string, devices: number): Promise<number[]> {
  const latencies: number[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < devices) {
      const started = performance.now();
      await provision(`${prefix}-${next++}`);
      latencies.push(performance.now() - started);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return latencies;
}

async function row(kind: Kind, port: number, prefix: string): Promise<RowResult> {
  const provision =
    kind === 'mqtt.js' ? mqttJs(port) : kind === 'product' ? product(port) : codecFreshTls(port);
  await drive(provision, `${prefix}-warm`, WARMUP);
  const cpu = process.cpuUsage();
  const started = performance.now();
  const latencies = await drive(provision, prefix, DEVICES);
  const wallMs = performance.now() - started;
  const used = process.cpuUsage(cpu);
  return {
    rate: (DEVICES / wallMs) * 1000,
    cpuPerDevice: (used.user + used.system) / DEVICES,
    p50: median(latencies),
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Runs this file again in a child process (same loader) and returns the message it sends. */
function child<T>(args: string[]): Promise<{ value: T; stop: () => void }> {
  const process_ = fork(__filename, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    process_.once('error', reject);
    process_.once('exit', (code) => reject(new Error(`${args[0]} exited (${code})`)));
    process_.once('message', (value: T) => {
      process_.removeAllListeners('exit');
      resolve({ value, stop: () => process_.send('stop') });
    });
  });
}

async function emulatorProcess(): Promise<void> {
  const emulator = await Emulator.start({
    host: '127.0.0.1',
    mqttPort: 0,
    httpPort: 0,
    coapPort: 0,
    mqttsPort: 0,
    httpsPort: 0,
    tls: { key: TEST_SERVER_KEY, cert: TEST_SERVER_CERT },
    profiles: [
      {
        name: 'tls-bench',
        provisionDeviceKey: PROVISION_KEY,
        provisionDeviceSecret: PROVISION_SECRET,
        strategy: 'allow-create',
      },
    ],
  });
  process.once('message', () => void emulator.stop().then(() => process.exit(0)));
  process.send?.(emulator.ports.mqtts);
}

async function main(): Promise<void> {
  const emulator = await child<number>(['--emulator']);
  const port = emulator.value;
  const results = new Map<Kind, RowResult[]>(KINDS.map((kind) => [kind, []]));
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const order = KINDS.map((_, k) => KINDS[(k + round) % KINDS.length]);
      for (const kind of order) {
        const prefix = `tls-${round}-${KINDS.indexOf(kind)}-${Date.now()}`;
        const result = await child<RowResult>([
          '--row',
          kind,
          String(port),
          prefix,
          String(DEVICES),
          String(CONCURRENCY),
        ]);
        results.get(kind)?.push(result.value);
        const r = result.value;
        process.stderr.write(
          `  round ${round + 1}/${ROUNDS} ${kind}: ${r.rate.toFixed(0)}/s, ` +
            `${r.cpuPerDevice.toFixed(0)} us CPU/device\n`,
        );
      }
    }
  } finally {
    emulator.stop();
  }
  const product = results.get('product') ?? [];
  process.stdout.write(
    `MQTT over TLS, ${DEVICES} devices at concurrency ${CONCURRENCY} after ${WARMUP} warm-up ` +
      `devices, medians of ${ROUNDS} rounds\n\n` +
      `${'client'.padEnd(18)}${'devices/s'.padStart(10)}${'p50 ms'.padStart(9)}` +
      `${'CPU us/dev'.padStart(12)}${'product/this'.padStart(14)}\n`,
  );
  for (const kind of KINDS) {
    const rows = results.get(kind) ?? [];
    const ratio = median(rows.map((r, i) => product[i].rate / r.rate));
    process.stdout.write(
      `${kind.padEnd(18)}${median(rows.map((r) => r.rate))
        .toFixed(0)
        .padStart(10)}` +
        `${median(rows.map((r) => r.p50))
          .toFixed(2)
          .padStart(9)}` +
        `${median(rows.map((r) => r.cpuPerDevice))
          .toFixed(0)
          .padStart(12)}` +
        `${(kind === 'product' ? '' : ratio.toFixed(2)).padStart(14)}\n`,
    );
  }
}

if (mode === '--emulator') {
  void emulatorProcess();
} else if (mode === '--row') {
  const [kind, port, prefix] = rest;
  void row(kind as Kind, Number(port), prefix).then((result) => {
    process.send?.(result);
    process.exit(0);
  });
} else {
  void main();
}
