/** The emulator's MQTT connection limits and ordering, and a real client (mqtt.js) end to end. */

import assert from 'node:assert/strict';
import * as net from 'node:net';
import mqtt from 'mqtt';
import { delay } from './support/common';
import { generate, parser, type Packet } from 'mqtt-packet';
import type { Emulator } from '../src/emulator';
import { RawMqttClient, startEmulator } from './support/emulator-clients';
import { addTokenDevice, connectDevice, expectPacket, nextPubackCode } from './emulator-devices';

/** A raw socket that records the packets it receives and when it closed. */
async function rawSocket(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const packets: Packet[] = [];
  const reader = parser({ protocolVersion: 4 });
  reader.on('packet', (packet: Packet) => packets.push(packet));
  socket.on('data', (chunk: Buffer) => reader.parse(chunk));
  socket.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())));
  return { socket, packets, closed };
}

/** A telemetry PUBLISH whose remaining length is exactly `remaining` bytes. */
function publishOfRemainingLength(remaining: number, version: 4 | 5): Packet {
  const topic = 'v1/devices/me/telemetry';
  // Topic length prefix and topic, packet id, and on MQTT 5 the empty properties length.
  const header = 2 + topic.length + 2 + (version === 5 ? 1 : 0);
  const filler = remaining - header - '{"a":""}'.length;
  return {
    cmd: 'publish',
    topic,
    payload: Buffer.from(`{"a":"${'x'.repeat(filler)}"}`),
    qos: 1,
    messageId: 1,
    retain: false,
    dup: false,
  };
}

describe('emulator MQTT limits', () => {
  let emulator: Emulator;
  const clients: RawMqttClient[] = [];
  const sockets: net.Socket[] = [];

  beforeEach(async () => {
    emulator = await startEmulator({ mqttConnectTimeoutMs: 300, mqttInactivityTimeoutMs: 400 });
    addTokenDevice(emulator, 'dev', 'dev-token');
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    for (const socket of sockets.splice(0)) socket.destroy();
    await emulator.stop();
  });

  for (const version of [4, 5] as const) {
    it(`v${version}: a packet of 65 536 bytes is taken; one byte more closes the connection${version === 5 ? ' with DISCONNECT 0x81' : ''}`, async () => {
      const client = await connectDevice(emulator, 'dev-token', { version, clientId: 'a' });
      clients.push(client);
      client.send(publishOfRemainingLength(65_536, version));
      assert.equal(await nextPubackCode(client, 1), 0);
      assert.equal(emulator.device('dev')?.telemetry.length, 1);
      client.send(publishOfRemainingLength(65_537, version));
      if (version === 5) {
        assert.equal(expectPacket(await client.next(), 'disconnect').reasonCode, 0x81);
      }
      expectPacket(await client.next(), 'closed');
      assert.equal(emulator.device('dev')?.telemetry.length, 1);
    });
  }

  it('a packet announced over the limit is refused from its header, before its bytes arrive', async () => {
    const client = await connectDevice(emulator, 'dev-token');
    clients.push(client);
    // PUBLISH QoS 1 announcing 1 000 000 bytes, followed by only a few.
    const header = Buffer.from([0x32, 0xc0, 0x84, 0x3d]);
    client.writeRaw(Buffer.concat([header, Buffer.alloc(10)]));
    expectPacket(await client.next(), 'closed');
  });

  it('a connection that never sends CONNECT is closed after mqttConnectTimeoutMs', async () => {
    const opened = Date.now();
    const silent = await rawSocket(emulator.ports.mqtt);
    sockets.push(silent.socket);
    const closedAt = await silent.closed;
    assert.ok(closedAt - opened >= 250, `not before the timeout (${closedAt - opened} ms)`);
    assert.ok(closedAt - opened < 3000);
  });

  it('a first packet other than CONNECT closes the connection', async () => {
    const raw = await rawSocket(emulator.ports.mqtt);
    sockets.push(raw.socket);
    raw.socket.write(generate({ cmd: 'pingreq' }));
    await raw.closed;
    assert.deepEqual(raw.packets, []);
  });

  it('packets sent right behind CONNECT are handled after the CONNACK, in order', async () => {
    const raw = await rawSocket(emulator.ports.mqtt);
    sockets.push(raw.socket);
    const packets: Packet[] = [
      {
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clientId: 'p',
        username: 'dev-token',
        clean: true,
        keepalive: 0,
      },
      {
        cmd: 'publish',
        topic: 'v1/devices/me/telemetry',
        payload: Buffer.from('{"n":1}'),
        qos: 1,
        messageId: 5,
        retain: false,
        dup: false,
      },
      {
        cmd: 'subscribe',
        messageId: 6,
        subscriptions: [{ topic: 'v1/devices/me/attributes', qos: 1 }],
      },
      { cmd: 'pingreq' },
    ];
    raw.socket.write(Buffer.concat(packets.map((packet) => generate(packet))));
    for (let i = 0; i < 100 && raw.packets.length < 4; i++) await delay(10);
    assert.deepEqual(
      raw.packets.map((packet) => packet.cmd),
      ['connack', 'puback', 'suback', 'pingresp'],
    );
    assert.deepEqual(emulator.device('dev')?.telemetry, [{ n: 1 }]);
  });

  it('a connection silent for mqttInactivityTimeoutMs is closed; PINGREQ keeps it open', async () => {
    const pinging = await connectDevice(emulator, 'dev-token', { clientId: 'pinging' });
    clients.push(pinging);
    addTokenDevice(emulator, 'other', 'other-token');
    const silent = await connectDevice(emulator, 'other-token', { clientId: 'silent' });
    clients.push(silent);
    const timer = setInterval(() => pinging.send({ cmd: 'pingreq' }), 100);
    try {
      expectPacket(await silent.next(2000), 'closed');
      await delay(300);
      assert.equal(pinging.events.at(-1)?.cmd, 'pingresp', 'the pinging connection is open');
    } finally {
      clearInterval(timer);
    }
  });
});

