/**
 * `npm run bench`: the product (a provision node in a real Node-RED runtime) against the raw client
 * libraries and the documentation's Python script, over MQTT, HTTP and CoAP, in one run. See
 * bench/README.md for how to read the table.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { TRANSPORTS, median, percentile } from './common';
import type { RowResult, RowSpec, Transport } from './common';
import { runRow, startEmulator } from './processes';
import type { EmulatorProcess } from './processes';
import { idleFlushes } from './raw';
import { findPython, runSeed } from './seed';
import { REFERENCE, START_VARIANTS, nodeRedStartTimes, requireCost, variantLabel } from './startup';
import type { StartTime } from './startup';

const { values: options } = parseArgs({
  options: {
    devices: { type: 'string', default: '5000' },
    concurrency: { type: 'string', default: '16' },
    transports: { type: 'string', default: TRANSPORTS.join(',') },
    rounds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '2000' },
    'emulator-warmup': { type: 'string', default: '3000' },
    'seed-devices': { type: 'string', default: '20' },
    scale: { type: 'string', default: '1000,10000' },
    'startup-repetitions': { type: 'string', default: '15' },
    skip: { type: 'string', default: '' },
    'cpu-profile': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (options.help) {
  process.stdout.write(`npm run bench -- [options]
  --devices N               devices per row (default 5000)
  --concurrency C           devices in flight (default 16)
  --transports list         mqtt,http,coap
  --rounds R                rounds of raw/product rows per transport, medians (default 3)
  --warmup W                devices provisioned before each row's clock starts (default 2000)
  --emulator-warmup W       devices per transport that warm the emulator up first (default 3000)
  --seed-devices N          devices for the Python seed row (default 20)
  --scale A,B               product rates at A and at B devices (default 1000,10000)
  --startup-repetitions R   Node-RED starts per variant (default 15)
  --skip list               any of: compare, seed, scale, startup
  --cpu-profile DIR         write a CPU profile of every product row's timed part into DIR
`);
  process.exit(0);
}

const DEVICES = Number(options.devices);
const CONCURRENCY = Number(options.concurrency);
const ROUNDS = Number(options.rounds);
const WARMUP = Number(options.warmup);
const EMULATOR_WARMUP = Number(options['emulator-warmup']);
const SEED_DEVICES = Number(options['seed-devices']);
const SCALE = options.scale.split(',').map(Number);
const STARTUP_REPETITIONS = Number(options['startup-repetitions']);
const SKIP = new Set(options.skip.split(',').filter(Boolean));
const SELECTED = options.transports.split(',') as Transport[];
const PROFILE_DIR = options['cpu-profile'];
if (PROFILE_DIR) fs.mkdirSync(PROFILE_DIR, { recursive: true });

interface Summary {
  rate: number;
  p50: number;
  p99: number;
  cpuPerDevice: number;
  peakRss: number;
  devices: number;
  /** Flushed rows: each append's flush time, p50 and mean, ms. */
  flush?: { p50: number; mean: number };
}

/** Devices that failed, by row, for a note under the table: a row with failures is suspect. */
const failureNotes: string[] = [];

function summarize(result: RowResult, row: string): Summary {
  if (result.failures > 0) {
    failureNotes.push(`${row}: ${result.failures} devices failed (${result.firstError ?? '?'})`);
  }
  const sorted = [...result.latencies].sort((a, b) => a - b);
  return {
    rate: (result.devices / result.wallMs) * 1000,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    cpuPerDevice: result.cpuMicros / result.devices,
    peakRss: result.peakRss,
    devices: result.devices,
    flush: result.flushes && flushTimes(result.flushes),
  };
}

function flushTimes(times: readonly number[]): Summary['flush'] {
  if (times.length === 0) return undefined;
  return { p50: median(times), mean: times.reduce((a, b) => a + b, 0) / times.length };
}

