/** Starting the emulator and the client rows as child processes of the bench. */

import { fork, spawn } from 'node:child_process';
import path from 'node:path';
import { RESULT_PREFIX } from './common';
import type { EmulatorAddress, RowResult, RowSpec } from './common';

export interface EmulatorProcess {
  address: EmulatorAddress;
  /** Devices the emulator holds now. */
  devices(): Promise<number>;
  stop(): Promise<void>;
}

export function startEmulator(): Promise<EmulatorProcess> {
  const child = fork(path.join(__dirname, 'emulator.js'), [], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const next = (): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const onExit = (): void => reject(new Error('the emulator process exited'));
      child.once('exit', onExit);
      child.once('message', (message: Record<string, unknown>) => {
        child.off('exit', onExit);
        resolve(message);
      });
    });
  return next().then((address) => ({
    address: address as unknown as EmulatorAddress,
    devices: async () => {
      const reply = next();
      child.send('stats');
      return (await reply).devices as number;
    },
    stop: async () => {
      if (child.connected) child.send('stop');
      await exited;
    },
  }));
}

/** Runs one row in a fresh `node` (no loader, as users run the package) and returns its result. */
export function runRow(spec: RowSpec, nodeArgs: string[] = []): Promise<RowResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [...nodeArgs, path.join(__dirname, 'client.js'), JSON.stringify(spec)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.once('error', reject);
    child.once('close', (code) => {
      const line = stdout.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
      if (code !== 0 || line === undefined) {
        reject(
          new Error(
            `${spec.kind} ${spec.transport} row failed (exit ${code}):\n${stderr}${stdout.slice(-2000)}`,
          ),
        );
        return;
      }
      resolve(JSON.parse(line.slice(RESULT_PREFIX.length)) as RowResult);
    });
  });
}
