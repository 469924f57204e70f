/** A gateway's one connection for many devices (spec §5): announcements, shared publishes, inbound. */

import assert from 'node:assert/strict';
import type { Emulator } from '../src/emulator';
import type { DeviceConnections, InboundRpc, SharedAttributesUpdate } from '../src/devices';
import { MAX_MQTT_PACKET_BYTES, mqttPublishSize } from '../src/protocol/device-data';
import {
  FAST,
  addGateway,
  connectionsForEachTest,
  gatewayMessagesOf,
  outcomes,
  serverOf,
  startEmulator,
  tcpProxy,
  telemetryOf,
  waitFor,
} from './support/devices';
import type { TcpProxy, TestDevice } from './support/devices';

const TELEMETRY = 'v1/gateway/telemetry';
const CONNECT = 'v1/gateway/connect';

function reading(
  connections: DeviceConnections,
  gateway: TestDevice,
  deviceName: string,
  payload: unknown,
  extra: { deviceType?: string; timeoutMs?: number } = {},
): Promise<void> {
  return connections.sendViaGateway({
    gatewayName: gateway.name,
    gatewayLogin: gateway.login,
    deviceName,
    message: { kind: 'telemetry', payload },
    timeoutMs: 5000,
    ...extra,
  });
}

/** Bytes of the PUBLISH packet that carried a recorded payload (our text is JSON.stringify's). */
function packetBytes(payload: unknown): number {
  const bytes = Buffer.byteLength(JSON.stringify(payload), 'utf8');
  return mqttPublishSize(TELEMETRY, bytes, { qos: 1, protocolVersion: 4 });
}