/** Medians over rounds (peak RSS: the highest). */
function combine(rows: Summary[]): Summary {
  const flushes = rows.flatMap((r) => (r.flush ? [r.flush] : []));
  return {
    rate: median(rows.map((r) => r.rate)),
    p50: median(rows.map((r) => r.p50)),
    p99: median(rows.map((r) => r.p99)),
    cpuPerDevice: median(rows.map((r) => r.cpuPerDevice)),
    peakRss: Math.max(...rows.map((r) => r.peakRss)),
    devices: rows[0].devices,
    flush:
      flushes.length === 0
        ? undefined
        : {
            p50: median(flushes.map((f) => f.p50)),
            mean: median(flushes.map((f) => f.mean)),
          },
  };
}

const log = (line: string): void => void process.stderr.write(`${line}\n`);

let uniquePrefix = 0;
function spec(
  kind: RowSpec['kind'],
  transport: Transport,
  devices: number,
  emulator: RowSpec['emulator'],
): RowSpec {
  const row: RowSpec = {
    kind,
    transport,
    devices,
    concurrency: CONCURRENCY,
    warmup: WARMUP,
    prefix: `bench-${kind}-${transport}-${++uniquePrefix}`,
    emulator,
  };
  if (PROFILE_DIR && kind === 'product') {
    row.cpuProfile = path.join(PROFILE_DIR, `product-${transport}-${uniquePrefix}.cpuprofile`);
  }
  return row;
}

interface Versus {
  summary: Summary;
  /** Median over rounds of this rate / raw rate in the same round. */
  ratio: number;
  /** Median over rounds of this p50 - raw p50, ms. */
  p50Overhead: number;
  /** Median over rounds of this rate / the raw-in-a-flow rate in the same round. */
  ofInFlow: number;
  /** Median over rounds of this rate / the flushed raw rate in the same round. */
  ofFlushed: number;
}

interface Comparison {
  transport: Transport;
  raw: Summary;
  /** The layer the product speaks through, used directly (see rawClient). */
  floor: Versus;
  /** The fastest raw client as the only work of a node in the same flow: what any node can reach. */
  inFlow: Versus;
  /** The fastest raw client with each answer appended and flushed to disk: what durability costs. */
  flushed: Versus;
  /** The node as configured by default: credentials kept durably before each output. */
  product: Versus;
  /** The node with persistence off. */
  volatile: Versus;
  /** The node given all messages at once, its concurrency bounding the exchanges. */
  burst: Versus;
  /** The same burst with persistence off: what the waiting jobs alone cost. */
  burstVolatile: Versus;
}

type Kind =
  'raw' | 'floor' | 'inFlow' | 'flushed' | 'product' | 'volatile' | 'burst' | 'burstVolatile';
const KINDS: readonly Kind[] = [
  'raw',
  'floor',
  'inFlow',
  'flushed',
  'product',
  'volatile',
  'burst',
  'burstVolatile',
];

/** How the floor rows are named, and the rows built on them. */
const FLOOR_ROWS: Record<Transport, string> = {
  mqtt: 'raw codec (mqtt-packet), no client',
  http: 'raw undici, no http.request',
  coap: 'raw codec (coap-packet), no agent',
};
const FLOOR_LABELS: Record<Transport, string> = {
  mqtt: 'raw codec',
  http: 'raw undici',
  coap: 'raw codec',
};

function noRows(): Record<Kind, Summary[]> {
  return {
    raw: [],
    floor: [],
    inFlow: [],
    flushed: [],
    product: [],
    volatile: [],
    burst: [],
    burstVolatile: [],
  };
}

/** The emulator's own JIT warm-up: enough exchanges on the transport before anything is timed. */
async function warmEmulator(emulator: EmulatorProcess, transport: Transport): Promise<void> {
  await runRow({ ...spec('raw', transport, 1, emulator.address), warmup: EMULATOR_WARMUP });
}

