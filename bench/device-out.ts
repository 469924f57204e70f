/**
 * Device data through the devices layer (src/devices) against the raw libraries, in one run, with
 * the emulator in a process of its own:
 *   - telemetry messages/s for one device: DeviceConnections over MQTT (QoS 1, its window) against
 *     one mqtt.js client publishing QoS 1 with the same number in flight; over HTTP against
 *     undici POSTs through a keep-alive Pool; over CoAP against `coap` confirmable POSTs;
 *   - MQTT sessions: memory per open session and the rate of opening them, DeviceConnections
 *     holding SESSIONS devices against one bare mqtt.js client per device (subscribed to the same
 *     two topics).
 * Every row runs in a fresh process (warm-up first for the message rows); medians over the rounds,
 * the order of the kinds rotated each round. Not part of the test suite.
 * Run: npx tsx bench/device-out.ts [messages] [rounds] [sessions]
 */
import { Emulator } from '../src/emulator';
import { forkChild, settledMemory } from './forked';
import type { DeviceConnections as DeviceConnectionsType, DeviceLogin } from '../src/devices';

const [mode = '', ...rest] = process.argv.slice(2);
// A row's process gets the settings after its kind and ports, the emulator's after its flag.
const settings = mode === '--row' ? rest.slice(2) : mode === '--emulator' ? rest : [mode, ...rest];
const MESSAGES = Number(settings[0] || 20_000);
const ROUNDS = Number(settings[1] || 3);
const SESSIONS = Number(settings[2] || 1000);
const WARMUP = Math.min(5000, Math.ceil(MESSAGES / 4));
/** Messages in flight at once: the MQTT session's window, and the raw client's. */
const MQTT_WINDOW = 32;
const REQUEST_CONCURRENCY = 16;
const HOST = '127.0.0.1';
const PROFILE = 'device-out-bench';

type Transport = 'mqtt' | 'http' | 'coap';
type Kind = `${Transport} ${'product' | 'raw'}` | 'sessions product' | 'sessions raw';

interface Ports {
  mqtt: number;
  http: number;
  coap: number;
}

interface MessageResult {
  rate: number;
  cpuPerMessage: number;
  failures: number;
}

interface SessionResult {
  connectRate: number;
  heapPerSession: number;
  rssPerSession: number;
}

const token = (n: number): string => `device-out-bench-token-${n}`;
const deviceName = (n: number): string => `device-out-bench-${n}`;
/** Devices 0..SESSIONS-1 hold sessions; one more per transport sends the message rows. */
const messageDevice = (transport: Transport): number =>
  SESSIONS + ['mqtt', 'http', 'coap'].indexOf(transport);

type Send = (n: number) => Promise<unknown>;

function productSender(
  ports: Ports,
  transport: Transport,
): {
  send: Send;
  close(): Promise<unknown>;
} {
  const { DeviceConnections } = require('../src/devices') as typeof import('../src/devices');
  const connections = new DeviceConnections({
    server: { host: HOST, ports },
    window: MQTT_WINDOW,
  });
  const n = messageDevice(transport);
  const login: DeviceLogin = { type: 'ACCESS_TOKEN', token: token(n) };
  return {
    send: (i) =>
      connections.send({
        deviceName: deviceName(n),
        login,
        transport,
        message: { kind: 'telemetry', payload: { temperature: 21.5, n: i } },
        timeoutMs: 10_000,
      }),
    close: () => connections.close(),
  };
}

