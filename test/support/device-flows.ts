/**
 * Flows for the device node suites: a provision node handing credentials to a device out node, a
 * device in node, output and Catch collectors, all on one config node pointing at the emulator.
 */

import assert from 'node:assert/strict';
import type { Emulator } from '../../src/emulator';
import { delay } from './common';
import { Collector, PROFILE, configNode } from './flows';
import type { FlowNode } from './flows';
import { helper, onCall } from './node-red';
import type { NodeStatus } from '../../src/nodes/shared/status';

export interface DeviceFlowOptions {
  /** Properties of the device out node `dev`. */
  out?: Record<string, unknown>;
  /** Properties of the config node `cfg` (e.g. a proxy's mqttPort). */
  config?: Record<string, unknown>;
  /** Properties of the provision node `prov`. */
  provision?: Record<string, unknown>;
  /** Properties of the device in node `din`. */
  in?: Record<string, unknown>;
  /** Where device in (`din`) is wired; default the collector `inbox`. */
  deviceInWires?: string[];
  extra?: FlowNode[];
}

/**
 * `prov` (provision, HTTP, kept on disk) → `dev` (device out) → `out`; `din` (device in) →
 * `inbox`; a Catch node for `prov` and `dev` → `caught`.
 */
export function deviceFlow(emulator: Emulator, options: DeviceFlowOptions = {}): FlowNode[] {
  return [
    { id: 'tab', type: 'tab', label: 'devices' },
    configNode(emulator, options.config),
    {
      id: 'prov',
      z: 'tab',
      type: 'thingsboard-provision',
      config: 'cfg',
      transport: 'http',
      deviceName: 'deviceName',
      deviceNameType: 'msg',
      credentialsType: 'server',
      timeout: 5,
      retries: 0,
      concurrency: 8,
      persist: true,
      wires: [['dev']],
      ...options.provision,
    },
    {
      id: 'dev',
      z: 'tab',
      type: 'thingsboard-device-out',
      name: '',
      config: 'cfg',
      via: 'device',
      transport: 'mqtt',
      gateway: '',
      deviceName: 'deviceName',
      deviceNameType: 'msg',
      deviceType: 'default',
      kind: 'telemetry',
      provision: true,
      qos: 1,
      timeout: 5,
      wires: [['out']],
      ...options.out,
    },
    {
      id: 'din',
      z: 'tab',
      type: 'thingsboard-device-in',
      name: '',
      config: 'cfg',
      via: 'device',
      gateway: '',
      wires: [options.deviceInWires ?? ['inbox']],
      ...options.in,
    },
    { id: 'out', z: 'tab', type: 'helper' },
    { id: 'inbox', z: 'tab', type: 'helper' },
    {
      id: 'catcher',
      z: 'tab',
      type: 'catch',
      scope: ['prov', 'dev'],
      uncaught: false,
      wires: [['caught']],
    },
    { id: 'caught', z: 'tab', type: 'helper' },
    ...(options.extra ?? []),
  ];
}

/** The collectors of a device flow. */
export function collectors(): { out: Collector; inbox: Collector; caught: Collector } {
  return {
    out: new Collector('out'),
    inbox: new Collector('inbox'),
    caught: new Collector('caught'),
  };
}

/** The statuses a node showed, in order. */
export function statusesOf(nodeId: string): NodeStatus[] {
  const statuses: NodeStatus[] = [];
  onCall(helper.getNode(nodeId), 'status', (args) => statuses.push(args[0] as NodeStatus));
  return statuses;
}

/** Polls until `check` holds; fails naming `what` after `timeoutMs`. */
export async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await delay(10);
  }
}

/** Credentials of a device the emulator knows, as a test would hand them to device out. */
export function addDevice(emulator: Emulator, name: string, token: string): void {
  emulator.addDevice({
    name,
    profile: PROFILE.name,
    credentials: { credentialsType: 'ACCESS_TOKEN', token },
  });
}

export function telemetryOf(emulator: Emulator, name: string): unknown[] {
  return emulator.device(name)?.telemetry ?? [];
}

export function send(msg: Record<string, unknown>, nodeId = 'dev'): void {
  helper.getNode(nodeId).receive(msg);
}
