/** The emulator's MQTT device API (spec §1, §2): what a device sends and what it is sent. */

import assert from 'node:assert/strict';
import type { Emulator } from '../src/emulator';
import { delay } from './support/common';
import { RawMqttClient, startEmulator } from './support/emulator-clients';
import {
  addTokenDevice,
  connectDevice,
  expectPacket,
  nextPubackCode,
  nextPublish,
} from './emulator-devices';

describe('emulator MQTT device API', () => {
  let emulator: Emulator;
  const clients: RawMqttClient[] = [];

  async function device(version: 4 | 5 = 4, clientId?: string): Promise<RawMqttClient> {
    const client = await connectDevice(emulator, 'dev-token', { version, clientId });
    clients.push(client);
    return client;
  }

  beforeEach(async () => {
    emulator = await startEmulator();
    addTokenDevice(emulator, 'dev', 'dev-token');
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await emulator.stop();
  });

  describe('telemetry and attributes (§1)', () => {
    it('all three telemetry shapes are taken and recorded as sent, one entry per message', async () => {
      const client = await device();
      const payloads = [
        { temperature: 21.5 },
        { ts: 1700000000000, values: { humidity: 40 }, ignored: true },
        [{ a: 1 }, { ts: 1700000000001, values: { b: 2 } }],
      ];
      for (const [index, payload] of payloads.entries()) {
        client.publish('v1/devices/me/telemetry', JSON.stringify(payload), 1, index + 1);
        assert.equal(await nextPubackCode(client, index + 1), 0);
      }
      const dev = emulator.device('dev');
      assert.deepEqual(dev?.telemetry, payloads);
      assert.deepEqual(
        dev?.timeseries.map((point) => point.values),
        [{ temperature: 21.5 }, { humidity: 40 }, { a: 1 }, { b: 2 }],
      );
      assert.deepEqual(
        dev?.timeseries.slice(1).map((point) => point.ts),
        [1700000000000, dev?.timeseries[2].ts, 1700000000001],
      );
      assert.ok(Math.abs((dev?.timeseries[0].ts ?? 0) - Date.now()) < 5000, 'server time');
    });

    it('values as the server stores them: numeric strings become numbers, null is dropped, "ts" alone is a key', async () => {
      const client = await device();
      const sent = { s: '25', z: '007', e: '1e5', h: '0x1F', n: null, o: { x: 1 }, ts: 5 };
      client.publish('v1/devices/me/telemetry', JSON.stringify(sent), 1, 1);
      await nextPubackCode(client, 1);
      assert.deepEqual(emulator.device('dev')?.timeseries[0].values, {
        s: 25,
        z: 7,
        e: '1e5',
        h: '0x1F',
        o: { x: 1 },
        ts: 5,
      });
    });

    it('client attributes: a JSON object, merged, latest wins; null values dropped', async () => {
      const client = await device();
      client.publish('v1/devices/me/attributes', '{"fw":"1.0","model":"A"}', 1, 1);
      client.publish('v1/devices/me/attributes', '{"fw":"1.1","gone":null}', 1, 2);
      await nextPubackCode(client, 1);
      await nextPubackCode(client, 2);
      assert.deepEqual(emulator.device('dev')?.attributes, { fw: '1.1', model: 'A' });
    });

    const malformed: Array<[string, string, string]> = [
      ['v1/devices/me/telemetry', 'not json', 'not JSON'],
      ['v1/devices/me/telemetry', '', 'an empty payload'],
      ['v1/devices/me/telemetry', '42', 'a number'],
      ['v1/devices/me/telemetry', '[{"a":1},7]', 'an array holding a non-object'],
      ['v1/devices/me/telemetry', '{"ts":"soon","values":{"a":1}}', 'a ts that is no number'],
      ['v1/devices/me/telemetry', '{"ts":1,"values":[1]}', 'values that are no object'],
      ['v1/devices/me/attributes', '[{"a":1}]', 'attributes as an array'],
      ['v1/devices/me/attributes/request/x', '{}', 'an attribute request id that is no number'],
      ['v1/devices/me/attributes/request/1', '[]', 'an attribute request that is no object'],
      ['v1/devices/me/rpc/response/x', '{}', 'an RPC reply id that is no number'],
    ];
    for (const [topic, payload, what] of malformed) {
      it(`${what} on ${topic}: 3.1.1 closes, no PUBACK; 5 gets PUBACK 0x99 and stays open`, async () => {
        const v4 = await device(4, 'v4');
        v4.publish(topic, payload, 1, 3);
        expectPacket(await v4.next(), 'closed');
        const v5 = await device(5, 'v5');
        v5.publish(topic, payload, 1, 4);
        assert.equal(await nextPubackCode(v5, 4), 0x99);
        v5.publish('v1/devices/me/telemetry', '{"still":"open"}', 1, 5);
        assert.equal(await nextPubackCode(v5, 5), 0);
        assert.deepEqual(emulator.device('dev')?.telemetry, [{ still: 'open' }]);
      });
    }

    it('v5 with QoS 0: a malformed payload closes (there is no PUBACK to say it)', async () => {
      const client = await device(5);
      client.publish('v1/devices/me/telemetry', 'nope', 0);
      expectPacket(await client.next(), 'closed');
    });

    for (const version of [4, 5] as const) {
      it(`v${version}: an unknown topic gets a PUBACK${version === 5 ? ' 0x90' : ''}, the data is dropped, the session stays`, async () => {
        const client = await device(version);
        client.publish('v1/devices/me/temperature', '{"a":1}', 1, 6);
        assert.equal(await nextPubackCode(client, 6), version === 5 ? 0x90 : 0);
        client.publish('/v1/devices/me/telemetry', '{"a":1}', 1, 7);
        assert.equal(await nextPubackCode(client, 7), version === 5 ? 0x90 : 0);
        client.publish('v1/devices/me/telemetry', '{"b":2}', 1, 8);
        assert.equal(await nextPubackCode(client, 8), 0);
        assert.deepEqual(emulator.device('dev')?.telemetry, [{ b: 2 }]);
      });
    }

    it('QoS 2 is acknowledged with a PUBACK, not PUBREC', async () => {
      const client = await device();
      client.send({
        cmd: 'publish',
        topic: 'v1/devices/me/telemetry',
        payload: Buffer.from('{"q":2}'),
        qos: 2,
        messageId: 9,
        retain: false,
        dup: false,
      });
      assert.equal(await nextPubackCode(client, 9), 0);
      assert.deepEqual(emulator.device('dev')?.telemetry, [{ q: 2 }]);
    });

    it('QoS 0 telemetry is recorded without a PUBACK', async () => {
      const client = await device();
      client.publish('v1/devices/me/telemetry', '{"q":0}', 0);
      assert.ok(await client.quietFor(150), 'no PUBACK for QoS 0');
      assert.deepEqual(emulator.device('dev')?.telemetry, [{ q: 0 }]);
    });
  });

  describe('SUBSCRIBE', () => {
    it('grants the exact filters at QoS min(requested, 1) and refuses others with 0x80', async () => {
      for (const version of [4, 5] as const) {
        const client = await device(version, `sub-${version}`);
        client.subscribe(
          [
            { topic: 'v1/devices/me/attributes', qos: 2 },
            { topic: 'v1/devices/me/rpc/request/+', qos: 0 },
            { topic: 'v1/devices/me/attributes/response/+', qos: 1 },
            { topic: 'v1/devices/me/rpc/response/+', qos: 1 },
            { topic: 'v1/devices/me/attributes/+', qos: 1 },
            { topic: 'v1/devices/me/rpc/request/#', qos: 1 },
            { topic: '/v1/devices/me/attributes', qos: 1 },
            { topic: '#', qos: 0 },
          ],
          12,
        );
        const suback = expectPacket(await client.next(), 'suback');
        assert.equal(suback.messageId, 12);
        assert.deepEqual(suback.granted, [1, 0, 1, 1, 0x80, 0x80, 0x80, 0x80]);
      }
    });
  });

  describe('shared attributes pushed', () => {
    it('to a session subscribed to v1/devices/me/attributes, at its QoS; deletions as {"deleted":[..]}', async () => {
      const client = await device();
      client.subscribe([{ topic: 'v1/devices/me/attributes', qos: 0 }]);
      expectPacket(await client.next(), 'suback');
      assert.equal(emulator.updateSharedAttributes('dev', { interval: 5, mode: 'eco' }), 1);
      const update = await nextPublish(client, 'v1/devices/me/attributes');
      assert.deepEqual(update.json, { interval: 5, mode: 'eco' });
      assert.equal(update.packet.qos, 0);
      assert.equal(emulator.deleteSharedAttributes('dev', ['mode', 'unknown']), 1);
      assert.deepEqual((await nextPublish(client, 'v1/devices/me/attributes')).json, {
        deleted: ['mode'],
      });
      assert.deepEqual(emulator.device('dev')?.sharedAttributes, { interval: 5 });
    });

    it('not to a session that has not subscribed (no snapshot on SUBSCRIBE either)', async () => {
      const client = await device();
      assert.equal(emulator.updateSharedAttributes('dev', { interval: 5 }), 0);
      assert.ok(await client.quietFor(150));
      client.subscribe([{ topic: 'v1/devices/me/attributes', qos: 1 }]);
      expectPacket(await client.next(), 'suback');
      assert.ok(await client.quietFor(150), 'no initial snapshot');
      client.send({
        cmd: 'unsubscribe',
        messageId: 3,
        unsubscriptions: ['v1/devices/me/attributes'],
      });
      expectPacket(await client.next(), 'unsuback');
      assert.equal(emulator.updateSharedAttributes('dev', { interval: 6 }), 0);
      assert.ok(await client.quietFor(150));
    });

    it('an unknown device is an error, UNKNOWN_DEVICE', () => {
      assert.throws(() => emulator.updateSharedAttributes('nobody', { a: 1 }), {
        name: 'EmulatorDeviceError',
        code: 'UNKNOWN_DEVICE',
        status: 404,
      });
    });
  });

  describe('attribute requests', () => {
    beforeEach(() => {
      const dev = emulator.device('dev');
      Object.assign(dev?.attributes ?? {}, { fw: '1.0', model: 'A' });
      emulator.updateSharedAttributes('dev', { interval: 5, mode: 'eco' });
    });

    const cases: Array<[string, unknown, unknown]> = [
      [
        '{} asks for everything',
        {},
        { client: { fw: '1.0', model: 'A' }, shared: { interval: 5, mode: 'eco' } },
      ],
      [
        'clientKeys only: the client scope only',
        { clientKeys: 'fw, nope' },
        { client: { fw: '1.0' } },
      ],
      ['sharedKeys only', { sharedKeys: 'mode' }, { shared: { mode: 'eco' } }],
      ['nothing found: {}', { clientKeys: 'nope', sharedKeys: 'none' }, {}],
    ];
    for (const [what, request, answer] of cases) {
      it(`${what}: PUBACK, then the answer on attributes/response/{id} at QoS 1 without a subscription`, async () => {
        const client = await device();
        client.publish('v1/devices/me/attributes/request/7', JSON.stringify(request), 1, 2);
        assert.equal(await nextPubackCode(client, 2), 0);
        const response = await nextPublish(client, 'v1/devices/me/attributes/response/7');
        assert.equal(response.packet.qos, 1);
        assert.deepEqual(response.json, answer);
      });
    }

    it('the answer takes the QoS of a subscription to attributes/response/+', async () => {
      const client = await device();
      client.subscribe([{ topic: 'v1/devices/me/attributes/response/+', qos: 0 }]);
      expectPacket(await client.next(), 'suback');
      client.publish('v1/devices/me/attributes/request/1', '{"sharedKeys":"interval"}', 0);
      const response = await nextPublish(client, 'v1/devices/me/attributes/response/1');
      assert.equal(response.packet.qos, 0);
      assert.deepEqual(response.json, { shared: { interval: 5 } });
    });
  });

  describe('server-side RPC', () => {
    async function rpcDevice(version: 4 | 5 = 4, qos: 0 | 1 = 1): Promise<RawMqttClient> {
      const client = await device(version);
      client.subscribe([{ topic: 'v1/devices/me/rpc/request/+', qos }]);
      expectPacket(await client.next(), 'suback');
      return client;
    }

    it('pushed on rpc/request/{id} with ids from 0; the reply on rpc/response/{id} resolves it and is recorded', async () => {
      const client = await rpcDevice();
      const first = emulator.sendRpc('dev', 'setLed', { on: true });
      const request = await nextPublish(client, 'v1/devices/me/rpc/request/0');
      assert.deepEqual(request.json, { method: 'setLed', params: { on: true } });
      assert.equal(request.packet.qos, 1);
      client.send({ cmd: 'puback', messageId: request.packet.messageId ?? 0 });
      client.publish('v1/devices/me/rpc/response/0', '{"led":"on"}', 1, 4);
      assert.equal(await nextPubackCode(client, 4), 0);
      assert.deepEqual(await first, { led: 'on' });
      const second = emulator.sendRpc('dev', 'getTime');
      const next = await nextPublish(client, 'v1/devices/me/rpc/request/1');
      assert.deepEqual(next.json, { method: 'getTime', params: {} });
      client.publish('v1/devices/me/rpc/response/1', '42', 0);
      assert.equal(await second, 42);
      const replies = emulator.device('dev')?.rpcReplies ?? [];
      assert.deepEqual(
        replies.map(({ id, method, payload }) => ({ id, method, payload })),
        [
          { id: 0, method: 'setLed', payload: '{"led":"on"}' },
          { id: 1, method: 'getTime', payload: '42' },
        ],
      );
    });

    it('a session subscribed at QoS 0 gets the request at QoS 0', async () => {
      const client = await rpcDevice(4, 0);
      void emulator.sendRpc('dev', 'm', {}, { timeoutMs: 300 }).catch(() => undefined);
      assert.equal((await nextPublish(client, 'v1/devices/me/rpc/request/0')).packet.qos, 0);
    });

    it('a request waits for a session that takes RPC and goes out when the device subscribes', async () => {
      const client = await device();
      const pending = emulator.sendRpc('dev', 'late', { x: 1 }, { timeoutMs: 3000 });
      assert.ok(await client.quietFor(150), 'not subscribed: nothing pushed');
      client.subscribe([{ topic: 'v1/devices/me/rpc/request/+', qos: 1 }]);
      expectPacket(await client.next(), 'suback');
      const request = await nextPublish(client, 'v1/devices/me/rpc/request/0');
      assert.deepEqual(request.json, { method: 'late', params: { x: 1 } });
      client.publish('v1/devices/me/rpc/response/0', '{"ok":true}', 0);
      assert.deepEqual(await pending, { ok: true });
    });

    it('never taken by a session: NOT_DELIVERED (409)', async () => {
      await assert.rejects(emulator.sendRpc('dev', 'm', {}, { timeoutMs: 200 }), {
        name: 'EmulatorDeviceError',
        code: 'NOT_DELIVERED',
        status: 409,
      });
    });

    it('sent but not answered in time: TIMEOUT (408); a late reply is recorded without a method', async () => {
      const client = await rpcDevice();
      const pending = emulator.sendRpc('dev', 'slow', {}, { timeoutMs: 200 });
      await nextPublish(client, 'v1/devices/me/rpc/request/0');
      await assert.rejects(pending, { code: 'TIMEOUT', status: 408 });
      client.publish('v1/devices/me/rpc/response/0', '{"too":"late"}', 1, 2);
      assert.equal(await nextPubackCode(client, 2), 0);
      assert.deepEqual(
        emulator.device('dev')?.rpcReplies.map(({ id, method }) => ({ id, method })),
        [{ id: 0, method: undefined }],
      );
    });

    it('a reply that is not JSON: BAD_REPLY (406), the text still recorded', async () => {
      const client = await rpcDevice();
      const pending = emulator.sendRpc('dev', 'm');
      await nextPublish(client, 'v1/devices/me/rpc/request/0');
      client.publish('v1/devices/me/rpc/response/0', 'plain words', 0);
      await assert.rejects(pending, { code: 'BAD_REPLY', status: 406 });
      assert.equal(emulator.device('dev')?.rpcReplies[0].payload, 'plain words');
    });

    it('an unknown device: UNKNOWN_DEVICE (404); after stop(): STOPPED', async () => {
      await assert.rejects(emulator.sendRpc('nobody', 'm'), {
        code: 'UNKNOWN_DEVICE',
        status: 404,
      });
      const waiting = emulator.sendRpc('dev', 'm', {}, { timeoutMs: 5000 });
      await emulator.stop();
      await assert.rejects(waiting, { code: 'STOPPED' });
    });

    it('the device\'s own RPC gets {"error":"timeout"} when nothing answers it', async () => {
      await emulator.stop();
      emulator = await startEmulator({ clientRpcTimeoutMs: 200 });
      addTokenDevice(emulator, 'dev', 'dev-token');
      const client = await device();
      client.publish('v1/devices/me/rpc/request/3', '{"method":"getTime","params":{}}', 1, 1);
      assert.equal(await nextPubackCode(client, 1), 0);
      const answer = await nextPublish(client, 'v1/devices/me/rpc/response/3');
      assert.deepEqual(answer.json, { error: 'timeout' });
    });
  });

  describe('sessions', () => {
    it('one session per device: a new connection closes the oldest (v5: DISCONNECT 0x8E)', async () => {
      const first = await device(5, 'first');
      const second = await device(4, 'second');
      const disconnect = expectPacket(await first.next(), 'disconnect');
      assert.equal(disconnect.reasonCode, 0x8e);
      expectPacket(await first.next(), 'closed');
      const [session] = emulator.sessions();
      assert.equal(session.device, 'dev');
      assert.equal(session.clientId, 'second');
      assert.equal(session.protocolVersion, 4);
      second.publish('v1/devices/me/telemetry', '{"from":"second"}', 1, 1);
      assert.equal(await nextPubackCode(second, 1), 0);
      const third = await device(4, 'third');
      expectPacket(await second.next(), 'closed');
      assert.equal(emulator.session('dev')?.clientId, 'third');
      assert.ok(await third.quietFor(100), 'the newest session stays');
    });

    it('closeSession ends the connection; sessions() then has none', async () => {
      const client = await device();
      client.subscribe([{ topic: 'v1/devices/me/attributes', qos: 1 }]);
      expectPacket(await client.next(), 'suback');
      assert.deepEqual(emulator.session('dev')?.subscriptions, { attributes: true, rpc: false });
      assert.equal(emulator.closeSession('dev'), true);
      expectPacket(await client.next(), 'closed');
      await delay(20);
      assert.deepEqual(emulator.sessions(), []);
      assert.equal(emulator.closeSession('dev'), false);
    });
  });
});
