import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Emulator } from '../src/emulator';
import { Collector, type FlowNode, loadFlow, tempUserDir } from './support/flows';
import { coreNodeModule, helper } from './support/node-red';

/**
 * The importable examples do what their comments promise, against the emulator over real sockets.
 * Only the ports change (the emulator listens on ephemeral ones) and the credentials are added, as a
 * user does after importing.
 */

const examplesDir = path.resolve(__dirname, '..', 'examples');
const { demoFlows } = require('../scripts/demo.js') as {
  demoFlows(): {
    flows: FlowNode[];
    credentials: Record<string, Record<string, string>>;
    rpcDevice?: string;
  };
};
const DEMO_KEY = 'demo-provision-key';
const DEMO_SECRET = 'demo-provision-secret';
const CORE_NODES = [
  'network/05-tls.js',
  'network/10-mqtt.js',
  'network/21-httprequest.js',
  'common/20-inject.js',
  'common/21-debug.js',
  'common/25-catch.js',
  'common/90-comment.js',
  'function/10-function.js',
  'function/15-change.js',
  'function/89-delay.js',
  'sequence/17-split.js',
].map((file) => coreNodeModule(path.join('core', file)));

function example(prefix: string): FlowNode[] {
  const file = fs.readdirSync(examplesDir).find((f) => f.startsWith(prefix));
  assert.ok(file, `no example ${prefix}`);
  return JSON.parse(fs.readFileSync(path.join(examplesDir, file), 'utf8')) as FlowNode[];
}

function byType(flow: FlowNode[], type: string, name?: string): FlowNode {
  const node = flow.find((n) => n.type === type && (name === undefined || n.name === name));
  assert.ok(node, `${type} ${name ?? ''}`);
  return node;
}