async function compare(): Promise<{ comparisons: Comparison[]; idle: Summary['flush'] }> {
  const rows = new Map<Transport, Record<Kind, Summary[]>>();
  for (const transport of SELECTED) rows.set(transport, noRows());
  // Before anything else runs: what the same flush costs on the idle machine.
  const idle = flushTimes(await idleFlushes(200, 1024));
  for (let round = 0; round < ROUNDS; round++) {
    for (const transport of SELECTED) {
      // A fresh emulator for each transport's rows in each round: it keeps every device and
      // request it served, and after a few hundred thousand its own garbage collection would slow
      // the later rounds down (and drop CoAP datagrams).
      const emulator = await startEmulator();
      try {
        await warmEmulator(emulator, transport);
        // Rotated each round, so no kind always runs first or right after the same one.
        const order = KINDS.map((_, k) => KINDS[(k + round) % KINDS.length]);
        for (const kind of order) {
          const row = spec(
            kind === 'raw' || kind === 'floor' || kind === 'flushed' ? 'raw' : 'product',
            transport,
            DEVICES,
            emulator.address,
          );
          if (kind === 'inFlow') row.rawInFlow = true;
          if (kind === 'floor') row.floor = true;
          if (kind === 'flushed') row.flushed = true;
          if (kind === 'volatile' || kind === 'burstVolatile') row.persist = false;
          if (kind === 'burst' || kind === 'burstVolatile') row.burst = true;
          const summary = summarize(await runRow(row), `round ${round + 1} ${transport} ${kind}`);
          rows.get(transport)?.[kind].push(summary);
          log(
            `  round ${round + 1}/${ROUNDS} ${transport} ${kind}: ${summary.rate.toFixed(0)}/s, ` +
              `p50 ${summary.p50.toFixed(2)} ms, ${summary.cpuPerDevice.toFixed(0)} us CPU/device`,
          );
        }
      } finally {
        await emulator.stop();
      }
    }
  }
  const comparisons = SELECTED.map((transport) => {
    const { raw, floor, inFlow, flushed, product, volatile, burst, burstVolatile } =
      rows.get(transport) ?? noRows();
    const versus = (rowsOf: Summary[]): Versus => ({
      summary: combine(rowsOf),
      ratio: median(rowsOf.map((p, i) => p.rate / raw[i].rate)),
      p50Overhead: median(rowsOf.map((p, i) => p.p50 - raw[i].p50)),
      ofInFlow: median(rowsOf.map((p, i) => p.rate / inFlow[i].rate)),
      ofFlushed: median(rowsOf.map((p, i) => p.rate / flushed[i].rate)),
    });
    return {
      transport,
      raw: combine(raw),
      floor: versus(floor),
      inFlow: versus(inFlow),
      flushed: versus(flushed),
      product: versus(product),
      volatile: versus(volatile),
      burst: versus(burst),
      burstVolatile: versus(burstVolatile),
    };
  });
  return { comparisons, idle };
}

interface ScaleResult {
  transport: Transport;
  small: Summary;
  large: Summary;
  /** Devices per second at the large count over that at the small count. */
  ratio: number;
}

async function scale(): Promise<ScaleResult[]> {
  const [small, large] = SCALE;
  const results: ScaleResult[] = [];
  for (const transport of SELECTED) {
    const emulator = await startEmulator();
    try {
      await warmEmulator(emulator, transport);
      const smallRuns: Summary[] = [];
      const largeRuns: Summary[] = [];
      for (let round = 0; round < 3; round++) {
        smallRuns.push(
          summarize(
            await runRow(spec('product', transport, small, emulator.address)),
            `scale ${transport} ${small}`,
          ),
        );
        largeRuns.push(
          summarize(
            await runRow(spec('product', transport, large, emulator.address)),
            `scale ${transport} ${large}`,
          ),
        );
        log(
          `  scale ${transport}: ${small} → ${smallRuns[round].rate.toFixed(0)}/s, ` +
            `${large} → ${largeRuns[round].rate.toFixed(0)}/s`,
        );
      }
      const s = combine(smallRuns);
      const l = combine(largeRuns);
      results.push({ transport, small: s, large: l, ratio: l.rate / s.rate });
    } finally {
      await emulator.stop();
    }
  }
  return results;
}

