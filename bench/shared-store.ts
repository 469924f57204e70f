/**
 * The Redis credential store against the file store and against persist off, in real Node-RED
 * processes (the built package, `npm run build` first), one instance and two, and what a claim
 * costs per device. Run: npx tsx bench/shared-store.ts [devices] [rounds]
 *
 * Each row starts a fresh emulator (its own process), a fresh redis-server (appendonly yes,
 * appendfsync always: acknowledged means on disk, as the file store's flush) and fresh Node-RED
 * processes; every message of the list is sent at once through a split node (HTTP, server-chosen
 * credentials, concurrency 16). The clock runs from the moment every process is told to go until
 * the last device leaves the last provision node. Two instances get the same list (one fleet: each
 * device is asked for once) or halves of it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deviceKey, openRedisStore } from '../src/store';
import { NodeRedProcess, prepareUserDir } from '../test/support/node-red-process';
import { RedisServer } from '../test/support/redis-server';
import {
  HOST,
  startEmulator as startRemoteEmulator,
  type RemoteEmulator,
} from '../test/support/transport-helpers';
import { PROVISION_KEY, PROVISION_SECRET, type EmulatorAddress } from './common';

const DEVICES = Number(process.argv[2] ?? 2000);
const ROUNDS = Number(process.argv[3] ?? 1);
const CONCURRENCY = 16;

type Store = 'off' | 'file' | 'redis';

interface Row {
  label: string;
  store: Store;
  /** The device list of each instance. */
  lists: (names: string[]) => string[][];
}

const ROWS: Row[] = [
  { label: 'persist off, one instance', store: 'off', lists: (n) => [n] },
  { label: 'file store, one instance', store: 'file', lists: (n) => [n] },
  { label: 'Redis store, one instance', store: 'redis', lists: (n) => [n] },
  {
    label: 'persist off, two instances, halves',
    store: 'off',
    lists: (n) => [n.filter((_, i) => i % 2 === 0), n.filter((_, i) => i % 2 === 1)],
  },
  {
    label: 'Redis store, two instances, halves',
    store: 'redis',
    lists: (n) => [n.filter((_, i) => i % 2 === 0), n.filter((_, i) => i % 2 === 1)],
  },
  { label: 'Redis store, two instances, one list', store: 'redis', lists: (n) => [n, n] },
];

function startEmulator(): Promise<RemoteEmulator> {
  return startRemoteEmulator({
    profiles: [
      {
        name: 'bench',
        provisionDeviceKey: PROVISION_KEY,
        provisionDeviceSecret: PROVISION_SECRET,
        strategy: 'allow-create',
      },
    ],
  });
}

/** inject → wait for the go file → split → provision → a counter that writes when done. */
function flow(
  dir: string,
  emulator: EmulatorAddress,
  store: Store,
  redisUrl: string,
  names: string[],
) {
  const go = JSON.stringify(path.join(path.dirname(dir), 'go'));
  const ready = JSON.stringify(path.join(dir, 'ready.json'));
  const done = JSON.stringify(path.join(dir, 'done.json'));
  return [
    { id: 'tab', type: 'tab' },
    {
      id: 'keepAlive',
      z: 'tab',
      type: 'inject',
      props: [],
      repeat: '3600',
      once: false,
      wires: [[]],
    },
    {
      id: 'cfg',
      type: 'thingsboard-provision-config',
      host: emulator.host,
      mqttPort: emulator.ports.mqtt,
      httpPort: emulator.ports.http,
      coapPort: emulator.ports.coap,
      store: store === 'redis' ? 'redis' : 'file',
      redisUrl,
    },
    {
      id: 'start',
      z: 'tab',
      type: 'inject',
      props: [{ p: 'payload' }],
      payload: JSON.stringify(names),
      payloadType: 'json',
      once: true,
      onceDelay: 0.1,
      wires: [['wait']],
    },
    {
      id: 'wait',
      z: 'tab',
      type: 'function',
      func: `const fs = global.get('fs'); fs.writeFileSync(${ready}, '');
const go = () => (fs.existsSync(${go}) ? node.send(msg) : setTimeout(go, 2)); go(); return null;`,
      outputs: 1,
      wires: [['splitter']],
    },
    {
      id: 'splitter',
      z: 'tab',
      type: 'split',
      splt: '\\n',
      spltType: 'str',
      arraySplt: 1,
      arraySpltType: 'len',
      stream: false,
      addname: '',
      wires: [['prov']],
    },
    {
      id: 'prov',
      z: 'tab',
      type: 'thingsboard-provision',
      config: 'cfg',
      transport: 'http',
      deviceName: 'payload',
      deviceNameType: 'msg',
      credentialsType: 'server',
      timeout: 10,
      retries: 2,
      concurrency: CONCURRENCY,
      persist: store !== 'off',
      wires: [['count']],
    },
    {
      id: 'catcher',
      z: 'tab',
      type: 'catch',
      scope: ['prov'],
      uncaught: false,
      wires: [['count']],
    },
    {
      id: 'count',
      z: 'tab',
      type: 'function',
      func: `const n = (context.get('n') || 0) + 1; context.set('n', n);
if (msg.error) context.set('failed', (context.get('failed') || 0) + 1);
if (n === ${names.length}) global.get('fs').writeFileSync(${done}, JSON.stringify({ at: Date.now(), failed: context.get('failed') || 0 }));
return null;`,
      outputs: 0,
      wires: [],
    },
  ];
}