describe('devices: through a gateway', function () {
  let emulator: Emulator;
  let proxy: TcpProxy;
  before(async () => {
    emulator = await startEmulator();
  });
  after(() => emulator.stop());
  beforeEach(async () => {
    proxy = await tcpProxy(emulator.ports.mqtt);
  });
  afterEach(() => proxy.close());
  const connections = connectionsForEachTest(() => ({
    server: serverOf(emulator, proxy.port),
    ...FAST,
  }));

  it('announces each of 200 devices with its type and sends their telemetry over one connection, publishes shared', async function () {
    const gateway = addGateway(emulator, 'gw-many');
    const names = Array.from({ length: 200 }, (_, i) => `${gateway.name}-dev-${i}`);
    const sends = names.flatMap((name, i) =>
      [0, 1, 2].map((n) =>
        reading(connections.current, gateway, name, { i, n }, { deviceType: 'meter' }),
      ),
    );
    const results = await outcomes(sends);
    assert.deepEqual(
      results.filter((result) => !result.ok),
      [],
    );
    for (const [i, name] of names.entries()) {
      const device = emulator.device(name);
      assert.equal(device?.profile, 'meter', `${name} created with its type`);
      assert.equal(device?.createdByGateway, gateway.name);
      assert.deepEqual(telemetryOf(emulator, name), [
        [
          { i, n: 0 },
          { i, n: 1 },
          { i, n: 2 },
        ],
      ]);
      assert.equal(emulator.session(name)?.gateway, gateway.name);
    }
    const connects = gatewayMessagesOf(emulator, gateway.name, CONNECT);
    assert.equal(connects.length, 200, 'each device announced once');
    assert.deepEqual(connects[0], { device: names[0], type: 'meter' });
    const publishes = gatewayMessagesOf(emulator, gateway.name, TELEMETRY);
    assert.ok(publishes.length <= 3, `600 readings in ${publishes.length} publishes`);
    assert.equal(proxy.connections, 1, 'one connection');
    assert.deepEqual(connections.current.gatewayState(gateway.name), {
      state: 'connected',
      devices: 200,
    });
  });

  it('a burst larger than one packet is split into shared publishes that each stay within 65 536 bytes', async function () {
    const gateway = addGateway(emulator, 'gw-limit');
    const filler = 'x'.repeat(150);
    const sends = Array.from({ length: 3000 }, (_, n) =>
      reading(connections.current, gateway, `${gateway.name}-dev-${n % 40}`, { n, filler }),
    );
    const results = await outcomes(sends);
    assert.equal(results.filter((result) => result.ok).length, 3000);
    const publishes = gatewayMessagesOf(emulator, gateway.name, TELEMETRY);
    const sizes = publishes.map(packetBytes);
    assert.ok(publishes.length >= 8 && publishes.length < 40, `${publishes.length} publishes`);
    assert.ok(Math.max(...sizes) <= MAX_MQTT_PACKET_BYTES, `largest ${Math.max(...sizes)}`);
    assert.ok(Math.max(...sizes) > MAX_MQTT_PACKET_BYTES - 500, 'publishes are filled');
    const recorded = publishes.flatMap((payload) =>
      Object.values(payload as Record<string, Array<{ n: number }>>).flat(),
    );
    assert.deepEqual(
      recorded.map((entry) => entry.n).sort((a, b) => a - b),
      Array.from({ length: 3000 }, (_, n) => n),
    );
    // Each device's readings keep their order across publishes.
    const dev0 = telemetryOf(emulator, `${gateway.name}-dev-0`).flat() as Array<{ n: number }>;
    assert.deepEqual(
      dev0.map((entry) => entry.n),
      Array.from({ length: 75 }, (_, k) => k * 40),
    );
    assert.equal(proxy.connections, 1, 'the server never closed the connection');
  });

  it('messages arriving while the previous publish awaits its PUBACK share the next publish', async function () {
    const gateway = addGateway(emulator, 'gw-wait');
    const c = connections.make({ gatewayWindow: 1 });
    await reading(c, gateway, `${gateway.name}-a`, { n: 0 });
    proxy.hold();
    const first = reading(c, gateway, `${gateway.name}-a`, { n: 1 });
    await waitFor(
      'the first written',
      () => telemetryOf(emulator, `${gateway.name}-a`).length === 2,
    );
    const later: Array<Promise<void>> = [];
    for (let n = 2; n < 12; n++) {
      later.push(reading(c, gateway, `${gateway.name}-${n % 3}`, { n }));
      await new Promise((resolve) => setImmediate(resolve));
    }
    proxy.release();
    await Promise.all([first, ...later]);
    const publishes = gatewayMessagesOf(emulator, gateway.name, TELEMETRY);
    assert.equal(publishes.length, 3, 'ten messages from ten turns in one publish');
    assert.equal(Object.keys(publishes[2] as object).length, 3);
  });

  it('a malformed or oversized message in a burst fails alone; the others land on the same connection', async function () {
    const gateway = addGateway(emulator, 'gw-bad');
    const name = (n: number): string => `${gateway.name}-dev-${n % 10}`;
    const sends = Array.from({ length: 100 }, (_, n) => {
      if (n === 37) return reading(connections.current, gateway, name(n), { temperature: NaN });
      if (n === 50) return reading(connections.current, gateway, name(n), 'not telemetry');
      if (n === 63) return reading(connections.current, gateway, name(n), { ts: 5, values: {} });
      if (n === 77) {
        return reading(connections.current, gateway, name(n), { blob: 'y'.repeat(70_000) });
      }
      if (n === 88) return reading(connections.current, gateway, ' ', { n });
      return reading(connections.current, gateway, name(n), { n });
    });
    const results = await outcomes(sends);
    const failed = results.flatMap((result, n) => (result.ok ? [] : [[n, result.err.status]]));
    assert.deepEqual(failed, [
      [37, 'INVALID_INPUT'],
      [50, 'INVALID_INPUT'],
      [63, 'INVALID_INPUT'],
      [77, 'INVALID_INPUT'],
      [88, 'INVALID_INPUT'],
    ]);
    const tooLarge = results[77];
    assert.ok(!tooLarge.ok && /65536/.test(tooLarge.err.message), 'names the packet limit');
    const recorded = Array.from({ length: 10 }, (_, d) =>
      (telemetryOf(emulator, `${gateway.name}-dev-${d}`).flat() as Array<{ n: number }>).map(
        (entry) => entry.n,
      ),
    ).flat();
    assert.equal(recorded.length, 95);
    assert.equal(proxy.connections, 1, 'the connection stayed open');
  });

  it('attributes: one message per device per publish, in order, so the latest wins', async function () {
    const gateway = addGateway(emulator, 'gw-attr');
    const device = `${gateway.name}-dev`;
    const send = (payload: Record<string, unknown>): Promise<void> =>
      connections.current.sendViaGateway({
        gatewayName: gateway.name,
        gatewayLogin: gateway.login,
        deviceName: device,
        message: { kind: 'attributes', payload },
      });
    await Promise.all([
      send({ firmware: '1.0', model: 'M1' }),
      send({ firmware: '1.1' }),
      send({ firmware: '1.2' }),
    ]);
    assert.deepEqual(emulator.device(device)?.attributes, { firmware: '1.2', model: 'M1' });
    assert.equal(gatewayMessagesOf(emulator, gateway.name, 'v1/gateway/attributes').length, 3);
  });

  it('an RPC to a device behind the gateway comes out with its name and the gateway; the reply reaches the caller', async function () {
    const gateway = addGateway(emulator, 'gw-rpc');
    const device = `${gateway.name}-valve`;
    const requests: InboundRpc[] = [];
    const replies: Array<Promise<void>> = [];
    connections.current.on('rpc', (request) => {
      requests.push(request);
      replies.push(
        connections.current.replyRpcViaGateway(
          request.gateway ?? '',
          request.deviceName,
          request.id,
          { opened: (request.params as { open: boolean }).open },
        ),
      );
    });
    await reading(connections.current, gateway, device, { pressure: 2 });
    const reply = await emulator.sendRpc(device, 'setValve', { open: true }, { timeoutMs: 3000 });
    await Promise.all(replies);
    assert.deepEqual(reply, { opened: true });
    assert.equal(requests.length, 1);
    assert.equal(requests[0].deviceName, device);
    assert.equal(requests[0].gateway, gateway.name);
    assert.equal(requests[0].method, 'setValve');
    assert.equal(emulator.device(device)?.rpcReplies.length, 1);
    const noConnection = connections.current.replyRpcViaGateway('no-such-gateway', device, 1, {});
    await assert.rejects(noConnection, { status: 'CONNECTION_ERROR' });
  });

  it('a shared-attribute update for a device behind the gateway comes out with its name and the gateway', async function () {
    const gateway = addGateway(emulator, 'gw-push');
    const device = `${gateway.name}-lamp`;
    const updates: SharedAttributesUpdate[] = [];
    connections.current.on('attributes', (update) => updates.push(update));
    await reading(connections.current, gateway, device, { on: true });
    assert.equal(emulator.updateSharedAttributes(device, { interval: 5 }), 1);
    await waitFor('the update', () => updates.length === 1);
    assert.deepEqual(updates[0], {
      deviceName: device,
      data: { interval: 5 },
      gateway: gateway.name,
    });
  });

  it('disconnect ends the device session after what was queued; data sent later announces it again', async function () {
    const gateway = addGateway(emulator, 'gw-disc');
    const device = `${gateway.name}-dev`;
    const queued = reading(connections.current, gateway, device, { n: 1 });
    const disconnected = connections.current.disconnectViaGateway(gateway.name, device);
    await Promise.all([queued, disconnected]);
    assert.equal(emulator.session(device), undefined);
    assert.deepEqual(telemetryOf(emulator, device), [[{ n: 1 }]]);
    await reading(connections.current, gateway, device, { n: 2 });
    assert.equal(emulator.session(device)?.gateway, gateway.name);
    assert.equal(gatewayMessagesOf(emulator, gateway.name, CONNECT).length, 2);
    await connections.current.disconnectViaGateway('never-opened', device);
  });

  it("the gateway's own messages as a device share its connection; a device session of that name gives way", async function () {
    const gateway = addGateway(emulator, 'gw-self');
    const c = connections.current;
    const asDevice = (n: number): Promise<void> =>
      c.send({
        deviceName: gateway.name,
        login: gateway.login,
        transport: 'mqtt',
        message: { kind: 'telemetry', payload: { uptime: n } },
      });
    await asDevice(1);
    assert.equal(proxy.connections, 1);
    await reading(c, gateway, `${gateway.name}-dev`, { n: 1 });
    await waitFor('the device session closed', () => c.summary().open === 0);
    await asDevice(2);
    assert.deepEqual(telemetryOf(emulator, gateway.name), [{ uptime: 1 }, { uptime: 2 }]);
    assert.equal(proxy.connections, 2, 'the device session, then only the gateway connection');
    assert.equal(c.sessionState(gateway.name), 'connected');
    const requests: InboundRpc[] = [];
    c.on('rpc', (request) => requests.push(request));
    const reply = emulator.sendRpc(gateway.name, 'restart', {}, { timeoutMs: 3000 });
    await waitFor('the request', () => requests.length === 1);
    assert.deepEqual(requests[0], {
      deviceName: gateway.name,
      id: requests[0].id,
      method: 'restart',
      params: {},
    });
    await c.replyRpc(gateway.name, requests[0].id, { ok: true });
    assert.deepEqual(await reply, { ok: true });
    assert.equal(proxy.connections, 2);
  });

  it('refuses what it cannot send before opening anything: no gateway name, a bad type, an RPC id that is none', async function () {
    const gateway = addGateway(emulator, 'gw-input');
    const c = connections.current;
    await assert.rejects(
      c.sendViaGateway({
        gatewayName: ' ',
        gatewayLogin: gateway.login,
        deviceName: 'd',
        message: { kind: 'telemetry', payload: { a: 1 } },
      }),
      { status: 'INVALID_INPUT', message: /Gateway/ },
    );
    await assert.rejects(
      reading(c, gateway, 'd', { a: 1 }, { deviceType: 42 as unknown as string }),
      {
        status: 'INVALID_INPUT',
        message: /device type/,
      },
    );
    await assert.rejects(
      c.replyRpcViaGateway(gateway.name, 'd', 'abc', {}, { login: gateway.login }),
      {
        status: 'INVALID_INPUT',
      },
    );
    assert.equal(c.gatewayState(gateway.name)?.devices ?? 0, 0);
  });
});
