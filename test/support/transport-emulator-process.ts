/**
 * Runs the emulator in a child process for the transport tests, so that the test process holds
 * only the client's sockets and timers and a leak check there sees the client alone.
 */

import { Emulator } from '../../src/emulator';
import type { EmulatorOptions } from '../../src/emulator';

interface Call {
  id: number;
  method: 'setFaults' | 'addDevice' | 'device' | 'devices' | 'requests' | 'stop';
  args: unknown[];
}

async function main(): Promise<void> {
  const options = JSON.parse(process.env.TRANSPORT_TEST_EMULATOR ?? '{}') as EmulatorOptions;
  const emulator = await Emulator.start(options);
  const send = (message: unknown) => process.send?.(message);
  process.on('message', (call: Call) => {
    void (async () => {
      try {
        let result: unknown;
        switch (call.method) {
          case 'setFaults':
            emulator.setFaults(call.args[0] as Parameters<Emulator['setFaults']>[0]);
            break;
          case 'addDevice':
            emulator.addDevice(call.args[0] as Parameters<Emulator['addDevice']>[0]);
            break;
          case 'device':
            result = emulator.device(String(call.args[0]));
            break;
          case 'devices':
            result = [...emulator.devices.values()];
            break;
          case 'requests':
            result = emulator.requests;
            break;
          case 'stop':
            await emulator.stop();
            send({ id: call.id, result: undefined });
            process.disconnect();
            return;
        }
        send({ id: call.id, result });
      } catch (error) {
        send({ id: call.id, error: (error as Error).message });
      }
    })();
  });
  send({ ready: true, ports: emulator.ports });
}

void main().catch((error: unknown) => {
  process.send?.({ ready: false, error: (error as Error).message });
  process.disconnect();
});
