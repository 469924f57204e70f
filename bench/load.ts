/**
 * Load: N devices through one provision node (Node-RED test helper, the built nodes/) at a given
 * concurrency, per transport, against the emulator in a child process (its CPU and memory stay out
 * of our figures). Checks that every device was provisioned exactly once (the server's devices and
 * requests), stored (the store reopened afterwards) and answered (outputs + catches = N), and
 * reports peak RSS (sampled every 100 ms), RSS after unloading, and the output rate of the first
 * and the last 1 000 devices (a store that grows costlier per device would show here).
 * Baseline in the same run: the same devices through the bare transport (no node, no store).
 *
 * Feeding: `paced` (default) keeps 4 × concurrency messages outstanding, as a flow that sends
 * as results come back, so the rates compare steady states; `burst` sends every message at once
 * (the node queues them), the harder case for memory.
 *
 * Run: npx tsx --expose-gc bench/load.ts [--transport mqtt|http|coap] [--devices 10000]
 *        [--concurrency 32] [--feed paced|burst]
 */

import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { EmulatorOptions } from '../src/emulator';
import { defaultStorePath, deviceKey, openFileStore } from '../src/store';
import { closeHttpAgents, getTransport } from '../src/transports';
import type { TransportName } from '../src/transports';
import { provisionNodeSettings } from './product';

const KEY = 'load-provision-key';
const SECRET = 'load-provision-secret';
const CHILD_FLAG = '--emulator-child';
const WARM_UP = 1000;

interface EmulatorStats {
  devices: number;
  requests: number;
  successes: number;
  /** Device names the server saw more than once. */
  repeated: number;
  maxConcurrent: number;
}

// ------------------------------------------------------------------------------------------------
// The emulator's side (child process).

async function serveEmulator(): Promise<void> {
  const { Emulator } = require('../src/emulator') as typeof import('../src/emulator');
  const options: EmulatorOptions = {
    host: '127.0.0.1',
    mqttPort: 0,
    httpPort: 0,
    coapPort: 0,
    mqttCloseAfterAnswerMs: 5000,
    profiles: [
      {
        name: 'load',
        provisionDeviceKey: KEY,
        provisionDeviceSecret: SECRET,
        strategy: 'allow-create',
      },
    ],
  };
  const emulator = await Emulator.start(options);
  process.on('message', (message: { cmd: string }) => {
    if (message.cmd === 'stats') {
      const seen = new Map<string, number>();
      let successes = 0;
      for (const request of emulator.requests) {
        const name = (request.body as { deviceName?: string } | undefined)?.deviceName ?? '';
        seen.set(name, (seen.get(name) ?? 0) + 1);
        if (request.outcome === 'SUCCESS') successes += 1;
      }
      const stats: EmulatorStats = {
        devices: emulator.devices.size,
        requests: emulator.requests.length,
        successes,
        repeated: [...seen.values()].filter((n) => n > 1).length,
        maxConcurrent: emulator.maxConcurrent,
      };
      process.send?.({ stats });
    } else if (message.cmd === 'stop') {
      void emulator.stop().then(() => process.disconnect());
    }
  });
  process.send?.({ ports: emulator.ports });
}

class EmulatorProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly ports: { mqtt: number; http: number; coap: number },
  ) {}

  static async start(): Promise<EmulatorProcess> {
    const child = fork(__filename, [CHILD_FLAG], {
      execArgv: ['-r', require.resolve('tsx/cjs')],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const ports = await new Promise<EmulatorProcess['ports']>((resolve, reject) => {
      child.once('exit', () => reject(new Error('the emulator process exited')));
      child.once('message', (message: { ports: EmulatorProcess['ports'] }) =>
        resolve(message.ports),
      );
    });
    child.removeAllListeners('exit');
    return new EmulatorProcess(child, ports);
  }

  stats(): Promise<EmulatorStats> {
    return new Promise((resolve) => {
      this.child.once('message', (message: { stats: EmulatorStats }) => resolve(message.stats));
      this.child.send({ cmd: 'stats' });
    });
  }

  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.send({ cmd: 'stop' });
    await exited;
  }
}

// ------------------------------------------------------------------------------------------------
// The measuring side.

interface Options {
  transports: TransportName[];
  devices: number;
  concurrency: number;
  /** paced: a flow that keeps 4 × concurrency messages outstanding; burst: all at once. */
  feed: 'paced' | 'burst';
}

