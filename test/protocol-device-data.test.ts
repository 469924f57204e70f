/** Device data as JSON text: telemetry, attributes, RPC replies and requests, the MQTT size limit. */

import assert from 'node:assert/strict';
import * as mqttPacket from 'mqtt-packet';
import {
  DEVICE_TOPICS,
  DeviceError,
  MAX_MQTT_PACKET_BYTES,
  attributesText,
  checkMqttPublishSize,
  deviceDataText,
  mqttPublishSize,
  parseAttributeUpdate,
  parseRpcRequest,
  rpcReplyText,
  rpcRequestId,
  rpcResponseTopic,
  telemetryText,
} from '../src/protocol';

const NOW = 1_767_225_600_000;

function expectInvalid(run: () => unknown, message: RegExp): DeviceError {
  try {
    run();
  } catch (err) {
    assert.ok(err instanceof DeviceError, `expected a DeviceError, got ${String(err)}`);
    assert.equal(err.status, 'INVALID_INPUT');
    assert.equal(err.sent, false);
    assert.match(err.message, message);
    return err;
  }
  assert.fail('expected INVALID_INPUT, nothing was thrown');
}

describe('protocol: device data', () => {
  describe('telemetry', () => {
    it('takes {key: value}, {ts, values} and an array of either, as JSON text', () => {
      assert.equal(
        telemetryText({ temperature: 21.5, on: true }),
        '{"temperature":21.5,"on":true}',
      );
      assert.equal(telemetryText({ ts: NOW, values: { a: 1 } }), `{"ts":${NOW},"values":{"a":1}}`);
      const batch = [{ ts: NOW, values: { a: 1 } }, { b: 'x' }];
      assert.deepEqual(JSON.parse(telemetryText(batch)), batch);
    });

    it('keeps nested objects and arrays as values (ThingsBoard stores them as JSON)', () => {
      const payload = { position: { lat: 1.5, lon: 2 }, list: [1, 2, null] };
      assert.deepEqual(JSON.parse(telemetryText(payload)), payload);
    });

    for (const [payload, what] of [
      ['21.5', /is a string; telemetry is \{key: value, \.\.\.\}/],
      [42, /is a number/],
      [null, /is null/],
      [undefined, /is nothing \(undefined\)/],
      [Buffer.from('{}'), /is a Buffer/],
      [[], /empty array: there is nothing to send/],
      [{}, /has no keys/],
      [[{ a: 1 }, 7], /Telemetry entry 1 is a number/],
    ] as const) {
      it(`refuses ${JSON.stringify(payload) ?? 'undefined'}`, () => {
        expectInvalid(() => telemetryText(payload), what);
      });
    }

    it('refuses a null value: ThingsBoard would drop it without a word', () => {
      expectInvalid(() => telemetryText({ a: 1, b: null }), /"b" .* is null; .*Leave the key out/);
    });

    it('refuses values JSON would change silently: NaN, Infinity, undefined, functions, bigints', () => {
      expectInvalid(() => telemetryText({ a: NaN }), /"a" .* is NaN/);
      expectInvalid(() => telemetryText({ a: { b: Infinity } }), /"b" .* is Infinity/);
      expectInvalid(() => telemetryText({ a: undefined }), /"a" .* is undefined/);
      expectInvalid(() => telemetryText({ a: [1, undefined] }), /is undefined/);
      expectInvalid(() => telemetryText({ f: () => 1 }), /"f" .* is a function/);
      expectInvalid(() => telemetryText({ n: 10n }), /"n" .* is a bigint/);
    });

    it('refuses a cycle', () => {
      const cyclic: Record<string, unknown> = { a: 1 };
      cyclic.self = cyclic;
      expectInvalid(() => telemetryText(cyclic), /cannot be turned into JSON/);
    });

    it('{ts, values}: both keys, nothing else, ts in milliseconds, values an object', () => {
      expectInvalid(() => telemetryText({ ts: NOW, temperature: 2 }), /ts but no values/);
      expectInvalid(() => telemetryText({ values: { a: 1 } }), /values but no ts/);
      expectInvalid(
        () => telemetryText({ ts: NOW, values: { a: 1 }, unit: 'C' }),
        /"unit", which ThingsBoard would ignore: move it into values/,
      );
      expectInvalid(
        () => telemetryText({ ts: Math.floor(NOW / 1000), values: { a: 1 } }),
        /looks like seconds.*multiply it by 1000/,
      );
      expectInvalid(
        () => telemetryText({ ts: NOW * 1000, values: { a: 1 } }),
        /looks like micro- or nanoseconds/,
      );
      expectInvalid(() => telemetryText({ ts: String(NOW), values: { a: 1 } }), /a string/);
      expectInvalid(() => telemetryText({ ts: 1.5e12 + 0.5, values: { a: 1 } }), /whole number/);
      expectInvalid(() => telemetryText({ ts: NOW, values: [1] }), /must be an object/);
      expectInvalid(() => telemetryText({ ts: NOW, values: {} }), /has no keys/);
      expectInvalid(
        () =>
          telemetryText([
            { ts: NOW, values: { a: 1 } },
            { ts: 5, values: { a: 1 } },
          ]),
        /ts 5 of telemetry entry 1 looks like seconds/,
      );
    });
  });

  describe('attributes', () => {
    it('takes a {key: value} object', () => {
      assert.equal(attributesText({ firmware: '1.2', slots: 4 }), '{"firmware":"1.2","slots":4}');
      assert.equal(deviceDataText('attributes', { a: 1 }), '{"a":1}');
      assert.equal(deviceDataText('telemetry', { a: 1 }), '{"a":1}');
    });

    it('refuses anything else, with what to send instead', () => {
      expectInvalid(() => attributesText([{ a: 1 }]), /are an array; attributes are an object/);
      expectInvalid(() => attributesText('a=1'), /are a string/);
      expectInvalid(() => attributesText({}), /has no keys/);
      expectInvalid(() => attributesText({ a: null }), /is null/);
      expectInvalid(
        () => attributesText({ ts: NOW, values: { a: 1 } }),
        /Attributes take no timestamp/,
      );
    });
  });

  describe('RPC', () => {
    it('a reply is any JSON value', () => {
      assert.equal(rpcReplyText({ ok: true }), '{"ok":true}');
      assert.equal(rpcReplyText('done'), '"done"');
      assert.equal(rpcReplyText(3), '3');
      expectInvalid(() => rpcReplyText(undefined), /The RPC reply is undefined/);
      expectInvalid(() => rpcReplyText({ a: NaN }), /NaN/);
    });

    it('msg.rpc.id: a whole number or its digits', () => {
      assert.equal(rpcRequestId(7), 7);
      assert.equal(rpcRequestId('12'), 12);
      expectInvalid(() => rpcRequestId(-1), /msg\.rpc\.id must be .* -1 was given/);
      expectInvalid(() => rpcRequestId(1.5), /1\.5 was given/);
      expectInvalid(() => rpcRequestId('x1'), /a string was given/);
      expectInvalid(() => rpcRequestId(undefined), /undefined/);
      assert.equal(rpcResponseTopic(7), 'v1/devices/me/rpc/response/7');
    });

    it('reads a pushed request from its topic and payload', () => {
      const payload = Buffer.from('{"method":"setValve","params":{"open":true}}');
      assert.deepEqual(parseRpcRequest('v1/devices/me/rpc/request/42', payload), {
        id: 42,
        method: 'setValve',
        params: { open: true },
      });
      assert.deepEqual(
        parseRpcRequest('v1/devices/me/rpc/request/1', Buffer.from('{"method":"ping"}')),
        { id: 1, method: 'ping', params: null },
      );
      assert.equal(parseRpcRequest('v1/devices/me/rpc/request/x', payload), undefined);
      assert.equal(parseRpcRequest('v1/devices/me/attributes', payload), undefined);
      assert.equal(
        parseRpcRequest('v1/devices/me/rpc/request/1', Buffer.from('{"params":1}')),
        undefined,
      );
      assert.equal(parseRpcRequest('v1/devices/me/rpc/request/1', Buffer.from('{')), undefined);
    });

    it('reads a shared-attribute update, deletions included', () => {
      assert.deepEqual(parseAttributeUpdate(Buffer.from('{"mode":"eco"}')), { mode: 'eco' });
      assert.deepEqual(parseAttributeUpdate(Buffer.from('{"deleted":["mode"]}')), {
        deleted: ['mode'],
      });
      assert.equal(parseAttributeUpdate(Buffer.from('[1]')), undefined);
      assert.equal(parseAttributeUpdate(Buffer.from('nope')), undefined);
    });
  });

  describe('MQTT packet size', () => {
    it('counts exactly what mqtt-packet writes, on 3.1.1 and 5, QoS 0 and 1', () => {
      for (const protocolVersion of [4, 5] as const) {
        for (const qos of [0, 1] as const) {
          for (const length of [0, 100, 127, 200, 16_000, 16_400, 65_500]) {
            const payload = Buffer.alloc(length, 0x61);
            const written = mqttPacket.generate(
              {
                cmd: 'publish',
                topic: DEVICE_TOPICS.telemetry,
                payload,
                qos,
                messageId: qos > 0 ? 1 : undefined,
                dup: false,
                retain: false,
              },
              { protocolVersion },
            );
            assert.equal(
              mqttPublishSize(DEVICE_TOPICS.telemetry, length, { qos, protocolVersion }),
              written.length,
              `v${protocolVersion} qos ${qos} payload ${length}`,
            );
          }
        }
      }
    });

    it('a PUBLISH of exactly 65 536 bytes passes; one byte more is INVALID_INPUT', () => {
      const shape = { qos: 1, protocolVersion: 4 } as const;
      const overhead = mqttPublishSize(DEVICE_TOPICS.telemetry, 0, shape);
      // The remaining length takes 3 bytes at this size, not the 1 of an empty payload.
      const fits = MAX_MQTT_PACKET_BYTES - overhead - 2;
      assert.equal(mqttPublishSize(DEVICE_TOPICS.telemetry, fits, shape), MAX_MQTT_PACKET_BYTES);
      checkMqttPublishSize(DEVICE_TOPICS.telemetry, fits, shape);
      expectInvalid(
        () => checkMqttPublishSize(DEVICE_TOPICS.telemetry, fits + 1, shape),
        /MQTT packet of 65537 bytes; .* Split the data/,
      );
    });
  });
});