const fmt = (value: number, digits = 0): string =>
  Number.isFinite(value) ? value.toFixed(digits) : '-';

function table(header: string[], rows: string[][], leftColumns = 2): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i < leftColumns ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

function summaryCells(transport: string, client: string, s: Summary): string[] {
  return [
    transport,
    client,
    String(s.devices),
    fmt(s.rate),
    fmt(s.p50, 2),
    fmt(s.p99, 2),
    fmt(s.cpuPerDevice),
    fmt(s.peakRss / 1e6),
  ];
}

async function main(): Promise<void> {
  const cpus = os.cpus();
  const out: string[] = [];
  out.push(
    `Machine: ${cpus.length} cores (${cpus[0]?.model ?? '?'}), Node.js ${process.version}, ` +
      `${os.type()} ${os.release()}`,
  );
  out.push(
    `Each row: ${DEVICES} devices at concurrency ${CONCURRENCY} after ${WARMUP} warm-up devices, ` +
      `client in a fresh process, emulator in its own process; medians of ${ROUNDS} rounds.`,
  );
  out.push('');

  const header = [
    'transport',
    'client',
    'devices',
    'devices/s',
    'p50 ms',
    'p99 ms',
    'CPU us/dev',
    'peak RSS MB',
    'product/raw',
    'of raw in flow',
    'of raw flushed',
  ];
  const rows: string[][] = [];
  let flushNote: string | undefined;
  if (!SKIP.has('compare')) {
    log('Comparing product and raw clients...');
    const versusCell = (v: Versus): string =>
      `${fmt(v.ratio, 2)} (p50 ${v.p50Overhead >= 0 ? '+' : ''}${fmt(v.p50Overhead, 2)} ms)`;
    const { comparisons, idle } = await compare();
    const flushText = (flush: Summary['flush']): string =>
      flush ? `p50 ${fmt(flush.p50, 2)} / mean ${fmt(flush.mean, 2)} ms` : '-';
    const flushed = comparisons.map((c) => `${c.transport} ${flushText(c.flushed.summary.flush)}`);
    flushNote =
      'Flushes (a synchronized append on the thread pool, submitted to done) in the rows with ' +
      `answers flushed to disk: ${flushed.join('; ')}; the same on the idle machine, before the ` +
      `emulator starts: ${flushText(idle)}.`;
    for (const c of comparisons) {
      // The in-flow and flushed rows build on the floor, the fastest raw client.
      const floor = FLOOR_LABELS[c.transport];
      rows.push([...summaryCells(c.transport, 'raw library', c.raw), '', '', '']);
      rows.push([
        ...summaryCells(c.transport, FLOOR_ROWS[c.transport], c.floor.summary),
        versusCell(c.floor),
        '',
        '',
      ]);
      rows.push([
        ...summaryCells(c.transport, `${floor} in a Node-RED flow`, c.inFlow.summary),
        versusCell(c.inFlow),
        '',
        '',
      ]);
      rows.push([
        ...summaryCells(c.transport, `${floor}, answers flushed to disk`, c.flushed.summary),
        versusCell(c.flushed),
        '',
        '',
      ]);
      // Only the rows that keep credentials have the flushed row's work to do.
      rows.push([
        ...summaryCells(c.transport, 'product', c.product.summary),
        versusCell(c.product),
        fmt(c.product.ofInFlow, 2),
        fmt(c.product.ofFlushed, 2),
      ]);
      rows.push([
        ...summaryCells(c.transport, 'product, persist off', c.volatile.summary),
        versusCell(c.volatile),
        fmt(c.volatile.ofInFlow, 2),
        '',
      ]);
      // Latency in a burst is mostly the wait in the node's queue: not comparable, not shown.
      const burstCells = (label: string, versus: Versus): string[] => {
        const cells = summaryCells(c.transport, label, versus.summary);
        cells[4] = '-';
        cells[5] = '-';
        return cells;
      };
      rows.push([
        ...burstCells('product, all at once', c.burst),
        fmt(c.burst.ratio, 2),
        fmt(c.burst.ofInFlow, 2),
        fmt(c.burst.ofFlushed, 2),
      ]);
      rows.push([
        ...burstCells('product, all at once, persist off', c.burstVolatile),
        fmt(c.burstVolatile.ratio, 2),
        fmt(c.burstVolatile.ofInFlow, 2),
        '',
      ]);
    }
  }
  let seedNote: string | undefined;
  if (!SKIP.has('seed') && SELECTED.includes('mqtt')) {
    const found = findPython();
    if ('missing' in found) seedNote = found.missing;
    else {
      log(`Seed baseline: ${SEED_DEVICES} Python processes...`);
      const emulator = await startEmulator();
      try {
        const seed = summarize(
          await runSeed(found.python, emulator.address, SEED_DEVICES, CONCURRENCY, 'bench-seed'),
          'seed',
        );
        rows.push([...summaryCells('mqtt', 'seed (python, 1 process/device)', seed), '', '', '']);
        seedNote =
          'seed: CPU and RSS are those of each Python process (interpreter start included), ' +
          'summed / highest; latency is process start to exit.';
      } finally {
        await emulator.stop();
      }
    }
  }
  if (rows.length > 0) out.push(table(header, rows));
  if (flushNote) out.push(flushNote);
  if (seedNote) out.push(seedNote);
  for (const note of failureNotes) out.push(`FAILURES in ${note}`);

  if (!SKIP.has('scale') && SCALE.length === 2) {
    log(`Per-device cost at ${SCALE[0]} and ${SCALE[1]} devices...`);
    const results = await scale();
    out.push('');
    out.push(
      table(
        [
          'transport',
          'product',
          `/s @${SCALE[0]}`,
          `/s @${SCALE[1]}`,
          'rate ratio',
          `CPU us @${SCALE[0]}`,
          `CPU us @${SCALE[1]}`,
        ],
        results.map((r) => [
          r.transport,
          'Node-RED',
          fmt(r.small.rate),
          fmt(r.large.rate),
          fmt(r.ratio, 2),
          fmt(r.small.cpuPerDevice),
          fmt(r.large.cpuPerDevice),
        ]),
      ),
    );
  }

  if (!SKIP.has('startup')) {
    log(`Start-up: ${STARTUP_REPETITIONS} Node-RED starts per variant...`);
    const starts = await nodeRedStartTimes(STARTUP_REPETITIONS);
    const cost = await requireCost(STARTUP_REPETITIONS);
    out.push('');
    out.push(
      table(
        [
          `start-up (median of ${STARTUP_REPETITIONS})`,
          'wall ms',
          'added',
          'CPU ms',
          'added',
          'package ms',
        ],
        [
          ...START_VARIANTS.map((v) => {
            const reference = REFERENCE[v];
            const added = (value: (t: StartTime) => number): string => {
              if (reference === undefined) return '';
              const delta = value(starts[v]) - value(starts[reference]);
              return `${delta >= 0 ? '+' : ''}${fmt(delta)}`;
            };
            return [
              variantLabel(v),
              fmt(starts[v].wallMs),
              added((t) => t.wallMs),
              fmt(starts[v].cpuMs),
              added((t) => t.cpuMs),
              v === 'with' || v === 'flow'
                ? fmt(starts[v].requireMs + starts[v].registerMs, 1)
                : '',
            ];
          }),
          [
            'require + register the node module, fresh process',
            '',
            '',
            '',
            '',
            fmt(cost.medianMs, 1),
          ],
        ],
        1,
      ),
    );
    const heavy = cost.packages.filter(
      (p) => p.startsWith('mqtt') || p.startsWith('coap') || p === 'undici',
    );
    out.push(
      `Packages loaded by require + register: ${cost.packages.join(', ') || 'none'}; ` +
        (heavy.length === 0
          ? 'no MQTT, HTTP or CoAP library is loaded until a node first uses it.'
          : `NOT LAZY: ${heavy.join(', ')} loaded at require time.`),
    );
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