function parseOptions(argv: string[]): Options {
  const value = (flag: string): string | undefined => {
    const at = argv.indexOf(flag);
    return at === -1 ? undefined : argv[at + 1];
  };
  const transport = value('--transport');
  const transports: TransportName[] =
    transport === undefined ? ['mqtt', 'http', 'coap'] : [transport as TransportName];
  for (const t of transports) {
    if (!['mqtt', 'http', 'coap'].includes(t)) throw new Error(`unknown transport ${t}`);
  }
  const devices = Number(value('--devices') ?? 10_000);
  const concurrency = Number(value('--concurrency') ?? 32);
  if (!(devices >= 2000) || !(concurrency >= 1)) {
    throw new Error(
      '--devices must be at least 2000 (first and last 1 000) and --concurrency >= 1',
    );
  }
  const feed = value('--feed') ?? 'paced';
  if (feed !== 'paced' && feed !== 'burst') throw new Error('--feed must be paced or burst');
  return { transports, devices, concurrency, feed };
}

/** Peak resident set size, sampled every 100 ms while running. */
class RssSampler {
  peak = process.memoryUsage.rss();
  private readonly timer = setInterval(() => this.sample(), 100);

  sample(): void {
    this.peak = Math.max(this.peak, process.memoryUsage.rss());
  }

  stop(): number {
    clearInterval(this.timer);
    this.sample();
    return this.peak;
  }
}

async function settleMemory(): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return process.memoryUsage.rss();
}

interface NodeRun {
  outputs: number;
  catches: number;
  firstCatch?: string;
  totalMs: number;
  firstRate: number;
  lastRate: number;
  rssBefore: number;
  rssPeak: number;
  rssAfter: number;
  heapAfter: number;
  stored: number;
  storeFiles: number;
}

type Helper = typeof import('node-red-node-test-helper');

async function throughNode(
  helper: Helper,
  nodeModules: unknown[],
  transport: TransportName,
  ports: EmulatorProcess['ports'],
  options: Options,
  devices: number,
  prefix: string,
): Promise<NodeRun> {
  const nameOf = (i: number): string => `${prefix}-${transport}-${String(i).padStart(6, '0')}`;
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), `tb-provision-load-${transport}-`));
  try {
    const flow = [
      { id: 'tab', type: 'tab', label: 'load' },
      {
        id: 'cfg',
        type: 'thingsboard-provision-config',
        host: '127.0.0.1',
        mqttPort: ports.mqtt,
        httpPort: ports.http,
        coapPort: ports.coap,
        usetls: false,
        tls: '',
      },
      {
        id: 'prov',
        z: 'tab',
        ...provisionNodeSettings(transport, options.concurrency, true),
        wires: [['out']],
      },
      { id: 'out', z: 'tab', type: 'helper' },
      { id: 'catcher', z: 'tab', type: 'catch', scope: ['prov'], wires: [['caught']] },
      { id: 'caught', z: 'tab', type: 'helper' },
    ];
    helper.settings({ userDir });
    await helper.load(nodeModules as never, flow, {
      cfg: { provisionDeviceKey: KEY, provisionDeviceSecret: SECRET },
    });
    const rssBefore = await settleMemory();
    const sampler = new RssSampler();
    const outputAt: number[] = [];
    let catches = 0;
    let firstCatch: string | undefined;
    const finished = new Promise<void>((resolve) => {
      const check = (): void => {
        if (outputAt.length + catches === devices) resolve();
      };
      helper.getNode('out').on('input', () => {
        outputAt.push(performance.now());
        check();
      });
      helper.getNode('caught').on('input', (msg) => {
        catches += 1;
        firstCatch ??= (msg as { error?: { message?: string } }).error?.message;
        check();
      });
    });
    const prov = helper.getNode('prov');
    let sent = 0;
    const sendNext = (): void => {
      prov.receive({ deviceName: nameOf(sent) });
      sent += 1;
    };
    const window = options.feed === 'burst' ? devices : 4 * options.concurrency;
    const refill = (): void => {
      while (sent < devices && sent - (outputAt.length + catches) < window) sendNext();
    };
    helper.getNode('out').on('input', refill);
    helper.getNode('caught').on('input', refill);
    const startedAt = performance.now();
    refill();
    await finished;
    const totalMs = performance.now() - startedAt;
    const rssPeak = sampler.stop();
    const n = outputAt.length;
    const firstRate = n >= 1000 ? 1000 / ((outputAt[999] - startedAt) / 1000) : NaN;
    const lastRate = n >= 2000 ? 1000 / ((outputAt[n - 1] - outputAt[n - 1001]) / 1000) : NaN;
    // Unloading closes the node: its store folds its segments into one file.
    await helper.unload();
    const rssAfter = await settleMemory();
    const heapAfter = process.memoryUsage().heapUsed;

    const storePath = defaultStorePath(userDir);
    const store = openFileStore({ filePath: storePath });
    await store.ready();
    let stored = 0;
    for (let i = 0; i < devices; i++)
      if (await store.get(deviceKey('127.0.0.1', KEY, nameOf(i)))) stored += 1;
    await store.release();
    const storeFiles = fs.readdirSync(path.dirname(storePath)).length;
    return {
      outputs: n,
      catches,
      firstCatch,
      totalMs,
      firstRate,
      lastRate,
      rssBefore,
      rssPeak,
      rssAfter,
      heapAfter,
      stored,
      storeFiles,
    };
  } finally {
    fs.rmSync(userDir, { recursive: true, force: true });
  }
}

