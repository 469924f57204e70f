/**
 * The emulator in its own process, so the client process being measured holds only the client.
 * Started by run.ts over IPC: sends {host, ports} when listening; answers 'stats' with the number
 * of devices it holds; stops on 'stop'. Runs the built emulator (nodes/emulator), without its log.
 */

import path from 'node:path';
import { PROVISION_KEY, PROVISION_SECRET, ROOT } from './common';

interface EmulatorApi {
  host: string;
  ports: { mqtt: number; http: number; coap: number };
  devices: ReadonlyMap<string, unknown>;
  requests: readonly unknown[];
  stop(): Promise<void>;
}

interface EmulatorModule {
  Emulator: { start(options: Record<string, unknown>): Promise<EmulatorApi> };
}

async function main(): Promise<void> {
  const { Emulator } = require(path.join(ROOT, 'nodes', 'emulator', 'index.js')) as EmulatorModule;
  const emulator = await Emulator.start({
    host: '127.0.0.1',
    mqttPort: 0,
    httpPort: 0,
    coapPort: 0,
    profiles: [
      {
        name: 'bench',
        provisionDeviceKey: PROVISION_KEY,
        provisionDeviceSecret: PROVISION_SECRET,
        strategy: 'allow-create',
      },
    ],
  });
  process.on('message', (message: unknown) => {
    if (message === 'stats') {
      process.send?.({ devices: emulator.devices.size, requests: emulator.requests.length });
    } else if (message === 'stop') {
      void emulator.stop().then(() => process.disconnect());
    }
  });
  process.send?.({ host: emulator.host, ports: emulator.ports });
}

main().catch((err: unknown) => {
  process.stderr.write(`bench emulator: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
