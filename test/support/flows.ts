import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Emulator } from '../../src/emulator';
import { helper, packageNodeModules } from './node-red';

export const KEY = 'test-provision-key';
export const SECRET = 'test-provision-secret-Zq9';

export const PROFILE = {
  name: 'test-profile',
  provisionDeviceKey: KEY,
  provisionDeviceSecret: SECRET,
  strategy: 'allow-create' as const,
};

export type FlowNode = Record<string, unknown> & { id: string; type: string };

/** A config node for the emulator, the provision node, an output collector and a Catch collector. */
/** The server config node `cfg`, pointing at the emulator's plain ports. */
export function configNode(
  emulator: Pick<Emulator, 'host' | 'ports'>,
  props: Record<string, unknown> = {},
): FlowNode {
  return {
    id: 'cfg',
    type: 'thingsboard-provision-config',
    name: 'emulator',
    host: emulator.host,
    mqttPort: emulator.ports.mqtt,
    httpPort: emulator.ports.http,
    coapPort: emulator.ports.coap,
    usetls: false,
    tls: '',
    ...props,
  };
}

export function provisionFlow(
  emulator: Emulator,
  props: Record<string, unknown> = {},
  configProps: Record<string, unknown> = {},
): FlowNode[] {
  return [
    { id: 'tab', type: 'tab', label: 'test' },
    configNode(emulator, configProps),
    {
      id: 'prov',
      z: 'tab',
      type: 'thingsboard-provision',
      name: '',
      config: 'cfg',
      transport: 'mqtt',
      deviceName: 'deviceName',
      deviceNameType: 'msg',
      credentialsType: 'server',
      gateway: false,
      timeout: 5,
      retries: 0,
      concurrency: 8,
      persist: true,
      mqttConnect: false,
      wires: [['out']],
      ...props,
    },
    { id: 'out', z: 'tab', type: 'helper' },
    {
      id: 'catcher',
      z: 'tab',
      type: 'catch',
      scope: ['prov'],
      uncaught: false,
      wires: [['caught']],
    },
    { id: 'caught', z: 'tab', type: 'helper' },
  ];
}

export function keys(secret = SECRET, key = KEY): Record<string, Record<string, string>> {
  return { cfg: { provisionDeviceKey: key, provisionDeviceSecret: secret } };
}

export function tempUserDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'tb-provision-test-'));
}

export async function loadFlow(
  flow: FlowNode[],
  credentials: Record<string, Record<string, string>>,
  userDir: string,
  extraModules: Array<(RED: Record<string, unknown>) => void> = [],
): Promise<void> {
  helper.settings({ userDir });
  await helper.load([...packageNodeModules, ...extraModules] as never, flow, credentials);
}

export type Message = Record<string, unknown> & {
  payload?: unknown;
  error?: { message: string };
};

/** Messages arriving at a helper node, in order. */
export class Collector {
  readonly messages: Message[] = [];
  private waiters: Array<{ count: number; resolve: () => void }> = [];

  constructor(nodeId: string) {
    const node = helper.getNode(nodeId);
    node.on('input', (msg: Message) => {
      this.messages.push(msg);
      this.waiters = this.waiters.filter((w) => {
        if (this.messages.length >= w.count) w.resolve();
        return this.messages.length < w.count;
      });
    });
  }

  /** Resolves once `count` messages have arrived; rejects after `timeoutMs`. */
  waitFor(count: number, timeoutMs = 10000): Promise<Message[]> {
    if (this.messages.length >= count) return Promise.resolve(this.messages);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`expected ${count} messages, got ${this.messages.length}`)),
        timeoutMs,
      );
      this.waiters.push({
        count,
        resolve: () => {
          clearTimeout(timer);
          resolve(this.messages);
        },
      });
    });
  }
}

export function send(msg: Record<string, unknown>, nodeId = 'prov'): void {
  helper.getNode(nodeId).receive(msg);
}

/** An emulator on ephemeral ports that knows the test profile. */
export function startEmulator(): Promise<Emulator> {
  return Emulator.start({ mqttPort: 0, httpPort: 0, coapPort: 0, profiles: [PROFILE] });
}

/** After a test: unload the flow, stop the emulator and remove the user directory. */
export async function tearDown(emulator: Emulator, userDir: string): Promise<void> {
  await helper.unload();
  await emulator.stop();
  fs.rmSync(userDir, { recursive: true, force: true });
}
