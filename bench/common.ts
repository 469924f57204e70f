/** What the bench processes share: the profile, the row specs and results, and the statistics. */

import path from 'node:path';

/** The repository root: compiled bench files run from .cache/bench, sources sit in bench/. */
export const ROOT = path.resolve(__dirname, '..', '..');

export const PROVISION_KEY = 'bench-provision-key';
export const PROVISION_SECRET = 'bench-provision-secret';

export type Transport = 'mqtt' | 'http' | 'coap';
export const TRANSPORTS: readonly Transport[] = ['mqtt', 'http', 'coap'];

export interface EmulatorAddress {
  host: string;
  ports: { mqtt: number; http: number; coap: number };
}

/** One measured row, run in a fresh client process. */
export interface RowSpec {
  kind: 'product' | 'raw';
  transport: Transport;
  devices: number;
  concurrency: number;
  /** Devices provisioned before the clock starts, so both kinds run warmed up. */
  warmup: number;
  /** Prefix that makes the device names of this row unique on the emulator. */
  prefix: string;
  emulator: EmulatorAddress;
  /**
   * Product only: all devices' messages sent at once (a gateway flow's split) and the node's
   * concurrency alone bounds the exchanges; latency then includes the wait in the node's queue.
   */
  burst?: boolean;
  /** Product only: keep credentials in the store (the node's default, true). */
  persist?: boolean;
  /**
   * Product only: the provision node replaced by a node that only calls the fastest raw client
   * (raw.ts) and passes the message on: the most any node can reach in this flow, Node-RED's
   * routing paid.
   */
  rawInFlow?: boolean;
  /**
   * Raw only: the fastest raw client, each answer appended to a journal file and flushed before the
   * device is done.
   */
  flushed?: boolean;
  /**
   * Raw only: the layer the product speaks through, used directly, instead of the client library
   * (mqtt-packet on a bare socket for MQTT, undici's pool for HTTP, coap-packet for CoAP).
   */
  floor?: boolean;
  /** Write a CPU profile of the timed part here (product and raw alike). */
  cpuProfile?: string;
}

export interface RowResult {
  devices: number;
  failures: number;
  wallMs: number;
  /** Per-device latency in ms, in completion order. */
  latencies: number[];
  /** User + system CPU of the client process during the timed part, in microseconds. */
  cpuMicros: number;
  /** Peak resident set size of the client process, in bytes. */
  peakRss: number;
  /** A failure text, when some devices failed. */
  firstError?: string;
  /** Flushed rows: each append's time during the timed part, write submitted to data flushed, ms. */
  flushes?: number[];
}

/** Results travel on stdout as one line with this prefix; everything else there is ignored. */
export const RESULT_PREFIX = 'TB_BENCH_RESULT ';

export function deviceName(prefix: string, n: number): string {
  return `${prefix}-${n}`;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index];
}

export function median(values: readonly number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    50,
  );
}

/** Runs `work` for devices 0..count-1 with `concurrency` of them in flight (closed loop). */
export async function closedLoop(
  count: number,
  concurrency: number,
  work: (n: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await work(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

/** Called around the timed part only (not the warm-up), e.g. to profile just that. */
export interface TimedHooks {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Times `count` devices after `warmup` devices: wall time, per-device latency, CPU of this process.
 * `provision` resolves when the device is done, rejects when it failed.
 */
export async function measure(
  spec: RowSpec,
  provision: (deviceName: string) => Promise<unknown>,
  hooks?: TimedHooks,
): Promise<RowResult> {
  let failures = 0;
  let firstError: string | undefined;
  const latencies: number[] = [];
  const run = async (names: string, count: number, record: boolean): Promise<void> => {
    await closedLoop(count, spec.burst ? count : spec.concurrency, async (n) => {
      const started = performance.now();
      try {
        await provision(deviceName(names, n));
        if (record) latencies.push(performance.now() - started);
      } catch (err) {
        failures++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    });
  };
  await run(`${spec.prefix}-warmup`, spec.warmup, false);
  failures = 0;
  await hooks?.start();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  await run(spec.prefix, spec.devices, true);
  const wallMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  await hooks?.stop();
  return {
    devices: spec.devices,
    failures,
    wallMs,
    latencies,
    cpuMicros: cpu.user + cpu.system,
    peakRss: process.resourceUsage().maxRSS * 1024,
    firstError,
  };
}

/** Resolves once the line is out: process.exit() would drop what a pipe has not taken yet. */
export function printResult(result: RowResult): Promise<void> {
  return new Promise((resolve) =>
    process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`, () => resolve()),
  );
}
