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

  /** Points the example at the emulator and loads it with the key and secret filled in. */
  async function deploy(flow: FlowNode[]): Promise<void> {
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

  it('03 provisions ten devices four at a time, joins the results, and one gateway', async function () {
    const flow = example('03 ');
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
});