describe('emulator with mqtt.js as the device', () => {
  let emulator: Emulator;
  const clients: mqtt.MqttClient[] = [];

  beforeEach(async () => {
    emulator = await startEmulator();
    addTokenDevice(emulator, 'dev', 'dev-token');
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.endAsync(true)));
    await emulator.stop();
  });

  async function connect(protocolVersion: 4 | 5, clientId: string): Promise<mqtt.MqttClient> {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${emulator.ports.mqtt}`, {
      username: 'dev-token',
      clientId,
      protocolVersion,
      reconnectPeriod: 0,
    });
    clients.push(client);
    return client;
  }

  it('answers an RPC and receives shared-attribute updates', async () => {
    const client = await connect(4, 'mqttjs');
    const updates: unknown[] = [];
    client.on('message', (topic, payload) => {
      if (topic.startsWith('v1/devices/me/rpc/request/')) {
        const id = topic.slice('v1/devices/me/rpc/request/'.length);
        const request = JSON.parse(payload.toString()) as { method: string; params: unknown };
        void client.publishAsync(
          `v1/devices/me/rpc/response/${id}`,
          JSON.stringify({ echo: request.params, method: request.method }),
          { qos: 1 },
        );
      } else if (topic === 'v1/devices/me/attributes') {
        updates.push(JSON.parse(payload.toString()));
      }
    });
    await client.subscribeAsync(['v1/devices/me/rpc/request/+', 'v1/devices/me/attributes'], {
      qos: 1,
    });
    await client.publishAsync('v1/devices/me/telemetry', '{"t":20}', { qos: 1 });
    assert.deepEqual(await emulator.sendRpc('dev', 'ping', { n: 1 }), {
      echo: { n: 1 },
      method: 'ping',
    });
    assert.equal(emulator.updateSharedAttributes('dev', { interval: 10 }), 1);
    for (let i = 0; i < 100 && updates.length === 0; i++) await delay(10);
    assert.deepEqual(updates, [{ interval: 10 }]);
    assert.deepEqual(emulator.device('dev')?.telemetry, [{ t: 20 }]);
  });

  it('MQTT 5: a second client with the same token takes the session over (DISCONNECT 0x8E)', async () => {
    const first = await connect(5, 'first');
    const reason = new Promise<number | undefined>((resolve) =>
      first.once('disconnect', (packet) => resolve(packet.reasonCode)),
    );
    await connect(5, 'second');
    assert.equal(await reason, 0x8e);
    assert.equal(emulator.session('dev')?.clientId, 'second');
  });
});
