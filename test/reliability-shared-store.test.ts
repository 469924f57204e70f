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
import { openRedisStore } from '../src/store';
import type { TransportName } from '../src/transports/types';
import { KEY, PROFILE, SECRET, configNode, type FlowNode } from './support/flows';
import {
  NodeRedProcess,
  prepareUserDir,
  readLines,
  recordTo,
  waitUntil,
  injectEachOnce,
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

/**
 * Every device emitted (per process) was created once and carries the server's credentials, and a
 * device emitted by two processes carries the same in both, from the server in one of them only.
 * Answers the number of such shared emissions and each device's outcomes at the server.
 */
async function checkAnswers(
  emulator: RemoteEmulator,
  emitted: Emitted[][],
): Promise<{ shared: number; asked: Map<string, string[]> }> {
  const asked = new Map<string, string[]>();
  for (const request of await emulator.requests()) {
    const name = (request.body as { deviceName: string }).deviceName;
    asked.set(name, [...(asked.get(name) ?? []), request.outcome]);
  }
  const devices = new Map((await emulator.devices()).map((device) => [device.name, device]));
  const byProcess = emitted.map((list) => new Map(list.map((e) => [e.deviceName, e])));
  let shared = 0;
  for (const [i, mine] of byProcess.entries()) {
    assert.equal(mine.size, emitted[i].length, `process ${i}: each device once`);
    for (const [name, record] of mine) {
      assert.equal(
        asked.get(name)?.filter((o) => o === 'SUCCESS').length,
        1,
        `${name} created once`,
      );
      const device = devices.get(name);
      assert.ok(device, `${name} exists at the server`);
      assert.deepEqual(
        record.credentialsValue,
        emittedForm(device),
        `${name}: the server's credentials`,
      );
      for (const other of byProcess.slice(i + 1)) {
        const theirs = other.get(name);
        if (!theirs) continue;
        shared += 2;
        assert.deepEqual(
          theirs.credentialsValue,
          record.credentialsValue,
          `${name}: the same in both`,
        );
        assert.notEqual(
          theirs.cached,
          record.cached,
          `${name}: one asked, the other took the answer`,
        );
      }
    }
  }
  return { shared, asked };
}

/** Redis holds exactly the credentials emitted, under the fleet's prefix. */
async function checkRedis(redis: RedisServer, emitted: Emitted[][]): Promise<void> {
  const expected = new Map(emitted.flat().map((e) => [e.deviceName, e.credentialsValue]));
  const store = openRedisStore({ url: redis.url, prefix: 'fleet:' });
  try {
    let entries = 0;
    for await (const entry of store.entries()) {
      entries += 1;
      assert.deepEqual(
        entry.answer.credentialsValue,
        expected.get(entry.deviceName),
        entry.deviceName,
      );
    }
    assert.equal(entries, expected.size, 'every device emitted is kept in Redis');
  } finally {
    await store.release();
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
    flow.push(...injectEachOnce(id, lane.names, `prov-${id}`), {
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
    });
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

    assert.equal(a.emitted().length, total);
    assert.equal(b.emitted().length, total);
    const { shared, asked } = await checkAnswers(emulator, [a.emitted(), b.emitted()]);
    assert.equal(shared, 2 * 3 * (DEVICES - half));
    assert.equal(asked.size, 3 * (DEVICES + half));
    for (const outcomes of asked.values()) assert.deepEqual(outcomes, ['SUCCESS']);
    await checkRedis(redis, [a.emitted(), b.emitted()]);

    for (const child of [a.child, b.child]) child.kill('SIGINT');
    for (const child of [a.child, b.child]) {
      const { code } = await child.exited;
      assert.equal(code, 0, `Node-RED exited with ${code}\n${child.log.slice(-3000)}`);
    }
  });
  it('goes on when Redis is killed and restarted mid-run: nothing lost, nothing in Catch', async function () {
    emulator = await startEmulator({ profiles: [PROFILE], faults: { answerDelayMs: 2 } });
    const lanes = (from: number) =>
      (['http', 'coap'] as const).map((transport) => ({
        transport,
        credentialsType: 'ACCESS_TOKEN',
        names: names(`outage-${transport}`, from, from + DEVICES),
      }));
    const half = Math.floor(DEVICES / 2);
    const a = start('a', lanes(0));
    const b = start('b', lanes(half));
    const total = 2 * DEVICES;
    const done = (p: typeof a) => p.emitted().length + p.failed().length;
    await waitUntil(
      'a quarter is answered',
      () => done(a) + done(b) >= total / 2,
      60_000,
      a.child,
      b.child,
    );
    await redis.kill('SIGKILL');
    const killedAt = done(a) + done(b);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await redis.restart();
    await waitUntil(
      'both answered every device',
      () => done(a) >= total && done(b) >= total,
      120_000,
      a.child,
      b.child,
    );
    assert.ok(killedAt < 2 * total, 'Redis was killed while devices were still being provisioned');
    assert.deepEqual([...a.failed(), ...b.failed()], [], 'nothing in Catch');
    assert.equal(a.emitted().length, total);
    assert.equal(b.emitted().length, total);
    const { asked } = await checkAnswers(emulator, [a.emitted(), b.emitted()]);
    for (const [name, outcomes] of asked)
      assert.deepEqual(outcomes, ['SUCCESS'], `${name} asked once`);
    await checkRedis(redis, [a.emitted(), b.emitted()]);
  });

  it('a Node-RED process killed mid-run: the other completes every device, recovering the answers lost with it', async function () {
    // Each request stays at the server a while, so the kill always finds some there.
    emulator = await startEmulator({ profiles: [PROFILE], faults: { answerDelayMs: 150 } });
    const count = Math.min(DEVICES, 200);
    const lanes: Lane[] = [
      { transport: 'http', credentialsType: 'ACCESS_TOKEN', names: names('killed-http', 0, count) },
      { transport: 'mqtt', credentialsType: 'MQTT_BASIC', names: names('killed-mqtt', 0, count) },
    ];
    // A short deadline keeps the hold of the killed process short: 1 s × 3 + backoff + 2 s.
    const node = { timeout: 1, retries: 1, concurrency: 8 };
    const a = start('a', lanes, node);
    const b = start('b', lanes, node);
    await waitUntil(
      'the first process provisioned some',
      () => a.emitted().filter((e) => !e.cached).length >= 40,
      60_000,
      a.child,
      b.child,
    );
    a.child.kill('SIGKILL');
    assert.equal((await a.child.exited).signal, 'SIGKILL');
    const total = 2 * count;
    await waitUntil(
      'the other answered every device',
      () => b.emitted().length + b.failed().length >= total,
      120_000,
      b.child,
    );
    assert.deepEqual(b.failed(), [], 'nothing in Catch');
    assert.equal(b.emitted().length, total);
    const { asked } = await checkAnswers(emulator, [a.emitted(), b.emitted()]);
    const fromB = new Map(b.emitted().map((e) => [e.deviceName, e]));
    for (const record of a.emitted()) {
      assert.deepEqual(
        fromB.get(record.deviceName)?.credentialsValue,
        record.credentialsValue,
        record.deviceName,
      );
    }
    // Created by the killed process, its answer lost with it: the survivor's FAILURE was recovered.
    const recovered = [...asked].filter(([, outcomes]) => outcomes.includes('FAILURE'));
    assert.ok(recovered.length > 0, 'the kill left answers to recover');
    for (const [name, outcomes] of recovered) {
      assert.deepEqual(outcomes, ['SUCCESS', 'FAILURE'], name);
      assert.equal(fromB.get(name)?.cached, false, name);
    }
    await checkRedis(redis, [b.emitted()]);
  });
});
