import assert from 'node:assert/strict';
import { Emulator } from '../src/emulator';
import { delay } from './support/common';
import {
  Collector,
  keys,
  loadFlow,
  provisionFlow,
  send,
  startEmulator,
  tearDown,
  tempUserDir,
} from './support/flows';
import { coreNodeModule, helper } from './support/node-red';

/** The output drives the core mqtt and http request nodes, as the examples do. */
describe('chaining into core nodes', function () {
  let emulator: Emulator;
  let userDir: string;

  beforeEach(async function () {
    emulator = await startEmulator();
    userDir = tempUserDir();
  });

  afterEach(async function () {
    await tearDown(emulator, userDir);
  });

  for (const credentialsType of ['server', 'MQTT_BASIC'] as const) {
    it(`connects a dynamic mqtt out node with the ${credentialsType} credentials and sends telemetry`, async function () {
      const flow = provisionFlow(emulator, {
        transport: 'http',
        credentialsType,
        mqttConnect: true,
      });
      flow[2].wires = [['out', 'mqttOut']];
      flow.push(
        {
          id: 'broker',
          type: 'mqtt-broker',
          name: 'dynamic',
          broker: '127.0.0.1',
          port: '1',
          clientid: '',
          autoConnect: false,
          usetls: false,
          protocolVersion: '4',
          keepalive: '60',
          cleansession: true,
        },
        {
          id: 'mqttOut',
          z: 'tab',
          type: 'mqtt out',
          broker: 'broker',
          topic: '',
          qos: '1',
          retain: 'false',
        },
      );
      await loadFlow(flow, keys(), userDir, [coreNodeModule('core/network/10-mqtt.js')]);
      const out = new Collector('out');
      send({ deviceName: `chained-${credentialsType}` });
      const [msg] = await out.waitFor(1);
      assert.equal(msg.action, 'connect');
      const broker = helper.getNode('broker') as unknown as { connected: boolean };
      for (let i = 0; i < 50 && !broker.connected; i++) await delay(50);
      assert.ok(broker.connected, 'the mqtt node connected with the issued credentials');
      send({ topic: 'v1/devices/me/telemetry', payload: { temperature: 21.5 } }, 'mqttOut');
      const device = emulator.device(`chained-${credentialsType}`);
      for (let i = 0; i < 50 && !device?.telemetry.length; i++) await delay(50);
      assert.deepEqual(device?.telemetry, [{ temperature: 21.5 }]);
    });
  }

  it('feeds the http request node with the token for telemetry', async function () {
    const flow = provisionFlow(emulator, { transport: 'http' });
    flow[2].wires = [['build']];
    flow.push(
      {
        id: 'build',
        z: 'tab',
        type: 'change',
        rules: [
          {
            t: 'set',
            p: 'url',
            pt: 'msg',
            to: `"http://127.0.0.1:${emulator.ports.http}/api/v1/" & payload.credentialsValue & "/telemetry"`,
            tot: 'jsonata',
          },
          { t: 'set', p: 'payload', pt: 'msg', to: '{"humidity":40}', tot: 'json' },
        ],
        wires: [['request']],
      },
      {
        id: 'request',
        type: 'http request',
        method: 'POST',
        ret: 'txt',
        url: '',
        wires: [['out']],
      },
    );
    await loadFlow(flow, keys(), userDir, [
      coreNodeModule('core/function/15-change.js'),
      coreNodeModule('core/network/21-httprequest.js'),
    ]);
    const out = new Collector('out');
    send({ deviceName: 'http-chained' });
    const [msg] = await out.waitFor(1);
    assert.equal(msg.statusCode, 200);
    assert.deepEqual(emulator.device('http-chained')?.telemetry, [{ humidity: 40 }]);
  });
});
