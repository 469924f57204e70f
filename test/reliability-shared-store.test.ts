/**
 * One fleet, two Node-RED processes (each its own user directory), one Redis, one emulator in a
 * process of its own. Each process gets an overlapping list of devices per transport, all at once
 * through a split node: every device is asked for once at the server, both processes emit the same
 * credentials for it, nothing reaches a Catch node. Then Redis killed and restarted mid-run, and a
 * Node-RED process killed mid-run while the other goes on. The flows record what leaves each node.
 * TB_TEST_SHARED_DEVICES sets the devices per list and transport (default 1 000).
 */

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { EmulatedDevice } from '../src/emulator';
import type { TransportName } from '../src/transports/types';
import { KEY, PROFILE, SECRET, configNode, type FlowNode } from './support/flows';
import {
  NodeRedProcess,
  prepareUserDir,
  readLines,
  recordTo,
  waitUntil,
} from './support/node-red-process';
import { RedisServer } from './support/redis-server';
import { flowTarget } from './support/reliability';
import { startEmulator, type RemoteEmulator } from './support/transport-helpers';

const DEVICES = Number(process.env.TB_TEST_SHARED_DEVICES ?? 1000);

interface Emitted {
  deviceName: string;
  credentialsValue: unknown;
  cached: boolean;
}

interface Failed {
  deviceName: string;
  status: string;
  errorMsg: string;
}

/** What one provision node of a process does: over which transport, with which credentials. */
interface Lane {
  transport: TransportName;
  credentialsType: string;
  names: string[];
}

/** The server's credentials for a device, as a provision node emits them. */
function emittedForm(device: EmulatedDevice): unknown {
  const { credentials } = device;
  switch (credentials.credentialsType) {
    case 'ACCESS_TOKEN':
      return credentials.token;
    case 'MQTT_BASIC':
      return {
        clientId: credentials.clientId,
        userName: credentials.userName,
        password: credentials.password,
      };
    case 'X509_CERTIFICATE':
      return credentials.certificate;
  }
}

/** Per lane: inject (every name, at start) → split → provision → recorder; a Catch → recorder. */
function sharedFlow(
  emulator: RemoteEmulator,
  redisUrl: string,
  dir: string,
  lanes: Lane[],
  node: { timeout: number; retries: number; concurrency: number },
): FlowNode[] {
  const ids = lanes.map((lane) => `prov-${lane.transport}`);
  const flow: FlowNode[] = [
    { id: 'tab', type: 'tab', label: 'shared' },
    // Node-RED without its HTTP server exits once idle; a distant repeat keeps it running.
    {
      id: 'keepAlive',
      z: 'tab',
      type: 'inject',
      props: [],
      repeat: '3600',
      once: false,
      wires: [[]],
    },
    configNode(flowTarget(emulator), { store: 'redis', redisUrl, redisPrefix: 'fleet:' }),
    {
      id: 'recordEmitted',
      z: 'tab',
      type: 'function',
      func: recordTo(
        path.join(dir, 'emitted.jsonl'),
        '{ deviceName: msg.payload.deviceName, credentialsValue: msg.payload.credentialsValue, cached: msg.thingsboard.cached }',
      ),
      outputs: 0,
      wires: [],
    },
    {
      id: 'catcher',
      z: 'tab',
      type: 'catch',
      scope: ids,
      uncaught: false,
      wires: [['recordFailed']],
    },
    {
      id: 'recordFailed',
      z: 'tab',
      type: 'function',
      func: recordTo(
        path.join(dir, 'failed.jsonl'),
        '{ deviceName: msg.payload.deviceName, status: msg.payload.status, errorMsg: msg.payload.errorMsg }',
      ),
      outputs: 0,
      wires: [],
    },
  ];
  for (const lane of lanes) {
    const id = lane.transport;
    flow.push(
      {
        id: `inject-${id}`,
        z: 'tab',
        type: 'inject',
        props: [{ p: 'payload' }],
        payload: JSON.stringify(lane.names),
        payloadType: 'json',
        repeat: '',
        once: true,
        onceDelay: 0.1,
        wires: [[`split-${id}`]],
      },
      {
        id: `split-${id}`,
        z: 'tab',
        type: 'split',
        splt: '\\n',
        spltType: 'str',
        arraySplt: 1,
        arraySpltType: 'len',
        stream: false,
        addname: '',
        wires: [[`prov-${id}`]],
      },
      {
        id: `prov-${id}`,
        z: 'tab',
        type: 'thingsboard-provision',
        config: 'cfg',
        transport: lane.transport,
        deviceName: 'payload',
        deviceNameType: 'msg',
        credentialsType: lane.credentialsType,
        gateway: false,
        persist: true,
        mqttConnect: false,
        ...node,
        wires: [['recordEmitted']],
      },
    );
  }
  return flow;
}

