/**
 * The seed baseline: what users replace — the documentation's paho-mqtt script, one Python
 * process per device (bench/seed_client.py, Debian's python3-paho-mqtt). Needs a python3 with
 * paho-mqtt; absent, the row is skipped with a note.
 */

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROVISION_KEY, PROVISION_SECRET, ROOT, closedLoop, deviceName } from './common';
import type { EmulatorAddress, RowResult } from './common';

const SCRIPT = path.join(ROOT, 'bench', 'seed_client.py');

/** A python3 that can import paho.mqtt (PATH first, then Debian's), or why there is none. */
export function findPython(): { python: string } | { missing: string } {
  for (const python of ['python3', '/usr/bin/python3']) {
    try {
      execFileSync(python, ['-c', 'import paho.mqtt.client'], { stdio: 'ignore', timeout: 10_000 });
      return { python };
    } catch {
      // Not there, or no paho: try the next one.
    }
  }
  return {
    missing:
      'no python3 with paho-mqtt found (Debian: apt-get install -y python3-paho-mqtt); seed row skipped',
  };
}

export async function runSeed(
  python: string,
  emulator: EmulatorAddress,
  devices: number,
  concurrency: number,
  prefix: string,
): Promise<RowResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-bench-seed-'));
  const latencies: number[] = [];
  let cpuMicros = 0;
  let peakRss = 0;
  let failures = 0;
  let firstError: string | undefined;
  const started = performance.now();
  try {
    await closedLoop(devices, concurrency, async (n) => {
      const name = deviceName(prefix, n);
      const began = performance.now();
      const { code, stdout, stderr } = await new Promise<{
        code: number | null;
        stdout: string;
        stderr: string;
      }>((resolve) => {
        const child = spawn(
          python,
          [
            SCRIPT,
            emulator.host,
            String(emulator.ports.mqtt),
            PROVISION_KEY,
            PROVISION_SECRET,
            name,
            path.join(dir, `${n}.credentials`),
          ],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        );
        let out = '';
        let err = '';
        child.stdout.setEncoding('utf8').on('data', (text: string) => (out += text));
        child.stderr.setEncoding('utf8').on('data', (text: string) => (err += text));
        child.once('close', (exit) => resolve({ code: exit, stdout: out, stderr: err }));
      });
      const report = JSON.parse(stdout.trim().split('\n').pop() || '{}') as {
        status?: string;
        cpuMicros?: number;
        peakRss?: number;
      };
      cpuMicros += report.cpuMicros ?? 0;
      peakRss = Math.max(peakRss, report.peakRss ?? 0);
      if (code === 0) latencies.push(performance.now() - began);
      else {
        failures++;
        firstError ??= `${report.status ?? ''} ${stderr.trim().split('\n').pop() ?? ''}`.trim();
      }
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return {
    devices,
    failures,
    wallMs: performance.now() - started,
    latencies,
    cpuMicros,
    peakRss,
    firstError,
  };
}
