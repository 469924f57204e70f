/**
 * device out in a real Node-RED against the emulator, over every transport: where the credentials
 * come from (a provision node, the store, provisioning on first use, none), what is sent, and
 * what a Catch node gets when it cannot be.
 */

import assert from 'node:assert/strict';
import { Emulator } from '../src/emulator';
import { TRANSPORTS } from './support/common';
import {
  addDevice,
  collectors,
  deviceFlow,
  send,
  statusesOf,
  telemetryOf,
  until,
} from './support/device-flows';
import { PROFILE, keys, loadFlow, startEmulator, tearDown, tempUserDir } from './support/flows';
import type { Message } from './support/flows';
import { helper } from './support/node-red';

function fieldsOf(msg: Message): Record<string, unknown> {
  return msg.thingsboard as Record<string, unknown>;
}

describe('thingsboard-device-out', function () {
  let emulator: Emulator;
  let userDir: string;

  beforeEach(async function () {
    emulator = await startEmulator();
    userDir = tempUserDir();
  });

  afterEach(async function () {
    await tearDown(emulator, userDir);
  });

  for (const transport of TRANSPORTS) {
    describe(`over ${transport}`, function () {
      it('takes the credentials of a provision node, then sends telemetry as the device', async function () {
        await loadFlow(deviceFlow(emulator, { out: { transport } }), keys(), userDir);
        const { out, caught } = collectors();
        helper.getNode('prov').receive({ deviceName: `chain-${transport}`, topic: 'hello' });
        const [handed] = await out.waitFor(1);
        // Passed on as it came: the credentials were taken over, no data was sent.
        assert.equal((handed.payload as Record<string, unknown>).status, 'SUCCESS');
        assert.equal(handed.topic, 'hello');
        assert.deepEqual(telemetryOf(emulator, `chain-${transport}`), []);
        if (transport === 'mqtt') {
          for (let i = 0; i < 100 && !emulator.session(`chain-${transport}`); i++) {
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
          assert.ok(emulator.session(`chain-${transport}`), 'the MQTT session was opened');
        }
        send({ deviceName: `chain-${transport}`, payload: { temperature: 21.5 } });
        const [, sent] = await out.waitFor(2);
        assert.deepEqual(telemetryOf(emulator, `chain-${transport}`), [{ temperature: 21.5 }]);
        assert.deepEqual(sent.payload, { temperature: 21.5 });
        assert.deepEqual(fieldsOf(sent), {
          host: emulator.host,
          via: 'device',
          transport,
          deviceName: `chain-${transport}`,
        });
        assert.equal(caught.messages.length, 0);
        assert.equal(emulator.requests.length, 1, 'provisioned once, by the provision node');
      });

      it('sends as a device whose credentials are stored, after a restart', async function () {
        await loadFlow(deviceFlow(emulator, { out: { transport } }), keys(), userDir);
        let { out } = collectors();
        helper.getNode('prov').receive({ deviceName: `kept-${transport}` });
        await out.waitFor(1);
        await helper.unload();
        await loadFlow(
          deviceFlow(emulator, { out: { transport, provision: false } }),
          keys(),
          userDir,
        );
        ({ out } = collectors());
        send({
          deviceName: `kept-${transport}`,
          payload: { ts: 1_700_000_000_000, values: { a: 1 } },
        });
        const [msg] = await out.waitFor(1);
        assert.equal(fieldsOf(msg).deviceName, `kept-${transport}`);
        assert.deepEqual(telemetryOf(emulator, `kept-${transport}`), [
          { ts: 1_700_000_000_000, values: { a: 1 } },
        ]);
        assert.equal(emulator.requests.length, 1, 'not provisioned again');
      });

      it('provisions a device on first use with a generated token, once for a burst', async function () {
        await loadFlow(deviceFlow(emulator, { out: { transport } }), keys(), userDir);
        const { out } = collectors();
        const name = `first-${transport}`;
        for (let n = 0; n < 5; n++)
          send({ deviceName: name, payload: [{ ts: 1_700_000_000_000 + n, values: { n } }] });
        const msgs = await out.waitFor(5);
        assert.deepEqual(
          msgs.map((m) => (m.payload as Array<{ values: { n: number } }>)[0].values.n),
          [0, 1, 2, 3, 4],
          'in order',
        );
        assert.equal(emulator.requests.length, 1, 'one provisioning request');
        const body = emulator.requests[0].body as Record<string, unknown>;
        assert.equal(body.credentialsType, 'ACCESS_TOKEN');
        assert.ok(String(body.token).length >= 20, 'a token the node generated');
        assert.equal(emulator.requests[0].transport, transport);
        assert.deepEqual(
          telemetryOf(emulator, name).map(
            (t) => (t as Array<{ values: { n: number } }>)[0].values.n,
          ),
          [0, 1, 2, 3, 4],
        );
        // Kept like a provision node's: the provision node answers from the store now.
        helper.getNode('prov').receive({ deviceName: name });
        const [, , , , , fromProvision] = await out.waitFor(6);
        assert.equal((fromProvision.thingsboard as Record<string, unknown>).cached, true);
      });

      it('reports NOT_PROVISIONED with msg.payload as it was when nothing is known', async function () {
        await loadFlow(
          deviceFlow(emulator, { out: { transport, provision: false } }),
          keys(),
          userDir,
        );
        const statuses = statusesOf('dev');
        const { out, caught } = collectors();
        send({ deviceName: 'unknown-device', payload: { t: 1 } });
        const [msg] = await caught.waitFor(1);
        await until('a red ring', () =>
          statuses.some(
            (s) => s.fill === 'red' && s.shape === 'ring' && s.text === 'NOT_PROVISIONED',
          ),
        );
        assert.deepEqual(msg.payload, { t: 1 });
        const fields = fieldsOf(msg);
        assert.equal(fields.status, 'NOT_PROVISIONED');
        assert.equal(fields.deviceName, 'unknown-device');
        assert.equal(fields.transport, transport);
        assert.match(String(fields.errorMsg), /provision node|Provision/);
        assert.match(
          String(msg.error?.message),
          /^Sending as unknown-device failed \(NOT_PROVISIONED\)/,
        );
        assert.equal(out.messages.length, 0);
        assert.equal(emulator.requests.length, 0);
      });

      it('refuses a payload it cannot send with INVALID_INPUT, before provisioning or sending', async function () {
        await loadFlow(deviceFlow(emulator, { out: { transport } }), keys(), userDir);
        const { caught } = collectors();
        const bad: unknown[] = ['hello', { ts: 1_700_000_000, values: { a: 1 } }, { a: null }, []];
        for (const payload of bad) send({ deviceName: 'never-made', payload });
        send({ deviceName: 'never-made', kind: 'events', payload: { a: 1 } });
        const msgs = await caught.waitFor(5);
        for (const msg of msgs) assert.equal(fieldsOf(msg).status, 'INVALID_INPUT');
        const inSeconds = msgs.find((m) => (m.payload as { ts?: number } | undefined)?.ts);
        assert.match(String(fieldsOf(inSeconds as Message).errorMsg), /looks like seconds/);
        assert.equal(emulator.requests.length, 0, 'nothing provisioned');
        assert.equal(emulator.device('never-made'), undefined);
      });

      it('reports UNAUTHORIZED when the device’s credentials changed on the server', async function () {
        await loadFlow(deviceFlow(emulator, { out: { transport } }), keys(), userDir);
        let { out } = collectors();
        helper.getNode('prov').receive({ deviceName: `moved-${transport}` });
        await out.waitFor(1);
        await helper.unload();
        await emulator.stop();
        // The same host, a server that knows the device under other credentials.
        emulator = await startEmulator();
        addDevice(emulator, `moved-${transport}`, 'a-new-token-set-by-an-admin');
        await loadFlow(deviceFlow(emulator, { out: { transport } }), keys(), userDir);
        const after = collectors();
        out = after.out;
        const caught = after.caught;
        send({ deviceName: `moved-${transport}`, payload: { v: 1 } });
        const [msg] = await caught.waitFor(1);
        const fields = fieldsOf(msg);
        assert.equal(fields.status, 'UNAUTHORIZED');
        assert.match(String(fields.errorMsg), /deleted or its credentials changed/);
        assert.deepEqual(msg.payload, { v: 1 });
        assert.equal(out.messages.length, 0);
        assert.deepEqual(telemetryOf(emulator, `moved-${transport}`), []);
        assert.equal(emulator.requests.length, 0, 'not provisioned again over the refusal');
      });
    });
  }

  it('sends client attributes as the node says, or as msg.kind says', async function () {
    await loadFlow(
      deviceFlow(emulator, { out: { kind: 'attributes', transport: 'http' } }),
      keys(),
      userDir,
    );
    const { out } = collectors();
    send({ deviceName: 'attr-1', payload: { firmware: '1.2' } });
    send({ deviceName: 'attr-1', kind: 'telemetry', payload: { rssi: -60 } });
    await out.waitFor(2);
    assert.deepEqual(emulator.device('attr-1')?.attributes, { firmware: '1.2' });
    assert.deepEqual(telemetryOf(emulator, 'attr-1'), [{ rssi: -60 }]);
  });

  it('reads the device name from its typed input', async function () {
    await loadFlow(
      deviceFlow(emulator, { out: { deviceName: 'payload.id', transport: 'coap' } }),
      keys(),
      userDir,
    );
    const { out } = collectors();
    send({ payload: { id: 'typed-7', v: 3 } });
    await out.waitFor(1);
    assert.deepEqual(telemetryOf(emulator, 'typed-7'), [{ id: 'typed-7', v: 3 }]);
  });

  it('answers via: gateway without a gateway name with INVALID_INPUT, before anything is sent', async function () {
    await loadFlow(
      deviceFlow(emulator, { out: { via: 'gateway', gateway: ' ' } }),
      keys(),
      userDir,
    );
    const { caught } = collectors();
    send({ deviceName: 'behind-gw', payload: { a: 1 } });
    const [msg] = await caught.waitFor(1);
    assert.equal(fieldsOf(msg).status, 'INVALID_INPUT');
    assert.match(String(fieldsOf(msg).errorMsg), /name of the gateway device/);
    assert.equal(emulator.requests.length, 0);
  });

  it('refuses credentials handed over for another server', async function () {
    await loadFlow(deviceFlow(emulator), keys(), userDir);
    const { caught } = collectors();
    send({
      payload: {
        status: 'SUCCESS',
        deviceName: 'elsewhere',
        credentialsType: 'ACCESS_TOKEN',
        credentialsValue: 'tok',
      },
      thingsboard: { host: 'other.example', provisionedAt: new Date().toISOString() },
    });
    const [msg] = await caught.waitFor(1);
    assert.equal(fieldsOf(msg).status, 'INVALID_INPUT');
    assert.match(String(fieldsOf(msg).errorMsg), /other\.example/);
  });

  it('keeps the profile of the config node: another profile has its own stored devices', async function () {
    emulator.addProfile({ ...PROFILE, name: 'second', provisionDeviceKey: 'second-key' });
    await loadFlow(deviceFlow(emulator, { out: { transport: 'http' } }), keys(), userDir);
    const { out } = collectors();
    helper.getNode('prov').receive({ deviceName: 'profiled' });
    await out.waitFor(1);
    await helper.unload();
    await loadFlow(
      deviceFlow(emulator, { out: { transport: 'http', provision: false } }),
      keys(PROFILE.provisionDeviceSecret, 'second-key'),
      userDir,
    );
    const { caught } = collectors();
    send({ deviceName: 'profiled', payload: { a: 1 } });
    const [msg] = await caught.waitFor(1);
    assert.equal(fieldsOf(msg).status, 'NOT_PROVISIONED');
  });
});
