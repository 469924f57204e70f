/**
 * device out and device in through a gateway, in a real Node-RED against the emulator: the
 * gateway's credentials by every path, many devices over its one connection, RPC answered through
 * the flow, and a gateway that is not one.
 */

import assert from 'node:assert/strict';
import { Emulator } from '../src/emulator';
import {
  addDevice,
  collectors,
  deviceFlow,
  send,
  statusesOf,
  telemetryOf,
  until,
} from './support/device-flows';
import { keys, loadFlow, startEmulator, tearDown, tempUserDir } from './support/flows';
import type { Message } from './support/flows';
import { helper } from './support/node-red';

function fieldsOf(msg: Message): Record<string, unknown> {
  return msg.thingsboard as Record<string, unknown>;
}

function gatewayPublishes(emulator: Emulator, gateway: string, topic: string): number {
  const messages = emulator.device(gateway)?.gatewayMessages ?? [];
  return messages.filter((message) => message.topic === topic).length;
}

const THROUGH = (gateway: string): Record<string, unknown> => ({
  via: 'gateway',
  gateway,
  deviceType: 'sensor',
});

describe('device nodes through a gateway', function () {
  let emulator: Emulator;
  let userDir: string;

  beforeEach(async function () {
    emulator = await startEmulator();
    userDir = tempUserDir();
  });

  afterEach(async function () {
    await tearDown(emulator, userDir);
  });

  it('provisions the gateway as one on first use and sends ten devices’ readings over its one connection', async function () {
    await loadFlow(deviceFlow(emulator, { out: THROUGH('gw-first') }), keys(), userDir);
    const statuses = statusesOf('dev');
    const { out, caught } = collectors();
    // As a split node delivers them: all at once.
    for (let i = 0; i < 10; i++) send({ deviceName: `field-${i}`, payload: { level: i } });
    const sent = await out.waitFor(10);
    assert.equal(caught.messages.length, 0);
    assert.equal(emulator.requests.length, 1, 'the gateway provisioned once');
    assert.equal((emulator.requests[0].body as Record<string, unknown>).gateway, true);
    assert.equal(emulator.device('gw-first')?.gateway, true);
    for (let i = 0; i < 10; i++) {
      assert.deepEqual(telemetryOf(emulator, `field-${i}`), [[{ level: i }]]);
      assert.equal(emulator.device(`field-${i}`)?.profile, 'sensor');
      assert.equal(emulator.session(`field-${i}`)?.gateway, 'gw-first');
    }
    assert.deepEqual(fieldsOf(sent[3]), {
      host: emulator.host,
      via: 'gateway',
      transport: 'mqtt',
      deviceName: 'field-3',
      gateway: 'gw-first',
    });
    assert.ok(gatewayPublishes(emulator, 'gw-first', 'v1/gateway/telemetry') <= 2, 'shared');
    await until('the status', () =>
      statuses.some((s) => s.fill === 'green' && s.text === 'gw-first: 10 devices'),
    );
  });

  it('takes the gateway’s credentials from a provision node; device in emits an RPC of a device behind it and device out answers', async function () {
    await loadFlow(
      deviceFlow(emulator, {
        out: THROUGH('gw-handed'),
        in: { via: 'gateway', gateway: 'gw-handed' },
        deviceInWires: ['dev', 'inbox'],
        extra: [
          // Every device session, not the gateway's devices: hears nothing here.
          {
            id: 'din2',
            z: 'tab',
            type: 'thingsboard-device-in',
            config: 'cfg',
            via: 'device',
            gateway: '',
            wires: [['others']],
          },
          { id: 'others', z: 'tab', type: 'helper' },
        ],
      }),
      keys(),
      userDir,
    );
    const { out, inbox } = collectors();
    const others: Message[] = [];
    helper.getNode('others').on('input', (msg: Message) => others.push(msg));
    const listening = statusesOf('din');
    // Deployed before the gateway has credentials: waiting for them, not failed.
    await until('device in waiting', () => listening.some((s) => s.fill !== undefined));
    assert.deepEqual(
      listening.filter((s) => s.fill !== undefined),
      [{ fill: 'yellow', shape: 'ring', text: 'gw-handed: waiting for its credentials' }],
    );
    helper.getNode('prov').receive({ deviceName: 'gw-handed', gateway: true });
    await out.waitFor(1);
    await until('the gateway connected', () => emulator.session('gw-handed') !== undefined);
    send({ deviceName: 'valve-1', payload: { open: false } });
    await out.waitFor(2);
    // device in counts the gateway's devices as device out announces them, not only on reconnects.
    await until('device in counting the device', () =>
      listening.some((s) => s.fill === 'green' && /^gw-handed: 1\b/.test(s.text ?? '')),
    );
    const reply = emulator.sendRpc('valve-1', 'setOpen', { open: true }, { timeoutMs: 5000 });
    const [request] = await inbox.waitFor(1);
    assert.equal(request.deviceName, 'valve-1');
    assert.equal(request.topic, 'rpc');
    assert.deepEqual(request.payload, { open: true });
    // The flow answers with the request's own payload: device out sends it as the reply.
    assert.deepEqual(await reply, { open: true });
    const [, , answered] = await out.waitFor(3);
    assert.equal(fieldsOf(answered).gateway, 'gw-handed');
    assert.equal(emulator.requests.length, 1, 'the provision node’s request only');
    assert.equal(emulator.updateSharedAttributes('valve-1', { interval: 5 }), 1);
    const [, update] = await inbox.waitFor(2);
    assert.deepEqual(update.payload, { interval: 5 });
    assert.equal(update.deviceName, 'valve-1');
    assert.equal(others.length, 0);
  });

  it('device in opens the gateway’s connection with its stored credentials', async function () {
    await loadFlow(deviceFlow(emulator, { out: THROUGH('gw-stored') }), keys(), userDir);
    let { out } = collectors();
    send({ deviceName: 'pump-1', payload: { rpm: 1 } });
    await out.waitFor(1);
    await helper.unload();
    await loadFlow(
      deviceFlow(emulator, { in: { via: 'gateway', gateway: 'gw-stored' } }),
      keys(),
      userDir,
    );
    ({ out } = collectors());
    const statuses = statusesOf('din');
    await until('the gateway connected', () => emulator.session('gw-stored') !== undefined);
    await until('its status', () => statuses.some((s) => s.fill === 'green'));
    assert.equal(out.messages.length, 0);
  });

  it('a gateway that is not one: UNAUTHORIZED saying to tick "Is gateway", later messages at once', async function () {
    addDevice(emulator, 'plain-gw', 'plain-gw-token');
    await loadFlow(
      deviceFlow(emulator, { out: { ...THROUGH('plain-gw'), timeout: 1 } }),
      keys(),
      userDir,
    );
    const { out, caught } = collectors();
    send({
      payload: {
        status: 'SUCCESS',
        deviceName: 'plain-gw',
        credentialsType: 'ACCESS_TOKEN',
        credentialsValue: 'plain-gw-token',
      },
      thingsboard: { host: emulator.host, provisionedAt: new Date().toISOString() },
    });
    await out.waitFor(1);
    for (let i = 0; i < 3; i++) send({ deviceName: `behind-${i}`, payload: { i } });
    const failed = await caught.waitFor(3);
    for (const msg of failed) {
      assert.equal(fieldsOf(msg).status, 'UNAUTHORIZED');
      assert.match(
        String(fieldsOf(msg).errorMsg),
        /Tick "Is gateway" on the device in ThingsBoard/,
      );
      assert.ok(!String(fieldsOf(msg).errorMsg).includes('plain-gw-token'));
    }
    const started = Date.now();
    send({ deviceName: 'behind-9', payload: { i: 9 } });
    await caught.waitFor(4);
    assert.ok(Date.now() - started < 500, 'at once, not after the timeout');
    assert.equal(emulator.device('behind-0'), undefined);
  });

  it('a bad payload in a burst fails alone; msg.action "disconnect" ends the device’s session', async function () {
    await loadFlow(deviceFlow(emulator, { out: THROUGH('gw-mixed') }), keys(), userDir);
    const { out, caught } = collectors();
    for (let i = 0; i < 6; i++) {
      send({ deviceName: `mixed-${i}`, payload: i === 2 ? { level: Number.NaN } : { level: i } });
    }
    await out.waitFor(5);
    const [bad] = await caught.waitFor(1);
    assert.equal(fieldsOf(bad).status, 'INVALID_INPUT');
    assert.equal(fieldsOf(bad).deviceName, 'mixed-2');
    assert.equal(emulator.device('mixed-2'), undefined);
    send({ deviceName: 'mixed-1', action: 'disconnect' });
    await out.waitFor(6);
    assert.equal(emulator.session('mixed-1'), undefined);
    assert.equal(emulator.session('mixed-0')?.gateway, 'gw-mixed');
  });
});