async function until(
  check: () => boolean,
  what: string,
  children: NodeRedProcess[],
): Promise<void> {
  const deadline = Date.now() + Number(process.env.TB_BENCH_ROW_TIMEOUT_MS ?? 300_000);
  while (!check()) {
    const dead = children.find((child) => child.hasExited);
    if (dead) throw new Error(`Node-RED exited before ${what}:\n${dead.log.slice(-2000)}`);
    if (Date.now() > deadline) {
      throw new Error(`timed out: ${what}\n${children.map((c) => c.log.slice(-2000)).join('\n')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Devices per second of one row: the fleet's size over the time to its last answer. */
async function measure(row: Row, round: number): Promise<number> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-bench-shared-'));
  const emulator = await startEmulator();
  const redis = await RedisServer.start({ durable: true });
  const children: NodeRedProcess[] = [];
  try {
    const names = Array.from({ length: DEVICES }, (_, i) => `bench-${round}-${i}`);
    const address: EmulatorAddress = { host: HOST, ports: emulator.ports };
    const dirs = row.lists(names).map((list, i) => {
      const dir = path.join(root, `instance-${i}`);
      fs.mkdirSync(dir);
      prepareUserDir(dir, {
        cfg: { provisionDeviceKey: PROVISION_KEY, provisionDeviceSecret: PROVISION_SECRET },
      });
      fs.writeFileSync(
        path.join(dir, 'flows.json'),
        JSON.stringify(flow(dir, address, row.store, redis.url, list)),
      );
      children.push(new NodeRedProcess(dir));
      return dir;
    });
    await until(
      () => dirs.every((dir) => fs.existsSync(path.join(dir, 'ready.json'))),
      'ready',
      children,
    );
    const started = Date.now();
    fs.writeFileSync(path.join(root, 'go'), '');
    await until(
      () => dirs.every((dir) => fs.existsSync(path.join(dir, 'done.json'))),
      'done',
      children,
    );
    const results = dirs.map(
      (dir) =>
        JSON.parse(fs.readFileSync(path.join(dir, 'done.json'), 'utf8')) as {
          at: number;
          failed: number;
        },
    );
    const failed = results.reduce((sum, r) => sum + r.failed, 0);
    if (failed > 0) throw new Error(`${row.label}: ${failed} devices failed`);
    return DEVICES / ((Math.max(...results.map((r) => r.at)) - started) / 1000);
  } finally {
    for (const child of children) child.kill('SIGKILL');
    await Promise.all(children.map((child) => child.exited));
    await emulator.stop();
    await redis.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

/** A claim and its release, as a flight makes them, at the node's concurrency: µs per device. */
async function claimCost(): Promise<{ wallUs: number; cpuUs: number }> {
  const redis = await RedisServer.start({ durable: true });
  const store = openRedisStore({ url: redis.url });
  try {
    const count = 5000;
    let next = 0;
    const cpu = process.cpuUsage();
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < count) {
          const claim = await store.claim(deviceKey('bench', 'key', `claimed-${next++}`), {
            holdMs: 30_000,
          });
          if (claim.held) await claim.release();
        }
      }),
    );
    const wall = performance.now() - started;
    const used = process.cpuUsage(cpu);
    return { wallUs: (wall * 1000) / count, cpuUs: (used.user + used.system) / count };
  } finally {
    await store.release();
    await redis.stop();
  }
}

async function main(): Promise<void> {
  console.log(`${DEVICES} devices per row, ${ROUNDS} round(s), HTTP, concurrency ${CONCURRENCY}`);
  const rates = new Map<string, number[]>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const row of ROWS) {
      const rate = await measure(row, round);
      rates.set(row.label, [...(rates.get(row.label) ?? []), rate]);
      console.log(`  round ${round + 1}: ${row.label}: ${rate.toFixed(0)} devices/s`);
    }
  }
  const median = (values: number[]) =>
    [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const of = (label: string) => median(rates.get(label) ?? [NaN]);
  console.log('\n| row | devices/s |\n| --- | ---: |');
  for (const row of ROWS) console.log(`| ${row.label} | ${of(row.label).toFixed(0)} |`);
  const one = of('Redis store, one instance');
  console.log(
    `\nRedis / file store, one instance: ${(one / of('file store, one instance')).toFixed(2)}`,
  );
  console.log(
    `two instances, one list / one instance (Redis): ${(of('Redis store, two instances, one list') / one).toFixed(2)}`,
  );
  console.log(
    `two instances, halves / one instance (Redis): ${(of('Redis store, two instances, halves') / one).toFixed(2)}`,
  );
  const cost = await claimCost();
  console.log(
    `claim + release: ${cost.wallUs.toFixed(1)} us of wall time and ${cost.cpuUs.toFixed(1)} us of client CPU per device`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
