/** The emulator's MQTT side, packet by packet, for MQTT 3.1.1 and 5. */

import assert from 'node:assert/strict';
import type { Emulator } from '../src/emulator';
import { delay } from './support/common';
import {
  CREATE,
  PRE,
  RawMqttClient,
  request,
  startEmulator,
  type MqttEvent,
} from './support/emulator-clients';

function expectCmd<T extends MqttEvent['cmd']>(
  event: MqttEvent,
  cmd: T,
): Extract<MqttEvent, { cmd: T }> {
  assert.equal(event.cmd, cmd, `expected ${cmd}, got ${JSON.stringify(event)}`);
  return event as Extract<MqttEvent, { cmd: T }>;
}

function payloadText(event: MqttEvent): string {
  return Buffer.from(expectCmd(event, 'publish').payload).toString('utf8');
}

describe('emulator MQTT', () => {
  let emulator: Emulator;
  const clients: RawMqttClient[] = [];

  async function provisionSession(version: 4 | 5 = 4): Promise<RawMqttClient> {
    const client = await RawMqttClient.provisionSession(emulator.ports.mqtt, version);
    clients.push(client);
    return client;
  }

  async function connect(options: Parameters<typeof RawMqttClient.connect>[1]) {
    const result = await RawMqttClient.connect(emulator.ports.mqtt, options);
    clients.push(result.client);
    return result;
  }

  beforeEach(async () => {
    emulator = await startEmulator({ mqttCloseAfterAnswerMs: 60_000 });
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await emulator.stop();
  });

  describe('provisioning session', () => {
    for (const version of [4, 5] as const) {
      it(`v${version === 4 ? '3.1.1' : '5'}: username "provision" gets CONNACK 0 whatever the password`, async () => {
        const { connack } = await connect({
          protocolVersion: version,
          username: 'provision',
          password: Buffer.from('anything'),
        });
        const packet = expectCmd(connack, 'connack');
        assert.equal(version === 5 ? packet.reasonCode : packet.returnCode, 0);
      });
    }

    it('clientId "provision" alone also opens a provisioning session', async () => {
      const { client, connack } = await connect({ clientId: 'provision', username: 'not-a-token' });
      assert.equal(expectCmd(connack, 'connack').returnCode, 0);
      client.publish('/provision/request', request(CREATE, { deviceName: 'by-client-id' }), 1);
      expectCmd(await client.next(), 'puback');
      assert.match(payloadText(await client.next()), /"status":"SUCCESS"/);
    });

    it('without a subscription the answer still comes, QoS 1, after the PUBACK', async () => {
      const client = await provisionSession();
      client.publish('/provision/request', request(CREATE, { deviceName: 'no-sub' }), 1, 42);
      const puback = expectCmd(await client.next(), 'puback');
      assert.equal(puback.messageId, 42);
      const response = expectCmd(await client.next(), 'publish');
      assert.equal(response.topic, '/provision/response');
      assert.equal(response.qos, 1);
      assert.ok(emulator.device('no-sub'));
    });

    it('QoS 0 request: no PUBACK, the answer comes anyway', async () => {
      const client = await provisionSession();
      client.publish('/provision/request', request(CREATE, { deviceName: 'qos0' }), 0);
      const response = expectCmd(await client.next(), 'publish');
      assert.equal(response.topic, '/provision/response');
      assert.match(Buffer.from(response.payload).toString(), /"status":"SUCCESS"/);
    });

    it('the PUBACK waits for the result: nothing before the answer is ready', async () => {
      emulator.setFaults({ answerDelayMs: 400 });
      const client = await provisionSession();
      const sent = Date.now();
      client.publish('/provision/request', request(CREATE, { deviceName: 'slow' }), 1);
      assert.ok(await client.quietFor(250), 'no PUBACK while the request is processed');
      expectCmd(await client.next(), 'puback');
      assert.ok(Date.now() - sent >= 390);
      expectCmd(await client.next(), 'publish');
    });

    for (const [requested, granted] of [
      [0, 0],
      [1, 1],
      [2, 1],
    ] as const) {
      it(`SUBSCRIBE /provision/response at QoS ${requested} is granted ${granted}, and the answer uses it`, async () => {
        const client = await provisionSession();
        client.subscribe([{ topic: '/provision/response', qos: requested }], 9);
        const suback = expectCmd(await client.next(), 'suback');
        assert.equal(suback.messageId, 9);
        assert.deepEqual(suback.granted, [granted]);
        client.publish(
          '/provision/request',
          request(CREATE, { deviceName: `sub-${requested}` }),
          1,
        );
        expectCmd(await client.next(), 'puback');
        assert.equal(expectCmd(await client.next(), 'publish').qos, granted);
      });
    }

    for (const [version, refusal] of [
      [4, 0x80],
      [5, 0x8f],
    ] as const) {
      it(`only the exact filter is granted (v${version}: others refused with 0x${refusal.toString(16)})`, async () => {
        const client = await provisionSession(version);
        client.subscribe([
          { topic: '/provision/response', qos: 1 },
          { topic: 'provision/response', qos: 1 },
          { topic: '/provision/response/+', qos: 0 },
          { topic: '#', qos: 0 },
        ]);
        const suback = expectCmd(await client.next(), 'suback');
        assert.deepEqual(suback.granted, [1, refusal, refusal, refusal]);
      });
    }

    it('noSuback fault: no SUBACK, yet the answer comes (QoS 1)', async () => {
      emulator.setFaults({ noSuback: true });
      const client = await provisionSession();
      client.subscribe([{ topic: '/provision/response', qos: 0 }]);
      assert.ok(await client.quietFor(300), 'no SUBACK');
      client.publish('/provision/request', request(CREATE, { deviceName: 'old-server' }), 1);
      expectCmd(await client.next(), 'puback');
      assert.equal(expectCmd(await client.next(), 'publish').qos, 1);
    });

    for (const version of [4, 5] as const) {
      it(`v${version}: PUBLISH to another topic: PUBACK${version === 5 ? ' 0x90' : ''}, then the connection closes`, async () => {
        const client = await provisionSession(version);
        client.publish('/provision', request(CREATE, { deviceName: 'wrong-topic' }), 1, 3);
        const puback = expectCmd(await client.next(), 'puback');
        assert.equal(puback.messageId, 3);
        if (version === 5) assert.equal(puback.reasonCode, 0x90);
        expectCmd(await client.next(), 'closed');
        assert.equal(emulator.requests.length, 0);
        assert.equal(emulator.device('wrong-topic'), undefined);
      });
    }

    const malformed: Array<[string, string]> = [
      [
        'missing provisionDeviceKey',
        JSON.stringify({ provisionDeviceSecret: 's', deviceName: 'm' }),
      ],
      [
        'missing provisionDeviceSecret',
        JSON.stringify({ provisionDeviceKey: 'k', deviceName: 'm' }),
      ],
      ['a null field', request(CREATE, { deviceName: 'm', token: null })],
      ['an unknown credentialsType', request(CREATE, { deviceName: 'm', credentialsType: 'PSK' })],
      ['not JSON (the server would try protobuf)', 'deviceName=m'],
      ['a JSON array', '[1,2]'],
    ];
    for (const version of [4, 5] as const) {
      for (const [what, body] of malformed) {
        it(`v${version}: ${what}: PUBACK${version === 5 ? ' 0x83' : ''} then close, no answer`, async () => {
          const client = await provisionSession(version);
          client.publish('/provision/request', body, 1, 5);
          const puback = expectCmd(await client.next(), 'puback');
          if (version === 5) assert.equal(puback.reasonCode, 0x83);
          expectCmd(await client.next(), 'closed');
          assert.equal(emulator.devices.size, 0);
          assert.match(emulator.requests[0].outcome, /^malformed/);
        });
      }
    }

    it('closes the connection mqttCloseAfterAnswerMs after the answer, without DISCONNECT', async () => {
      await emulator.stop();
      emulator = await startEmulator({ mqttCloseAfterAnswerMs: 300 });
      const client = await provisionSession();
      client.publish('/provision/request', request(CREATE, { deviceName: 'closing' }), 1);
      expectCmd(await client.next(), 'puback');
      expectCmd(await client.next(), 'publish');
      const answered = Date.now();
      assert.ok(await client.quietFor(150), 'still open shortly after the answer');
      expectCmd(await client.next(), 'closed');
      const elapsed = Date.now() - answered;
      assert.ok(elapsed >= 280, `closed after the configured delay (${elapsed} ms)`);
    });

    it('v5: the answer and its PUBACK carry success codes', async () => {
      const client = await provisionSession(5);
      client.publish('/provision/request', request(CREATE, { deviceName: 'v5' }), 1);
      assert.equal(expectCmd(await client.next(), 'puback').reasonCode ?? 0, 0);
      assert.match(payloadText(await client.next()), /^\{"credentialsValue":"[A-Za-z0-9]{20}"/);
    });

    it('PINGREQ gets PINGRESP; DISCONNECT closes', async () => {
      const client = await provisionSession();
      client.send({ cmd: 'pingreq' });
      expectCmd(await client.next(), 'pingresp');
      client.send({ cmd: 'disconnect' });
      expectCmd(await client.next(), 'closed');
    });

    it('a second CONNECT closes the connection', async () => {
      const { client } = await connect({ clientId: 'provision' });
      client.send({ cmd: 'connect', clientId: 'again', protocolId: 'MQTT', protocolVersion: 4 });
      expectCmd(await client.next(), 'closed');
    });
  });

  describe('device API session', () => {
    beforeEach(() => {
      emulator.addDevice({
        name: 'token-device',
        profile: PRE.name,
        credentials: { credentialsType: 'ACCESS_TOKEN', token: 'device-token' },
      });
      emulator.addDevice({
        name: 'client-only',
        profile: PRE.name,
        credentials: { credentialsType: 'MQTT_BASIC', clientId: 'only-client-id' },
      });
      emulator.addDevice({
        name: 'user-pass',
        profile: PRE.name,
        credentials: { credentialsType: 'MQTT_BASIC', userName: 'user-a', password: 'pass-a' },
      });
      emulator.addDevice({
        name: 'all-three',
        profile: PRE.name,
        credentials: {
          credentialsType: 'MQTT_BASIC',
          clientId: 'cid-b',
          userName: 'user-b',
          password: 'pass-b',
        },
      });
    });

    const logins: Array<[string, Parameters<typeof RawMqttClient.connect>[1], string | undefined]> =
      [
        ['access token as user name', { username: 'device-token' }, 'token-device'],
        ['unknown token', { username: 'nope' }, undefined],
        ['MQTT basic, client id only', { clientId: 'only-client-id' }, 'client-only'],
        ['MQTT basic, wrong client id', { clientId: 'other-id' }, undefined],
        [
          'MQTT basic, user name and password (any client id)',
          { clientId: 'x', username: 'user-a', password: Buffer.from('pass-a') },
          'user-pass',
        ],
        [
          'MQTT basic, wrong password',
          { clientId: 'x', username: 'user-a', password: Buffer.from('bad') },
          undefined,
        ],
        [
          'MQTT basic, all three',
          { clientId: 'cid-b', username: 'user-b', password: Buffer.from('pass-b') },
          'all-three',
        ],
        [
          'MQTT basic, all three but another client id',
          { clientId: 'cid-x', username: 'user-b', password: Buffer.from('pass-b') },
          undefined,
        ],
        [
          'MQTT basic, all three without the password',
          { clientId: 'cid-b', username: 'user-b' },
          undefined,
        ],
      ];
    /** Bad user name or password when a user name or password was sent, else a bad client id. */
    const refusal = (login: Parameters<typeof RawMqttClient.connect>[1], version: 4 | 5) => {
      const withUsername = login?.username !== undefined || login?.password !== undefined;
      if (version === 5) return withUsername ? 0x86 : 0x85;
      return withUsername ? 5 : 2;
    };
    for (const version of [4, 5] as const) {
      for (const [what, login, device] of logins) {
        it(`v${version}: ${what}: ${device === undefined ? `CONNACK 0x${refusal(login, version).toString(16)} and close` : 'CONNACK 0'}`, async () => {
          const { client, connack } = await connect({ protocolVersion: version, ...login });
          const packet = expectCmd(connack, 'connack');
          const code = version === 5 ? packet.reasonCode : packet.returnCode;
          if (device === undefined) {
            assert.equal(code, refusal(login, version));
            expectCmd(await client.next(), 'closed');
          } else {
            assert.equal(code, 0);
            client.publish('v1/devices/me/telemetry', JSON.stringify({ login: what }), 1, 11);
            assert.equal(expectCmd(await client.next(), 'puback').messageId, 11);
            assert.deepEqual(emulator.device(device)?.telemetry, [{ login: what }]);
          }
        });
      }
    }

    it('a provisioned device logs in with its new token and its telemetry is recorded', async () => {
      const provisioning = await provisionSession();
      provisioning.publish('/provision/request', request(CREATE, { deviceName: 'fresh' }), 1);
      await provisioning.next();
      const answer = JSON.parse(payloadText(await provisioning.next())) as {
        credentialsValue: string;
      };
      const { client, connack } = await connect({ username: answer.credentialsValue });
      assert.equal(expectCmd(connack, 'connack').returnCode, 0);
      client.publish('v1/devices/me/telemetry', '{"temperature":21.5}', 0);
      client.publish('v1/devices/me/attributes', '{"firmware":"1.0"}', 1, 2);
      expectCmd(await client.next(), 'puback');
      assert.deepEqual(emulator.device('fresh')?.telemetry, [{ temperature: 21.5 }]);
      assert.deepEqual(emulator.device('fresh')?.attributes, { firmware: '1.0' });
    });

    it('a gateway publishes on v1/gateway/connect and v1/gateway/telemetry; both recorded', async () => {
      const provisioning = await provisionSession();
      provisioning.publish(
        '/provision/request',
        request(CREATE, { deviceName: 'gw', gateway: true, token: 'gw-token' }),
        1,
      );
      await provisioning.next();
      await provisioning.next();
      assert.equal(emulator.device('gw')?.gateway, true);
      const { client } = await connect({ username: 'gw-token' });
      client.publish('v1/gateway/connect', '{"device":"child-1"}', 1, 1);
      client.publish('v1/gateway/telemetry', '{"child-1":[{"t":1}]}', 1, 2);
      expectCmd(await client.next(), 'puback');
      expectCmd(await client.next(), 'puback');
      assert.deepEqual(emulator.device('gw')?.gatewayMessages, [
        { topic: 'v1/gateway/connect', payload: { device: 'child-1' } },
        { topic: 'v1/gateway/telemetry', payload: { 'child-1': [{ t: 1 }] } },
      ]);
    });

    it('v3.1.1: telemetry that is not JSON closes the connection; v5 gets PUBACK 0x99', async () => {
      const v4 = await connect({ username: 'device-token' });
      v4.client.publish('v1/devices/me/telemetry', 'not json', 1);
      expectCmd(await v4.client.next(), 'closed');
      const v5 = await connect({ protocolVersion: 5, username: 'device-token' });
      v5.client.publish('v1/devices/me/telemetry', 'not json', 1, 4);
      assert.equal(expectCmd(await v5.client.next(), 'puback').reasonCode, 0x99);
      assert.deepEqual(emulator.device('token-device')?.telemetry, []);
    });

    it('device sessions are not provisioning sessions', async () => {
      const { client } = await connect({ username: 'device-token' });
      client.publish('/provision/request', request(CREATE, { deviceName: 'sneaky' }), 1);
      expectCmd(await client.next(), 'puback');
      await delay(50);
      assert.equal(emulator.requests.length, 0);
      assert.equal(emulator.device('sneaky'), undefined);
    });
  });
});
