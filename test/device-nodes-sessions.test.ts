/**
 * The MQTT sessions device out and device in share through their config node, in a real Node-RED
 * against the emulator: RPC round trips, attribute updates, disconnecting, the queue limit,
 * sessions taken over, and what the statuses and the log say.
 */

import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import type { Emulator } from '../src/emulator';
import { tcpProxy } from './support/devices';
import type { TcpProxy } from './support/devices';
import {
  collectors,
  deviceFlow,
  send,
  statusesOf,
  telemetryOf,
  until,
} from './support/device-flows';
import { keys, loadFlow, startEmulator, tearDown, tempUserDir } from './support/flows';
import type { Message } from './support/flows';
import { coreNodeModule, helper, onCall } from './support/node-red';

/** Hands a device's credentials to device out through the provision node; returns its token. */
async function provisioned(
  name: string,
  out: { waitFor(n: number): Promise<Message[]> },
  count: number,
): Promise<string> {
  helper.getNode('prov').receive({ deviceName: name });
  const msgs = await out.waitFor(count);
  return String((msgs[count - 1].payload as Record<string, unknown>).credentialsValue);
}

describe('device out and device in: MQTT sessions', function () {
  let emulator: Emulator;
  let userDir: string;

  beforeEach(async function () {
    emulator = await startEmulator();
    userDir = tempUserDir();
  });

  afterEach(async function () {
    await tearDown(emulator, userDir);
  });

  function sessionTakesRpc(name: string): () => boolean {
    return () => emulator.session(name)?.subscriptions.rpc === true;
  }

  it('answers an RPC: device in → function → device out, and the caller gets the reply', async function () {
    const flow = deviceFlow(emulator, {
      deviceInWires: ['fn', 'inbox'],
      extra: [
        {
          id: 'fn',
          z: 'tab',
          type: 'function',
          func: 'msg.payload = { led: msg.payload.on ? "on" : "off", method: msg.rpc.method };\nreturn msg;',
          outputs: 1,
          wires: [['dev']],
        },
      ],
    });
    await loadFlow(flow, keys(), userDir, [coreNodeModule('core/function/10-function.js')]);
    const { out, inbox, caught } = collectors();
    await provisioned('lamp-1', out, 1);
    await until('the RPC subscription', sessionTakesRpc('lamp-1'));
    const reply = await emulator.sendRpc('lamp-1', 'setLed', { on: true }, { timeoutMs: 5000 });
    assert.deepEqual(reply, { led: 'on', method: 'setLed' });
    const [request] = await inbox.waitFor(1);
    assert.deepEqual(
      { deviceName: request.deviceName, topic: request.topic, payload: request.payload },
      { deviceName: 'lamp-1', topic: 'rpc', payload: { on: true } },
    );
    const rpc = request.rpc as { id: unknown; method: unknown };
    assert.equal(typeof rpc.id, 'number');
    assert.equal(rpc.method, 'setLed');
    const [, answered] = await out.waitFor(2);
    assert.deepEqual(answered.thingsboard, {
      host: emulator.host,
      via: 'device',
      transport: 'mqtt',
      deviceName: 'lamp-1',
    });
    assert.equal(emulator.device('lamp-1')?.rpcReplies.length, 1);
    assert.equal(caught.messages.length, 0);
  });

  it('emits a shared-attribute update from device in', async function () {
    await loadFlow(deviceFlow(emulator), keys(), userDir);
    const { out, inbox } = collectors();
    await provisioned('thermostat', out, 1);
    await until('the attributes subscription', () => {
      return emulator.session('thermostat')?.subscriptions.attributes === true;
    });
    assert.equal(emulator.updateSharedAttributes('thermostat', { target: 21 }), 1);
    const [msg] = await inbox.waitFor(1);
    assert.deepEqual(
      { deviceName: msg.deviceName, topic: msg.topic, payload: msg.payload },
      { deviceName: 'thermostat', topic: 'attributes', payload: { target: 21 } },
    );
  });

  it('closes the device’s connection on msg.action = "disconnect", and connects again later', async function () {
    await loadFlow(deviceFlow(emulator), keys(), userDir);
    const { out } = collectors();
    await provisioned('leaving', out, 1);
    await until('the session', () => emulator.session('leaving') !== undefined);
    send({ deviceName: 'leaving', action: 'disconnect', payload: 'bye' });
    const [, gone] = await out.waitFor(2);
    assert.equal((gone.thingsboard as Record<string, unknown>).deviceName, 'leaving');
    await until('the session to close', () => emulator.session('leaving') === undefined);
    send({ deviceName: 'leaving', payload: { back: true } });
    await out.waitFor(3);
    assert.deepEqual(telemetryOf(emulator, 'leaving'), [{ back: true }]);
  });

  it('shows the connected devices as a green dot on both nodes', async function () {
    await loadFlow(deviceFlow(emulator), keys(), userDir);
    const outStatuses = statusesOf('dev');
    const inStatuses = statusesOf('din');
    const { out } = collectors();
    await provisioned('shown-1', out, 1);
    await provisioned('shown-2', out, 2);
    const twoConnected = (statuses: typeof outStatuses) => () =>
      statuses.some((s) => s.fill === 'green' && s.shape === 'dot' && s.text === '2 connected');
    await until('device out: 2 connected', twoConnected(outStatuses));
    await until('device in: 2 connected', twoConnected(inStatuses));
  });

  describe('behind a proxy', function () {
    let proxy: TcpProxy;
    beforeEach(async function () {
      proxy = await tcpProxy(emulator.ports.mqtt);
    });
    afterEach(async function () {
      await proxy.close();
    });

    it('queues 1 000 messages per device while it cannot connect; the next are QUEUE_FULL', async function () {
      await loadFlow(
        deviceFlow(emulator, { config: { mqttPort: proxy.port }, out: { timeout: 30 } }),
        keys(),
        userDir,
      );
      const { out, caught } = collectors();
      proxy.hold();
      await provisioned('busy', out, 1);
      for (let n = 0; n < 1003; n++) send({ deviceName: 'busy', payload: { n } });
      const refused = await caught.waitFor(3);
      for (const msg of refused) {
        assert.equal((msg.thingsboard as Record<string, unknown>).status, 'QUEUE_FULL');
      }
      assert.deepEqual(
        refused.map((msg) => (msg.payload as { n: number }).n),
        [1000, 1001, 1002],
      );
      proxy.release();
      const msgs = await out.waitFor(1001, 20_000);
      const sent = msgs.slice(1).map((msg) => (msg.payload as { n: number }).n);
      assert.deepEqual(sent, [...Array(1000).keys()], 'every queued message, in order');
      assert.deepEqual(
        telemetryOf(emulator, 'busy').map((t) => (t as { n: number }).n),
        [...Array(1000).keys()],
      );
    });
  });

  it('backs off when another client takes the session over, and says so in status and log', async function () {
    await loadFlow(deviceFlow(emulator), keys(), userDir);
    const outStatuses = statusesOf('dev');
    const inStatuses = statusesOf('din');
    const warnings: string[] = [];
    onCall(helper.getNode('cfg'), 'warn', (args) => warnings.push(String(args[0])));
    const { out } = collectors();
    const token = await provisioned('contested', out, 1);
    await until('the session', () => emulator.session('contested') !== undefined);
    const mqtt = require('mqtt') as typeof import('mqtt');
    // A core mqtt node connected as the same device would reconnect like this.
    const rival: MqttClient = mqtt.connect({
      host: emulator.host,
      port: emulator.ports.mqtt,
      username: token,
      reconnectPeriod: 100,
    });
    rival.on('error', () => undefined);
    try {
      const takenOver = (statuses: typeof outStatuses) => () =>
        statuses.some((s) => s.fill === 'yellow' && s.text === 'taken over: 1');
      await until('device out: taken over', takenOver(outStatuses), 8000);
      await until('device in: taken over', takenOver(inStatuses), 1000);
      await until('a warning', () => warnings.length > 0, 1000);
      assert.match(
        warnings[0],
        /^Device session taken over: Another client took over the session of device "contested"/,
      );
      await new Promise((resolve) => setTimeout(resolve, 1000));
      assert.equal(warnings.length, 1, 'said once, not on every attempt');
      assert.doesNotMatch(JSON.stringify([warnings, outStatuses, inStatuses]), new RegExp(token));
    } finally {
      await rival.endAsync(true);
    }
  });
});