/** The same work through the bare transport: no node, no queue, no store. */
async function throughTransport(
  transport: TransportName,
  ports: EmulatorProcess['ports'],
  options: Options,
): Promise<{ totalMs: number; failures: number }> {
  const exchange = getTransport(transport);
  let next = 0;
  let failures = 0;
  const startedAt = performance.now();
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (next < options.devices) {
        const i = next++;
        await exchange(
          { host: '127.0.0.1', port: ports[transport] },
          {
            provisionDeviceKey: KEY,
            provisionDeviceSecret: SECRET,
            deviceName: `bare-${transport}-${String(i).padStart(6, '0')}`,
          },
          { deadline: Date.now() + 10_000 },
        ).catch(() => {
          failures += 1;
        });
      }
    }),
  );
  const totalMs = performance.now() - startedAt;
  closeHttpAgents();
  return { totalMs, failures };
}

const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
const rate = (perSecond: number): string => `${perSecond.toFixed(0)}/s`;

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  // Loaded here, not at the top: the emulator's child process needs none of Node-RED.
  const { helper, packageNodeModules } =
    require('../test/support/node-red') as typeof import('../test/support/node-red');
  const rows: string[][] = [];
  const problems: string[] = [];
  console.log(
    `${options.devices} devices per transport, concurrency ${options.concurrency}, ` +
      `${options.feed} feed; ` +
      `Node.js ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'})`,
  );
  for (const transport of options.transports) {
    const emulator = await EmulatorProcess.start();
    try {
      // Warm-up (modules loaded, code compiled) in a throwaway flow, so the measured run's first
      // 1 000 compare with its last 1 000 on equal terms; it starts with an empty store.
      await throughNode(
        helper,
        packageNodeModules,
        transport,
        emulator.ports,
        options,
        WARM_UP,
        'warm',
      );
      const node = await throughNode(
        helper,
        packageNodeModules,
        transport,
        emulator.ports,
        options,
        options.devices,
        'load',
      );
      const server = await emulator.stats();
      const bare = await throughTransport(transport, emulator.ports, options);
      const nodeRate = options.devices / (node.totalMs / 1000);
      const bareRate = options.devices / (bare.totalMs / 1000);
      rows.push([
        transport,
        `${node.outputs}+${node.catches}`,
        `${server.devices - WARM_UP}/${server.requests - WARM_UP}`,
        String(node.stored),
        `${(node.totalMs / 1000).toFixed(1)} s`,
        rate(nodeRate),
        rate(node.firstRate),
        rate(node.lastRate),
        (node.lastRate / node.firstRate).toFixed(2),
        rate(bareRate),
        (nodeRate / bareRate).toFixed(2),
        mb(node.rssBefore),
        mb(node.rssPeak),
        mb(node.rssAfter),
        mb(node.heapAfter),
      ]);
      const expect = (ok: boolean, what: string): void => {
        if (!ok) problems.push(`${transport}: ${what}`);
      };
      expect(node.outputs === options.devices, `${node.outputs} outputs (${node.firstCatch})`);
      expect(node.catches === 0, `${node.catches} catches`);
      const atServer = options.devices + WARM_UP;
      expect(server.devices === atServer, `${server.devices} devices on the server`);
      expect(server.requests === atServer, `${server.requests} requests at the server`);
      expect(server.successes === atServer, `${server.successes} SUCCESS answers`);
      expect(server.repeated === 0, `${server.repeated} devices asked for more than once`);
      expect(server.maxConcurrent <= options.concurrency, `${server.maxConcurrent} at once`);
      expect(node.stored === options.devices, `${node.stored} stored`);
      expect(node.storeFiles === 1, `${node.storeFiles} store files after closing`);
      expect(bare.failures === 0, `${bare.failures} bare-transport failures`);
    } finally {
      await emulator.stop();
    }
  }
  const header = [
    'transport',
    'out+catch',
    'server dev/req',
    'stored',
    'time',
    'rate',
    'first 1k',
    'last 1k',
    'last/first',
    'bare rate',
    'node/bare',
    'RSS before',
    'RSS peak',
    'RSS after',
    'heap after',
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string =>
    `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of rows) console.log(line(row));
  if (problems.length > 0) {
    console.error(`PROBLEMS:\n  ${problems.join('\n  ')}`);
    process.exitCode = 1;
  }
}

if (process.argv.includes(CHILD_FLAG)) {
  void serveEmulator();
} else {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