async function rawSender(
  ports: Ports,
  transport: Transport,
): Promise<{ send: Send; close(): Promise<unknown> }> {
  const n = messageDevice(transport);
  const body = (i: number): string => JSON.stringify({ temperature: 21.5, n: i });
  if (transport === 'mqtt') {
    const mqtt = require('mqtt') as typeof import('mqtt');
    const client = mqtt.connect({
      host: HOST,
      port: ports.mqtt,
      username: token(n),
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    (client.stream as unknown as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    await new Promise((resolve) => client.once('connect', resolve));
    return {
      send: (i) => client.publishAsync('v1/devices/me/telemetry', body(i), { qos: 1 }),
      close: () => client.endAsync(),
    };
  }
  if (transport === 'http') {
    const { Pool } = require('undici') as typeof import('undici');
    const pool = new Pool(`http://${HOST}:${ports.http}`, { keepAliveTimeout: 4000 });
    const path = `/api/v1/${token(n)}/telemetry`;
    return {
      send: async (i) => {
        const answer = await pool.request({
          path,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: body(i),
        });
        await answer.body.dump();
        if (answer.statusCode !== 200) throw new Error(`HTTP ${answer.statusCode}`);
      },
      close: () => pool.close(),
    };
  }
  const coap = require('coap') as typeof import('coap');
  return {
    send: (i) =>
      new Promise<void>((resolve, reject) => {
        const request = coap.request({
          hostname: HOST,
          port: ports.coap,
          method: 'POST',
          pathname: `/api/v1/${token(n)}/telemetry`,
          confirmable: true,
        });
        request.on('response', (answer: { code: string; resume?: () => void }) => {
          answer.resume?.();
          if (answer.code.startsWith('2.')) resolve();
          else reject(new Error(`CoAP ${answer.code}`));
        });
        request.on('error', reject);
        request.end(body(i));
      }),
    close: async () => undefined,
  };
}

/** Keeps `concurrency` messages in flight until `count` have been sent. */
async function drive(send: Send, first: number, count: number, concurrency: number) {
  let next = first;
  let failures = 0;
  const worker = async (): Promise<void> => {
    while (next < first + count) await send(next++).catch(() => failures++);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return failures;
}

async function messageRow(kind: Kind, ports: Ports): Promise<MessageResult> {
  const [transport, side] = kind.split(' ') as [Transport, 'product' | 'raw'];
  const sender =
    side === 'product' ? productSender(ports, transport) : await rawSender(ports, transport);
  const concurrency = transport === 'mqtt' ? MQTT_WINDOW : REQUEST_CONCURRENCY;
  await drive(sender.send, 0, WARMUP, concurrency);
  const cpu = process.cpuUsage();
  const started = performance.now();
  const failures = await drive(sender.send, WARMUP, MESSAGES, concurrency);
  const wallMs = performance.now() - started;
  const used = process.cpuUsage(cpu);
  await sender.close();
  return {
    rate: (MESSAGES / wallMs) * 1000,
    cpuPerMessage: (used.user + used.system) / MESSAGES,
    failures,
  };
}

async function sessionRow(kind: Kind, ports: Ports): Promise<SessionResult> {
  // Both libraries loaded before the baseline, so neither's code counts as session memory.
  const mqtt = require('mqtt') as typeof import('mqtt');
  const { DeviceConnections } = require('../src/devices') as typeof import('../src/devices');
  await new Promise((resolve) => setTimeout(resolve, 100));
  const before = settledMemory();
  const started = performance.now();
  let connections: DeviceConnectionsType | undefined;
  const clients: Array<import('mqtt').MqttClient> = [];
  if (kind === 'sessions product') {
    connections = new DeviceConnections({
      server: { host: HOST, ports },
      maxSessions: SESSIONS + 1,
    });
    const all = new Promise<void>((resolve) =>
      connections?.on('summary', (summary) => summary.connected === SESSIONS && resolve()),
    );
    for (let n = 0; n < SESSIONS; n++) {
      connections.open(deviceName(n), { type: 'ACCESS_TOKEN', token: token(n) });
    }
    await all;
  } else {
    await Promise.all(
      Array.from(
        { length: SESSIONS },
        (_, n) =>
          new Promise<void>((resolve, reject) => {
            const client = mqtt.connect({
              host: HOST,
              port: ports.mqtt,
              username: token(n),
              protocolVersion: 4,
              reconnectPeriod: 0,
            });
            clients.push(client);
            client.once('error', reject);
            client.once('connect', () => {
              client.subscribe(['v1/devices/me/rpc/request/+', 'v1/devices/me/attributes'], {
                qos: 1,
              });
              resolve();
            });
          }),
      ),
    );
  }
  const connectMs = performance.now() - started;
  // The SUBACKs come in meanwhile.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const after = settledMemory();
  const result = {
    connectRate: (SESSIONS / connectMs) * 1000,
    heapPerSession:
      (after.heapUsed + after.external - before.heapUsed - before.external) / SESSIONS,
    rssPerSession: (after.rss - before.rss) / SESSIONS,
  };
  await connections?.close();
  await Promise.all(clients.map((client) => client.endAsync(true)));
  return result;
}

function child<T>(args: string[], execArgv: string[] = []): Promise<{ value: T; stop(): void }> {
  return forkChild<T>(__filename, args, execArgv);
}

async function emulatorProcess(): Promise<void> {
  const emulator = await Emulator.start({
    host: HOST,
    mqttPort: 0,
    httpPort: 0,
    coapPort: 0,
    profiles: [
      {
        name: PROFILE,
        provisionDeviceKey: 'k',
        provisionDeviceSecret: 's',
        strategy: 'allow-create',
      },
    ],
    devices: Array.from({ length: SESSIONS + 3 }, (_, n) => ({
      name: deviceName(n),
      profile: PROFILE,
      credentials: { credentialsType: 'ACCESS_TOKEN' as const, token: token(n) },
    })),
  });
  process.on('message', (message) => {
    if (message !== 'stop') return;
    void emulator.stop().then(() => process.exit(0));
  });
  process.send?.(emulator.ports);
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

const pad = (text: string | number, width: number): string => String(text).padStart(width);

async function main(): Promise<void> {
  const emulator = await child<Ports>(['--emulator', ...settings]);
  const ports = emulator.value;
  const messages = new Map<Kind, MessageResult[]>();
  const sessions = new Map<Kind, SessionResult[]>();
  const pairs: Array<[Kind, Kind]> = [
    ['mqtt product', 'mqtt raw'],
    ['http product', 'http raw'],
    ['coap product', 'coap raw'],
    ['sessions product', 'sessions raw'],
  ];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const pair of pairs) {
        for (const kind of round % 2 === 0 ? pair : [...pair].reverse()) {
          const isSessions = kind.startsWith('sessions');
          const row = await child<MessageResult | SessionResult>(
            ['--row', kind, JSON.stringify(ports), ...settings],
            isSessions ? ['--expose-gc'] : [],
          );
          const target = isSessions ? sessions : messages;
          const list = (target.get(kind) ?? []) as Array<MessageResult | SessionResult>;
          list.push(row.value);
          target.set(kind, list as never);
          process.stderr.write(
            `  round ${round + 1}/${ROUNDS} ${kind}: ${JSON.stringify(row.value)}\n`,
          );
        }
      }
    }
  } finally {
    emulator.stop();
  }
  const out = (line: string): boolean => process.stdout.write(`${line}\n`);
  out(
    `Telemetry for one device: ${MESSAGES} messages after ${WARMUP} warm-up, MQTT QoS 1 with ` +
      `${MQTT_WINDOW} in flight, HTTP and CoAP ${REQUEST_CONCURRENCY} in flight; medians of ` +
      `${ROUNDS} rounds\n`,
  );
  out(
    `${'row'.padEnd(16)}${pad('msgs/s', 9)}${pad('CPU us/msg', 12)}${pad('fail', 6)}${pad('product/raw', 13)}`,
  );
  for (const [productKind, rawKind] of pairs.slice(0, 3)) {
    const product = messages.get(productKind) ?? [];
    const raw = messages.get(rawKind) ?? [];
    for (const [kind, rows] of [
      [productKind, product],
      [rawKind, raw],
    ] as const) {
      const ratio =
        kind === productKind ? median(product.map((p, i) => p.rate / raw[i].rate)) : NaN;
      out(
        `${kind.padEnd(16)}${pad(median(rows.map((r) => r.rate)).toFixed(0), 9)}` +
          `${pad(median(rows.map((r) => r.cpuPerMessage)).toFixed(1), 12)}` +
          `${pad(Math.max(...rows.map((r) => r.failures)), 6)}` +
          `${pad(Number.isNaN(ratio) ? '' : ratio.toFixed(2), 13)}`,
      );
    }
  }
  const product = sessions.get('sessions product') ?? [];
  const raw = sessions.get('sessions raw') ?? [];
  out(
    `\n${SESSIONS} MQTT sessions open at once (connected and subscribed), medians of ${ROUNDS} rounds\n`,
  );
  out(
    `${'row'.padEnd(18)}${pad('connects/s', 11)}${pad('heap+ext KB/session', 21)}${pad('RSS KB/session', 16)}`,
  );
  for (const [kind, rows] of [
    ['sessions product', product],
    ['sessions raw', raw],
  ] as const) {
    out(
      `${kind.padEnd(18)}${pad(median(rows.map((r) => r.connectRate)).toFixed(0), 11)}` +
        `${pad((median(rows.map((r) => r.heapPerSession)) / 1024).toFixed(1), 21)}` +
        `${pad((median(rows.map((r) => r.rssPerSession)) / 1024).toFixed(1), 16)}`,
    );
  }
  out(
    `product/raw: connect rate ${median(product.map((p, i) => p.connectRate / raw[i].connectRate)).toFixed(2)}, ` +
      `memory per session ${median(product.map((p, i) => p.heapPerSession / raw[i].heapPerSession)).toFixed(2)}`,
  );
}

if (mode === '--emulator') {
  void emulatorProcess();
} else if (mode === '--row') {
  const [kind, ports] = rest as [Kind, string];
  const run = kind.startsWith('sessions') ? sessionRow : messageRow;
  void run(kind, JSON.parse(ports) as Ports).then((result) => {
    process.send?.(result);
    process.exit(0);
  });
} else {
  void main();
}