describe('reliability: one fleet, two Node-RED processes, one Redis', function () {
  this.timeout(180_000);
  let redis: RedisServer;
  let emulator: RemoteEmulator;
  const dirs: string[] = [];
  const running: NodeRedProcess[] = [];

  /** A Node-RED process with its own user directory, running `lanes`. */
  function start(label: string, lanes: Lane[], node = { timeout: 5, retries: 2, concurrency: 16 }) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `tb-shared-${label}-`));
    dirs.push(dir);
    prepareUserDir(dir, { cfg: { provisionDeviceKey: KEY, provisionDeviceSecret: SECRET } });
    fs.writeFileSync(
      path.join(dir, 'flows.json'),
      JSON.stringify(sharedFlow(emulator, redis.url, dir, lanes, node)),
    );
    const child = new NodeRedProcess(dir);
    running.push(child);
    return {
      child,
      emitted: () => readLines<Emitted>(path.join(dir, 'emitted.jsonl')),
      failed: () => readLines<Failed>(path.join(dir, 'failed.jsonl')),
    };
  }

  const names = (prefix: string, from: number, to: number) =>
    Array.from({ length: to - from }, (_, i) => `${prefix}-${String(from + i).padStart(5, '0')}`);

  beforeEach(async function () {
    // Acknowledged writes survive a kill of Redis: appendfsync always.
    redis = await RedisServer.start({ durable: true });
  });
  afterEach(async function () {
    for (const child of running.splice(0)) {
      child.kill('SIGKILL');
      await child.exited;
    }
    await emulator?.stop();
    await redis.stop();
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });

  it(`asks the server once per device of overlapping lists (${DEVICES} per list and transport), both processes emitting the same credentials`, async function () {
    emulator = await startEmulator({ profiles: [PROFILE] });
    const modes: Record<TransportName, string> = {
      mqtt: 'server',
      http: 'ACCESS_TOKEN',
      coap: 'MQTT_BASIC',
    };
    const lanes = (from: number) =>
      (['mqtt', 'http', 'coap'] as const).map((transport) => ({
        transport,
        credentialsType: modes[transport],
        names: names(`fleet-${transport}`, from, from + DEVICES),
      }));
    const half = Math.floor(DEVICES / 2);
    const a = start('a', lanes(0));
    const b = start('b', lanes(half));
    const total = 3 * DEVICES;
    await waitUntil(
      'both processes answered every device',
      () =>
        a.emitted().length + a.failed().length >= total &&
        b.emitted().length + b.failed().length >= total,
      150_000,
      a.child,
      b.child,
    );
    assert.deepEqual(a.failed(), [], 'nothing in Catch (a)');
    assert.deepEqual(b.failed(), [], 'nothing in Catch (b)');

    const requests = await emulator.requests();
    const asked = new Map<string, string[]>();
    for (const request of requests) {
      const name = (request.body as { deviceName: string }).deviceName;
      asked.set(name, [...(asked.get(name) ?? []), request.outcome]);
    }
    const devices = new Map((await emulator.devices()).map((device) => [device.name, device]));
    const fromA = new Map(a.emitted().map((e) => [e.deviceName, e]));
    const fromB = new Map(b.emitted().map((e) => [e.deviceName, e]));
    assert.equal(fromA.size, total);
    assert.equal(fromB.size, total);
    let shared = 0;
    for (const [name, emitted] of [...fromA, ...fromB]) {
      assert.deepEqual(asked.get(name), ['SUCCESS'], `${name} asked for once`);
      const device = devices.get(name);
      assert.ok(device, `${name} exists at the server`);
      assert.deepEqual(
        emitted.credentialsValue,
        emittedForm(device),
        `${name}: the server's credentials`,
      );
      const other = fromA.get(name) === emitted ? fromB.get(name) : fromA.get(name);
      if (other) {
        shared += 1;
        assert.deepEqual(
          other.credentialsValue,
          emitted.credentialsValue,
          `${name}: the same in both`,
        );
        assert.notEqual(
          other.cached,
          emitted.cached,
          `${name}: one asked, the other took the answer`,
        );
      }
    }
    assert.equal(shared, 2 * 3 * (DEVICES - half));
    assert.equal(asked.size, 3 * (DEVICES + half));

    for (const child of [a.child, b.child]) child.kill('SIGINT');
    for (const child of [a.child, b.child]) {
      const { code } = await child.exited;
      assert.equal(code, 0, `Node-RED exited with ${code}\n${child.log.slice(-3000)}`);
    }
  });
});
