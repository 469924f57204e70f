/**
 * Heap held by the provisioner per waiting job: JOBS jobs for distinct devices queued at once
 * against a transport that never answers, as a gateway flow feeds the node through a split node.
 * Run: npx tsx --expose-gc bench/waiting-job.ts [jobs] [concurrency]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ProvisionError } from '../src/protocol/errors';
import { Provisioner } from '../src/provisioner/provisioner';
import type { ProvisionJob } from '../src/provisioner/types';
import { openFileStore } from '../src/store/file';
import type { Transport } from '../src/transports/types';

const JOBS = Number(process.argv[2] ?? 20_000);
const CONCURRENCY = Number(process.argv[3] ?? 8);

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('Run with --expose-gc: npx tsx --expose-gc bench/waiting-job.ts');
const collect = gc;

/** Never answers; lets go when the job is cancelled, so close() ends. */
const silent: Transport = (_target, _request, options) =>
  new Promise((_resolve, reject) => {
    options.signal?.addEventListener(
      'abort',
      () => reject(new ProvisionError('CONNECTION_ERROR', 'cancelled')),
      { once: true },
    );
  });

function jobs(persist: boolean, prefix: string): ProvisionJob[] {
  return Array.from({ length: JOBS }, (_, i) => ({
    transport: 'http',
    target: { host: 'tb.example.com', port: 8080 },
    provisionDeviceKey: 'bench-profile-key-0123456789',
    provisionDeviceSecret: 'bench-profile-secret-0123456789',
    deviceName: `${prefix}-device-${i}`,
    credentialsMode: 'server',
    timeoutMs: 10_000,
    retries: 2,
    persist,
  }));
}

const turns = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
};

function heapUsed(): number {
  collect();
  collect();
  return process.memoryUsage().heapUsed;
}

/** Bytes of heap per waiting job that the provisioner holds: its promises, closures and records. */
async function measure(persist: boolean): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-waiting-job-'));
  const store = persist
    ? openFileStore({ filePath: path.join(dir, 'credentials.json') })
    : undefined;
  await store?.ready();
  const provisioner = new Provisioner({
    concurrency: CONCURRENCY,
    store,
    transports: { http: silent },
  });
  // A first round warms the code paths up, so their compiled code is not counted below.
  const warm = jobs(persist, 'warm').map((job) =>
    provisioner.provision(job).catch(() => undefined),
  );
  await turns(20);
  await provisioner.close();
  await Promise.all(warm);

  const second = new Provisioner({ concurrency: CONCURRENCY, store, transports: { http: silent } });
  const batch = jobs(persist, 'measured');
  await turns(5);
  const before = heapUsed();
  const waiting = batch.map((job) => second.provision(job));
  await turns(20);
  const after = heapUsed();
  const queued = second.queued;
  const settled = Promise.allSettled(waiting);
  await second.close();
  await settled;
  await store?.release();
  fs.rmSync(dir, { recursive: true, force: true });
  if (queued < JOBS - CONCURRENCY) throw new Error(`only ${queued} jobs were waiting`);
  return (after - before) / JOBS;
}

async function main(): Promise<void> {
  for (const persist of [false, true]) {
    const samples: number[] = [];
    for (let round = 0; round < 5; round++) samples.push(await measure(persist));
    samples.sort((a, b) => a - b);
    const median = samples[Math.floor(samples.length / 2)];
    console.log(
      `persist ${persist ? 'on ' : 'off'}: ${Math.round(median)} bytes per waiting job ` +
        `(median of ${samples.length}; ${samples.map((s) => Math.round(s)).join(', ')})`,
    );
  }
}

void main();