describe('examples against the emulator', function () {
  let emulator: Emulator;
  let userDir: string;

  beforeEach(async function () {
    emulator = await Emulator.start({
      mqttPort: 0,
      httpPort: 0,
      coapPort: 0,
      profiles: [
        {
          name: 'demo',
          provisionDeviceKey: DEMO_KEY,
          provisionDeviceSecret: DEMO_SECRET,
          strategy: 'allow-create',
        },
      ],
    });
    userDir = tempUserDir();
  });

  afterEach(async function () {
    await helper.unload();
    await emulator.stop();
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  /** Points a flow's servers at the emulator's ephemeral ports, as a user edits the server node. */
  function pointAtEmulator(flow: FlowNode[]): void {
    const { mqtt, http, coap } = emulator.ports;
    for (const node of flow) {
      if (node.type === 'thingsboard-provision-config') {
        Object.assign(node, { mqttPort: mqtt, httpPort: http, coapPort: coap });
      }
      if (node.type === 'mqtt-broker') node.port = String(mqtt);
      if (node.type === 'function') {
        node.func = String(node.func).replace('127.0.0.1:8080', `127.0.0.1:${http}`);
      }
    }
  }

  /** Points the example at the emulator and loads it with the key and secret filled in. */
  async function deploy(flow: FlowNode[]): Promise<void> {
    pointAtEmulator(flow);
    const server = byType(flow, 'thingsboard-provision-config');
    const tab = flow.find((n) => typeof n.z === 'string')?.z as string;
    await loadFlow(
      [...flow, { id: tab, type: 'tab', label: 'example' }],
      { [server.id]: { provisionDeviceKey: DEMO_KEY, provisionDeviceSecret: DEMO_SECRET } },
      userDir,
      CORE_NODES,
    );
  }

  async function telemetryOf(device: string): Promise<unknown[]> {
    for (let i = 0; i < 100 && !emulator.device(device)?.telemetry.length; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return emulator.device(device)?.telemetry ?? [];
  }

  it('01 provisions over MQTT, connects the mqtt node as the device and sends telemetry', async function () {
    const flow = example('01 ');
    await deploy(flow);
    helper.getNode(byType(flow, 'inject').id).receive({});
    assert.deepEqual(await telemetryOf('demo-sensor-1'), [{ temperature: 21.5 }]);
    assert.equal(emulator.device('demo-sensor-1')?.credentials.credentialsType, 'ACCESS_TOKEN');
  });

  it('02 provisions over HTTP and posts telemetry with the token', async function () {
    const flow = example('02 ');
    await deploy(flow);
    const status = new Collector(byType(flow, 'debug', 'status code').id);
    helper.getNode(byType(flow, 'inject').id).receive({});
    const [answer] = await status.waitFor(1);
    assert.equal(answer.statusCode, 200);
    assert.deepEqual(await telemetryOf('demo-sensor-2'), [{ temperature: 21.5 }]);
  });

  it('03 forwards ten readings through one gateway connection and answers an RPC to one of the devices', async function () {
    const flow = example('03 ');
    await deploy(flow);
    const accepted = new Collector(byType(flow, 'debug', 'accepted').id);
    const failures = new Collector(byType(flow, 'debug', 'failure').id);
    helper.getNode(byType(flow, 'inject').id).receive({});
    const messages = await accepted.waitFor(10);
    const thermometers = Array.from({ length: 10 }, (_, i) => `demo-thermo-${i + 1}`);
    assert.deepEqual(
      messages.map((m) => (m.thingsboard as { deviceName: string }).deviceName).sort(),
      [...thermometers].sort(),
    );
    for (const message of messages) {
      assert.equal((message.thingsboard as { via: string }).via, 'gateway');
      assert.equal((message.thingsboard as { gateway: string }).gateway, 'demo-field-gateway');
    }
    const gateway = emulator.device('demo-field-gateway');
    assert.equal(gateway?.gateway, true, 'provisioned on first use as a gateway');
    for (const name of thermometers) {
      const device = emulator.device(name);
      assert.equal(device?.createdByGateway, 'demo-field-gateway', name);
      assert.equal(device?.timeseries.length, 1, name);
    }
    assert.deepEqual(
      emulator
        .sessions()
        .filter((s) => s.gateway === undefined)
        .map((s) => s.device),
      ['demo-field-gateway'],
      "one connection: the gateway's",
    );
    assert.equal(emulator.requests.length, 1, 'only the gateway is provisioned');

    assert.deepEqual(await emulator.sendRpc('demo-thermo-3', 'identify', { led: true }), {
      device: 'demo-thermo-3',
      method: 'identify',
      params: { led: true },
      ok: true,
    });
    assert.equal(failures.messages.length, 0);
  });

  it('04 provisions over MQTT, then device out sends a reading as the device with the stored credentials', async function () {
    const flow = example('04 ');
    await deploy(flow);
    const accepted = new Collector(byType(flow, 'debug', 'accepted').id);
    helper.getNode(byType(flow, 'inject').id).receive({});
    const [first] = await accepted.waitFor(1);
    assert.deepEqual(await telemetryOf('demo-sensor-4'), [{ temperature: 21.5 }]);
    assert.deepEqual(first.thingsboard, {
      host: '127.0.0.1',
      via: 'device',
      transport: 'mqtt',
      deviceName: 'demo-sensor-4',
    });
    const token = (emulator.device('demo-sensor-4')?.credentials as { token: string }).token;
    assert.ok(!JSON.stringify(first).includes(token), 'the token left the message');

    const provisioned = emulator.requests.length;
    helper.getNode(byType(flow, 'inject').id).receive({});
    await accepted.waitFor(2);
    assert.equal(emulator.requests.length, provisioned, 'answered from the store');
    assert.equal(emulator.device('demo-sensor-4')?.telemetry.length, 2);
  });

  it('05 answers an RPC: device in, the function builds the reply, device out sends it back', async function () {
    const flow = example('05 ');
    await deploy(flow);
    const sent = new Collector(byType(flow, 'debug', 'sent').id);
    helper.getNode(byType(flow, 'inject').id).receive({});
    await sent.waitFor(1);
    assert.deepEqual(await telemetryOf('demo-pump-1'), [{ speed: 0 }]);

    assert.deepEqual(await emulator.sendRpc('demo-pump-1', 'setSpeed', { speed: 3 }), { speed: 3 });
    assert.deepEqual(await emulator.sendRpc('demo-pump-1', 'getSpeed'), { speed: 3 });
    assert.deepEqual(await emulator.sendRpc('demo-pump-1', 'reboot'), {
      error: 'unknown method reboot',
    });
    // The reply and, for setSpeed, the new speed as telemetry: four messages through device out.
    await sent.waitFor(5);
    assert.deepEqual(emulator.device('demo-pump-1')?.telemetry, [{ speed: 0 }, { speed: 3 }]);
    const replies = emulator.device('demo-pump-1')?.rpcReplies ?? [];
    assert.deepEqual(
      replies.map((r) => r.method),
      ['setSpeed', 'getSpeed', 'reboot'],
    );
  });

  it('06 sends five readings, each as its own device, provisioned on first use', async function () {
    const flow = example('06 ');
    await deploy(flow);
    const accepted = new Collector(byType(flow, 'debug', 'accepted').id);
    const failures = new Collector(byType(flow, 'debug', 'failure').id);
    helper.getNode(byType(flow, 'inject').id).receive({});
    const messages = await accepted.waitFor(5);
    const meters = Array.from({ length: 5 }, (_, i) => `demo-meter-${i + 1}`);
    assert.deepEqual(
      messages.map((m) => (m.thingsboard as { deviceName: string }).deviceName).sort(),
      meters,
    );
    for (const meter of meters) {
      const device = emulator.device(meter);
      assert.equal(device?.credentials.credentialsType, 'ACCESS_TOKEN', meter);
      assert.equal(device?.telemetry.length, 1, meter);
      assert.equal(typeof (device?.telemetry[0] as { power?: unknown }).power, 'number');
    }
    assert.equal(emulator.requests.length, 5, 'one provisioning request per meter');
    assert.equal(emulator.sessions().length, 5, 'one MQTT session per meter');
    assert.equal(failures.messages.length, 0);
  });

  it('07 provisions ten devices four at a time, joins the results, and one gateway', async function () {
    const flow = example('07 ');
    await deploy(flow);
    const all = new Collector(byType(flow, 'debug', 'all provisioned').id);
    const gateway = new Collector(byType(flow, 'debug', 'gateway provisioned').id);
    helper.getNode(byType(flow, 'inject', 'demo-gateway-1').id).receive({});
    await gateway.waitFor(1);
    assert.equal(emulator.device('demo-gateway-1')?.gateway, true);

    emulator.resetStats();
    helper.getNode(byType(flow, 'inject', 'ten device names').id).receive({});
    const [joined] = await all.waitFor(1);
    const summaries = joined.payload as Array<Record<string, unknown>>;
    assert.deepEqual(
      summaries.map((s) => s.deviceName),
      Array.from({ length: 10 }, (_, i) => `demo-sensor-${11 + i}`),
    );
    for (const summary of summaries) assert.ok(!('credentialsValue' in summary));
    assert.ok(emulator.maxConcurrent <= 4, `at most four at once, saw ${emulator.maxConcurrent}`);
    assert.equal(emulator.device('demo-sensor-11')?.gateway, false);
  });

  it("npm start's flows: 01, 04 and 05 side by side, each device's telemetry arrives and an RPC is answered", async function () {
    const { flows, credentials, rpcDevice } = demoFlows();
    pointAtEmulator(flows);
    // The demo fires each inject once after deploy; nothing is clicked here.
    await loadFlow(flows, credentials, userDir, CORE_NODES);
    assert.deepEqual(await telemetryOf('demo-sensor-1'), [{ temperature: 21.5 }]);
    assert.deepEqual(await telemetryOf('demo-sensor-4'), [{ temperature: 21.5 }]);
    assert.deepEqual(await telemetryOf('demo-pump-1'), [{ speed: 0 }]);
    assert.equal(rpcDevice, 'demo-pump-1');
    assert.deepEqual(await emulator.sendRpc(rpcDevice, 'setSpeed', { speed: 2 }), { speed: 2 });
    assert.equal(emulator.sessions().length, 3, 'one session per device, none taken over');
  });
});
