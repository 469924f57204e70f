/** The emulator's gateway API (spec §5) over MQTT. */

import assert from 'node:assert/strict';
import type { Emulator } from '../src/emulator';
import { CREATE, RawMqttClient, request, startEmulator } from './support/emulator-clients';
import {
  addTokenDevice,
  connectDevice,
  expectPacket,
  nextPubackCode,
  nextPublish,
} from './emulator-devices';

describe('emulator gateway API', () => {
  let emulator: Emulator;
  const clients: RawMqttClient[] = [];

  async function gateway(version: 4 | 5 = 4, clientId = 'gw-client'): Promise<RawMqttClient> {
    const client = await connectDevice(emulator, 'gw-token', { version, clientId });
    clients.push(client);
    return client;
  }

  beforeEach(async () => {
    emulator = await startEmulator();
    addTokenDevice(emulator, 'gw', 'gw-token', true);
    addTokenDevice(emulator, 'plain', 'plain-token');
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await emulator.stop();
  });

  it('a device provisioned with gateway:true is a gateway at CONNECT', async () => {
    const provisioning = await RawMqttClient.provisionSession(emulator.ports.mqtt);
    clients.push(provisioning);
    provisioning.publish(
      '/provision/request',
      request(CREATE, { deviceName: 'new-gw', gateway: true, token: 'new-gw-token' }),
      1,
    );
    expectPacket(await provisioning.next(), 'puback');
    expectPacket(await provisioning.next(), 'publish');
    const client = await connectDevice(emulator, 'new-gw-token');
    clients.push(client);
    client.publish('v1/gateway/connect', '{"device":"behind-new-gw"}', 1, 1);
    assert.equal(await nextPubackCode(client, 1), 0);
    assert.equal(emulator.device('behind-new-gw')?.createdByGateway, 'new-gw');
  });

  it('connect with a type creates the device with that type; disconnect ends its session', async () => {
    const client = await gateway();
    client.publish('v1/gateway/connect', '{"device":"pump-1","type":"pump"}', 1, 1);
    assert.equal(await nextPubackCode(client, 1), 0);
    const pump = emulator.device('pump-1');
    assert.equal(pump?.profile, 'pump');
    assert.equal(pump?.createdByGateway, 'gw');
    assert.equal(pump?.credentials.credentialsType, 'ACCESS_TOKEN');
    const session = emulator.session('pump-1');
    assert.equal(session?.gateway, 'gw');
    assert.equal(session?.clientId, 'gw-client');
    assert.deepEqual(session?.subscriptions, { attributes: true, rpc: true });
    client.publish('v1/gateway/disconnect', '{"device":"pump-1"}', 1, 2);
    assert.equal(await nextPubackCode(client, 2), 0);
    assert.equal(emulator.session('pump-1'), undefined);
    assert.equal(emulator.session('gw')?.device, 'gw');
  });

  it('any message naming a device connects it (type "default"); an existing device is adopted as it is', async () => {
    const client = await gateway();
    client.publish('v1/gateway/attributes', '{"sensor-9":{"model":"S9"},"plain":{"x":1}}', 1, 1);
    assert.equal(await nextPubackCode(client, 1), 0);
    assert.equal(emulator.device('sensor-9')?.profile, 'default');
    assert.deepEqual(emulator.device('sensor-9')?.attributes, { model: 'S9' });
    assert.equal(emulator.device('plain')?.createdByGateway, undefined, 'adopted, not created');
    assert.deepEqual(emulator.device('plain')?.attributes, { x: 1 });
  });

  it('telemetry {"D":[..]} is recorded per device, non-array entries skipped, one PUBACK', async () => {
    const client = await gateway();
    const payload = {
      'meter-1': [{ ts: 1700000000000, values: { kwh: 12.5 } }, { kwh: '13' }],
      'meter-2': [{ kwh: 7 }],
      'meter-3': { kwh: 1 },
    };
    client.publish('v1/gateway/telemetry', JSON.stringify(payload), 1, 4);
    assert.equal(await nextPubackCode(client, 4), 0);
    assert.ok(await client.quietFor(100), 'one PUBACK for the whole message');
    assert.deepEqual(emulator.device('meter-1')?.telemetry, [payload['meter-1']]);
    assert.deepEqual(
      emulator.device('meter-1')?.timeseries.map((point) => point.values),
      [{ kwh: 12.5 }, { kwh: 13 }],
    );
    assert.equal(emulator.device('meter-1')?.timeseries[0].ts, 1700000000000);
    assert.deepEqual(emulator.device('meter-2')?.telemetry, [[{ kwh: 7 }]]);
    assert.equal(emulator.device('meter-3'), undefined);
    assert.deepEqual(emulator.device('gw')?.gatewayMessages, [
      { topic: 'v1/gateway/telemetry', payload },
    ]);
  });

  const wrongShapes: Array<[string, string, string]> = [
    ['v1/gateway/telemetry', '{"meter-1":{"kwh":1}}', 'telemetry with no device array'],
    ['v1/gateway/telemetry', '{}', 'telemetry naming no device'],
    ['v1/gateway/telemetry', '{"":[{"kwh":1}]}', 'an empty device name'],
    ['v1/gateway/attributes', '{"meter-1":5}', 'attributes with no device object'],
    ['v1/gateway/connect', '{"type":"pump"}', 'connect without "device"'],
    ['v1/gateway/rpc', '{"device":"d","id":1}', 'an RPC reply without "data"'],
    [
      'v1/gateway/attributes/request',
      '{"device":"d","client":true,"key":"k"}',
      'a request without "id"',
    ],
    ['v1/gateway/telemetry', '[1]', 'a payload that is no object'],
  ];
  for (const version of [4, 5] as const) {
    for (const [topic, payload, what] of wrongShapes) {
      it(`v${version}: ${what}: PUBACK${version === 5 ? ' 0x83' : ''}, then close`, async () => {
        const client = await gateway(version);
        client.publish(topic, payload, 1, 8);
        assert.equal(await nextPubackCode(client, 8), version === 5 ? 0x83 : 0);
        expectPacket(await client.next(), 'closed');
        assert.deepEqual(emulator.device('gw')?.gatewayMessages, []);
      });
    }
  }

  for (const [payload, what] of [
    ['not json', 'invalid JSON'],
    ['{"meter-1":[5]}', "a device's entry that is no object"],
  ] as const) {
    it(`${what}: 3.1.1 closes without PUBACK; 5 gets PUBACK 0x99 and stays open`, async () => {
      const v4 = await gateway(4, 'gw-v4');
      v4.publish('v1/gateway/telemetry', payload, 1, 2);
      expectPacket(await v4.next(), 'closed');
      const v5 = await gateway(5, 'gw-v5');
      v5.publish('v1/gateway/telemetry', payload, 1, 3);
      assert.equal(await nextPubackCode(v5, 3), 0x99);
      v5.publish('v1/gateway/telemetry', '{"ok-device":[{"a":1}]}', 1, 4);
      assert.equal(await nextPubackCode(v5, 4), 0);
      assert.equal(emulator.device('meter-1'), undefined);
    });
  }

  for (const version of [4, 5] as const) {
    it(`v${version}: an unknown v1/gateway/ topic gets a PUBACK${version === 5 ? ' 0x90' : ''}`, async () => {
      const client = await gateway(version);
      client.publish('v1/gateway/readings', '{"a":[{"b":1}]}', 1, 5);
      assert.equal(await nextPubackCode(client, 5), version === 5 ? 0x90 : 0);
      assert.equal(emulator.device('a'), undefined);
    });
  }

  it('a device that is not a gateway gets nothing at all on v1/gateway/*: no PUBACK, no close', async () => {
    const client = await connectDevice(emulator, 'plain-token');
    clients.push(client);
    client.publish('v1/gateway/connect', '{"device":"sneaky"}', 1, 1);
    client.publish('v1/gateway/telemetry', 'not even json', 1, 2);
    assert.ok(await client.quietFor(300), 'silence');
    assert.equal(emulator.device('sneaky'), undefined);
    client.publish('v1/devices/me/telemetry', '{"still":"open"}', 1, 3);
    assert.equal(await nextPubackCode(client, 3), 0);
  });

  describe('pushes to devices behind the gateway', () => {
    it('shared attributes as {"device","data"} on v1/gateway/attributes, without SUBSCRIBE', async () => {
      const client = await gateway();
      client.publish('v1/gateway/connect', '{"device":"lamp"}', 1, 1);
      await nextPubackCode(client, 1);
      assert.equal(emulator.updateSharedAttributes('lamp', { brightness: 80 }), 1);
      const push = await nextPublish(client, 'v1/gateway/attributes');
      assert.deepEqual(push.json, { device: 'lamp', data: { brightness: 80 } });
      assert.equal(push.packet.qos, 1);
      emulator.deleteSharedAttributes('lamp', ['brightness']);
      assert.deepEqual((await nextPublish(client, 'v1/gateway/attributes')).json, {
        device: 'lamp',
        data: { deleted: ['brightness'] },
      });
    });

    it('RPC as {"device","data":{"id","method","params"}} on v1/gateway/rpc; the reply resolves it', async () => {
      const client = await gateway();
      client.subscribe([{ topic: 'v1/gateway/rpc', qos: 0 }]);
      expectPacket(await client.next(), 'suback');
      client.publish('v1/gateway/connect', '{"device":"lamp"}', 1, 1);
      await nextPubackCode(client, 1);
      const pending = emulator.sendRpc('lamp', 'toggle', { on: true });
      const push = await nextPublish(client, 'v1/gateway/rpc');
      assert.equal(push.packet.qos, 0, 'the QoS of the subscription');
      assert.deepEqual(push.json, {
        device: 'lamp',
        data: { id: 0, method: 'toggle', params: { on: true } },
      });
      client.publish('v1/gateway/rpc', '{"device":"lamp","id":0,"data":{"on":true}}', 1, 2);
      assert.equal(await nextPubackCode(client, 2), 0);
      assert.deepEqual(await pending, { on: true });
      assert.deepEqual(
        emulator
          .device('lamp')
          ?.rpcReplies.map(({ id, method, payload }) => ({ id, method, payload })),
        [{ id: 0, method: 'toggle', payload: '{"on":true}' }],
      );
    });

    it('an RPC for a device not yet named waits, and goes out when the gateway names it', async () => {
      const client = await gateway();
      addTokenDevice(emulator, 'valve', 'valve-token');
      const pending = emulator.sendRpc('valve', 'open', {}, { timeoutMs: 3000 });
      assert.ok(await client.quietFor(150));
      client.publish('v1/gateway/telemetry', '{"valve":[{"flow":3}]}', 1, 1);
      assert.equal(await nextPubackCode(client, 1), 0);
      const push = await nextPublish(client, 'v1/gateway/rpc');
      assert.deepEqual(push.json, { device: 'valve', data: { id: 0, method: 'open', params: {} } });
      client.publish('v1/gateway/rpc', '{"device":"valve","id":0,"data":{"opened":true}}', 0);
      assert.deepEqual(await pending, { opened: true });
    });

    it('after disconnect nothing is pushed: RPC ends NOT_DELIVERED', async () => {
      const client = await gateway();
      client.publish('v1/gateway/connect', '{"device":"lamp"}', 1, 1);
      await nextPubackCode(client, 1);
      client.publish('v1/gateway/disconnect', '{"device":"lamp"}', 1, 2);
      await nextPubackCode(client, 2);
      assert.equal(emulator.updateSharedAttributes('lamp', { a: 1 }), 0);
      await assert.rejects(emulator.sendRpc('lamp', 'm', {}, { timeoutMs: 200 }), {
        code: 'NOT_DELIVERED',
      });
      assert.ok(await client.quietFor(50));
    });
  });

  it('attribute requests answer "value" for one key found, "values" for several, neither for none', async () => {
    const client = await gateway();
    client.publish('v1/gateway/attributes', '{"lamp":{"model":"L1","color":"red"}}', 1, 1);
    await nextPubackCode(client, 1);
    emulator.updateSharedAttributes('lamp', { brightness: 80 });
    await nextPublish(client, 'v1/gateway/attributes');
    const asks: Array<[object, object]> = [
      [
        { id: 1, device: 'lamp', client: true, key: 'model' },
        { id: 1, device: 'lamp', value: 'L1' },
      ],
      [
        { id: 2, device: 'lamp', client: true, keys: ['model', 'color', 'nope'] },
        { id: 2, device: 'lamp', values: { model: 'L1', color: 'red' } },
      ],
      [
        { id: 3, device: 'lamp', client: false, keys: ['brightness'] },
        { id: 3, device: 'lamp', value: 80 },
      ],
      [
        { id: 4, device: 'lamp', client: false, key: 'model' },
        { id: 4, device: 'lamp' },
      ],
    ];
    for (const [index, [ask, answer]] of asks.entries()) {
      client.publish('v1/gateway/attributes/request', JSON.stringify(ask), 1, 10 + index);
      assert.equal(await nextPubackCode(client, 10 + index), 0);
      assert.deepEqual((await nextPublish(client, 'v1/gateway/attributes/response')).json, answer);
    }
  });

  describe('one session per device, gateways included', () => {
    it('a device connecting on its own leaves its gateway; pushes then go to its own session', async () => {
      const gw = await gateway();
      addTokenDevice(emulator, 'lamp', 'lamp-token');
      gw.publish('v1/gateway/connect', '{"device":"lamp"}', 1, 1);
      await nextPubackCode(gw, 1);
      const lamp = await connectDevice(emulator, 'lamp-token');
      clients.push(lamp);
      assert.equal(emulator.session('lamp')?.gateway, undefined);
      lamp.subscribe([{ topic: 'v1/devices/me/attributes', qos: 1 }]);
      expectPacket(await lamp.next(), 'suback');
      assert.equal(emulator.updateSharedAttributes('lamp', { on: true }), 1);
      assert.deepEqual((await nextPublish(lamp, 'v1/devices/me/attributes')).json, { on: true });
      assert.ok(await gw.quietFor(100), 'the gateway is not told, and gets nothing');
    });

    it("a gateway naming a device closes that device's own session (v5: DISCONNECT 0x8E)", async () => {
      addTokenDevice(emulator, 'lamp', 'lamp-token');
      const lamp = await connectDevice(emulator, 'lamp-token', { version: 5 });
      clients.push(lamp);
      const gw = await gateway();
      gw.publish('v1/gateway/connect', '{"device":"lamp"}', 1, 1);
      await nextPubackCode(gw, 1);
      assert.equal(expectPacket(await lamp.next(), 'disconnect').reasonCode, 0x8e);
      expectPacket(await lamp.next(), 'closed');
      assert.equal(emulator.session('lamp')?.gateway, 'gw');
    });

    it('the gateway closing ends the sessions of all its devices; closeSession drops one device', async () => {
      const gw = await gateway();
      gw.publish('v1/gateway/telemetry', '{"a":[{"x":1}],"b":[{"x":2}]}', 1, 1);
      await nextPubackCode(gw, 1);
      assert.deepEqual(
        emulator
          .sessions()
          .map((session) => session.device)
          .sort(),
        ['a', 'b', 'gw'],
      );
      assert.equal(emulator.closeSession('a'), true);
      assert.deepEqual(
        emulator
          .sessions()
          .map((session) => session.device)
          .sort(),
        ['b', 'gw'],
      );
      assert.ok(await gw.quietFor(50), 'the gateway connection stays');
      assert.equal(emulator.closeSession('gw'), true);
      expectPacket(await gw.next(), 'closed');
      assert.deepEqual(emulator.sessions(), []);
    });
  });
});
