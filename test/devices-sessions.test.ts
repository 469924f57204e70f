/** Device MQTT sessions under faults and over their lifetime: drops, refusals, limits, closing. */

import assert from 'node:assert/strict';
import type { Emulator } from '../src/emulator';
import type { DeviceConnections, DeviceLogin, SessionChange } from '../src/devices';
import {
  FAST,
  PROFILE,
  addDevice,
  closedTcpPort,
  connectionsForEachTest,
  outcomes,
  rawTcpServer,
  serverOf,
  startEmulator,
  tcpProxy,
  telemetryOf,
  waitFor,
} from './support/devices';
import type { TcpProxy } from './support/devices';

function sendAs(
  connections: DeviceConnections,
  device: { name: string; login: DeviceLogin },
  payload: Record<string, unknown>,
  timeoutMs = 5000,
): Promise<void> {
  return connections.send({
    deviceName: device.name,
    login: device.login,
    transport: 'mqtt',
    message: { kind: 'telemetry', payload },
    timeoutMs,
  });
}

/** Each resolved message was recorded, and the first time each was recorded follows send order. */
function assertDelivered(resolved: number[], recorded: unknown[]): void {
  const seen = recorded.map((entry) => (entry as { n: number }).n);
  for (const n of resolved) assert.ok(seen.includes(n), `message ${n} resolved but not recorded`);
  const firsts = seen.filter((n, index) => seen.indexOf(n) === index);
  assert.deepEqual(
    firsts,
    [...firsts].sort((a, b) => a - b),
    'recorded out of order',
  );
}

describe('devices: MQTT sessions', function () {
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

  it('connections cut mid-stream (QoS 1): every message settles, every accepted one arrived, in order', async function () {
    const device = addDevice(emulator, 'cut');
    const c = connections.make({ window: 4 });
    const sends = Array.from({ length: 600 }, (_, n) => sendAs(c, device, { n }, 10_000));
    const all = outcomes(sends);
    for (const after of [100, 250, 400]) {
      await waitFor(`${after} recorded`, () => telemetryOf(emulator, device.name).length >= after);
      proxy.cut();
    }
    const results = await all;
    const resolved = results.flatMap((result, n) => (result.ok ? [n] : []));
    assert.equal(resolved.length, 600, 'with a 10 s deadline and quick reconnects, all go out');
    assertDelivered(resolved, telemetryOf(emulator, device.name));
    assert.ok(proxy.connections >= 4, `reconnected ${proxy.connections - 1} times`);
  });

  it('the server restarted on its port mid-stream: messages wait, then go out to the new one', async function () {
    const first = await startEmulator();
    const port = first.ports.mqtt;
    const device = addDevice(first, 'restart');
    const c = connections.make({ server: serverOf(first), window: 8 });
    const sends = Array.from({ length: 100 }, (_, n) => sendAs(c, device, { n }, 10_000));
    await waitFor('30 recorded', () => telemetryOf(first, device.name).length >= 30);
    await first.stop();
    sends.push(...Array.from({ length: 50 }, (_, i) => sendAs(c, device, { n: 100 + i }, 10_000)));
    await new Promise((resolve) => setTimeout(resolve, 150));
    const second = await startEmulator({ mqttPort: port });
    try {
      const token = (device.login as { token: string }).token;
      second.addDevice({
        name: device.name,
        profile: PROFILE.name,
        credentials: { credentialsType: 'ACCESS_TOKEN', token },
      });
      const results = await outcomes(sends);
      const resolved = results.flatMap((result, n) => (result.ok ? [n] : []));
      assert.equal(resolved.length, 150);
      assert.ok(telemetryOf(second, device.name).length >= 50, 'the second server got the rest');
      assertDelivered(resolved, [
        ...telemetryOf(first, device.name),
        ...telemetryOf(second, device.name),
      ]);
    } finally {
      await c.close();
      await second.stop();
    }
  });

  it('refused credentials: UNAUTHORIZED for the queued and the next, no new connection, until new ones come', async function () {
    const device = addDevice(emulator, 'refused');
    const wrong: DeviceLogin = { type: 'ACCESS_TOKEN', token: 'not-this-devices-token-4711' };
    const changes: SessionChange[] = [];
    connections.current.on('session', (change) => changes.push(change));
    const queued = await outcomes(
      [1, 2, 3].map((n) => sendAs(connections.current, { ...device, login: wrong }, { n })),
    );
    for (const result of queued) {
      assert.ok(!result.ok);
      assert.equal(result.err.status, 'UNAUTHORIZED');
      assert.match(result.err.message, /refused the credentials .* \(CONNACK 5: not authorised\)/);
    }
    const startedAt = Date.now();
    const later = await outcomes([
      sendAs(connections.current, { ...device, login: wrong }, { n: 4 }),
    ]);
    assert.ok(!later[0].ok && later[0].err.status === 'UNAUTHORIZED');
    assert.ok(Date.now() - startedAt < 50, 'refused at once');
    assert.equal(proxy.connections, 1, 'the refused credentials were not tried again');
    assert.equal(connections.current.sessionState(device.name), 'unauthorized');
    await sendAs(connections.current, device, { n: 5 });
    assert.deepEqual(telemetryOf(emulator, device.name), [{ n: 5 }]);
    assert.equal(connections.current.sessionState(device.name), 'connected');
    assert.deepEqual(
      changes.map((change) => change.state),
      ['unauthorized', 'connected'],
    );
    const texts = JSON.stringify(changes) + queued.map((r) => (r.ok ? '' : r.err.message)).join();
    assert.doesNotMatch(texts, /not-this-devices-token|token-refused/);
  });

  it('1 000 messages wait for a device; the next is QUEUE_FULL; close() rejects and counts them', async function () {
    const c = connections.make({
      server: {
        ...serverOf(emulator),
        ports: { ...serverOf(emulator).ports, mqtt: await closedTcpPort() },
      },
    });
    const device = addDevice(emulator, 'full');
    const waiting = Array.from({ length: 1000 }, (_, n) => sendAs(c, device, { n }, 20_000));
    const all = outcomes(waiting);
    const [full] = await outcomes([sendAs(c, device, { n: 1000 })]);
    assert.ok(!full.ok);
    assert.equal(full.err.status, 'QUEUE_FULL');
    assert.match(full.err.message, /1000 messages of device "full-\d+-\d+" are already waiting/);
    assert.equal(c.summary().queued, 1000);
    assert.deepEqual(await c.close(), { unsent: 1000 });
    for (const result of await all) {
      assert.ok(!result.ok);
      assert.equal(result.err.status, 'CONNECTION_ERROR');
      assert.match(result.err.message, /was not sent: the node was closed/);
    }
  });

  it('waiting messages of an unreachable server fail at their deadline naming the connection error', async function () {
    const port = await closedTcpPort();
    const c = connections.make({
      server: { ...serverOf(emulator), ports: { ...serverOf(emulator).ports, mqtt: port } },
    });
    const device = addDevice(emulator, 'unreachable');
    const startedAt = Date.now();
    const [result] = await outcomes([sendAs(c, device, { n: 1 }, 300)]);
    assert.ok(!result.ok);
    assert.equal(result.err.status, 'CONNECTION_ERROR');
    assert.match(
      result.err.message,
      /Not sent within 300 ms: .* has no connection\. Could not connect to .*ECONNREFUSED/,
    );
    assert.ok(Date.now() - startedAt < 800);
    assert.equal(c.summary().reconnecting, 1);
  });

  it('close() with messages in flight: written ones get their PUBACK, waiting ones are counted', async function () {
    const device = addDevice(emulator, 'closing');
    const c = connections.make({ window: 4 });
    await sendAs(c, device, { n: 0 });
    proxy.hold();
    const sends = outcomes(
      Array.from({ length: 10 }, (_, i) => sendAs(c, device, { n: i + 1 }, 3000)),
    );
    await waitFor('six waiting', () => c.summary().queued === 6);
    const closing = c.close();
    setTimeout(() => proxy.release(), 100);
    assert.deepEqual(await closing, { unsent: 6 });
    const results = await sends;
    assert.deepEqual(
      results.map((result) => result.ok),
      [true, true, true, true, false, false, false, false, false, false],
    );
    assert.deepEqual(
      telemetryOf(emulator, device.name),
      [0, 1, 2, 3, 4].map((n) => ({ n })),
    );
  });

  it('close() with PUBACKs that never come: written ones time out, and close ends with them', async function () {
    const device = addDevice(emulator, 'stuck');
    const c = connections.make({ window: 4 });
    await sendAs(c, device, { n: 0 });
    proxy.hold();
    const sends = outcomes(
      Array.from({ length: 4 }, (_, i) => sendAs(c, device, { n: i + 1 }, 400)),
    );
    const startedAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(await c.close(), { unsent: 0 });
    const tookMs = Date.now() - startedAt;
    assert.ok(tookMs >= 350 && tookMs < 1500, `close took ${tookMs} ms`);
    for (const result of await sends) {
      assert.ok(!result.ok);
      assert.equal(result.err.status, 'TIMEOUT');
      assert.match(
        result.err.message,
        /No acknowledgement .* within 400 ms .* may have reached the server/,
      );
      assert.equal((result.err as { sent?: boolean }).sent, true);
    }
  });

  it('an idle session closes; the next message opens a new one', async function () {
    const c = connections.make({ idleMs: 150 });
    const device = addDevice(emulator, 'idle');
    const closed: SessionChange[] = [];
    c.on('session', (change) => change.state === 'closed' && closed.push(change));
    await sendAs(c, device, { n: 1 });
    await waitFor('the idle close', () => closed.length === 1, 2000);
    assert.equal(closed[0].closedBecause, 'idle');
    assert.equal(c.sessionState(device.name), undefined);
    await sendAs(c, device, { n: 2 });
    assert.equal(proxy.connections, 2);
    assert.equal(telemetryOf(emulator, device.name).length, 2);
  });

  it('beyond the session limit the least recently used closes first', async function () {
    const c = connections.make({ maxSessions: 2 });
    const [a, b, d, e] = ['lru-a', 'lru-b', 'lru-d', 'lru-e'].map((p) => addDevice(emulator, p));
    const closed: string[] = [];
    c.on('session', (change) => {
      if (change.state === 'closed')
        closed.push(`${change.deviceName.split('-')[1]}:${change.closedBecause}`);
    });
    await sendAs(c, a, { n: 1 });
    await sendAs(c, b, { n: 1 });
    await sendAs(c, a, { n: 2 });
    await sendAs(c, d, { n: 1 });
    await waitFor('b closed', () => closed.length === 1);
    assert.deepEqual(closed, ['b:limit']);
    await sendAs(c, e, { n: 1 });
    await waitFor('a closed', () => closed.length === 2);
    assert.deepEqual(closed, ['b:limit', 'a:limit']);
    assert.equal(c.summary().open, 2);
  });

  it('disconnect(): what is queued goes out first, then the session closes', async function () {
    const device = addDevice(emulator, 'disconnect');
    const c = connections.make({ window: 2 });
    const sends = Array.from({ length: 20 }, (_, n) => sendAs(c, device, { n }));
    await c.disconnect(device.name);
    assert.ok((await outcomes(sends)).every((result) => result.ok));
    assert.equal(telemetryOf(emulator, device.name).length, 20);
    assert.equal(c.sessionState(device.name), undefined);
    await sendAs(c, device, { n: 20 });
    assert.equal(proxy.connections, 2);
  });

  it('summaries count connected and reconnecting sessions', async function () {
    const c = connections.make();
    const [a, b] = ['sum-a', 'sum-b'].map((p) => addDevice(emulator, p));
    await Promise.all([sendAs(c, a, { n: 1 }), sendAs(c, b, { n: 1 })]);
    await waitFor('two connected', () => c.summary().connected === 2);
    const summaries: number[] = [];
    c.on('summary', (summary) => summaries.push(summary.reconnecting));
    proxy.cut();
    await waitFor('a summary with reconnecting sessions', () => summaries.some((n) => n > 0));
    await waitFor('both back', () => c.summary().connected === 2);
  });
});

describe('devices: opening sessions', function () {
  let emulator: Emulator;
  before(async () => {
    emulator = await startEmulator();
  });
  after(() => emulator.stop());
  const connections = connectionsForEachTest(() => ({ server: serverOf(emulator), ...FAST }));

  it('open() connects a device handed over without sending anything; a second open() keeps it', async function () {
    const device = addDevice(emulator, 'open');
    const c = connections.current;
    const changes: SessionChange[] = [];
    c.on('session', (change) => changes.push(change));
    c.open(device.name, device.login);
    await waitFor('connected', () => c.sessionState(device.name) === 'connected');
    c.open(device.name, device.login);
    await sendAs(c, device, { n: 1 });
    assert.deepEqual(telemetryOf(emulator, device.name), [{ n: 1 }]);
    assert.deepEqual(
      changes.map((change) => change.state),
      ['connected'],
    );
  });

  it('open() refuses what MQTT cannot use, and a device name that is no name', function () {
    const c = connections.current;
    assert.throws(
      () => c.open('x', { type: 'X509_CERTIFICATE', certificate: 'c', privateKey: 'k' }),
      /takes MQTT over TLS/,
    );
    assert.throws(
      () => c.open('  ', { type: 'ACCESS_TOKEN', token: 't' }),
      (err: Error & { status?: string }) =>
        err.status === 'INVALID_INPUT' && /only whitespace/.test(err.message),
    );
  });

  it('a port that accepts but never answers: CONNECTION_ERROR naming the missing CONNACK', async function () {
    const silent = await rawTcpServer(() => undefined);
    try {
      const c = connections.make({
        server: {
          ...serverOf(emulator),
          ports: { ...serverOf(emulator).ports, mqtt: silent.port },
        },
        connectTimeoutMs: 150,
      });
      const device = addDevice(emulator, 'silent');
      const [result] = await outcomes([sendAs(c, device, { n: 1 }, 600)]);
      assert.ok(!result.ok);
      assert.equal(result.err.status, 'CONNECTION_ERROR');
      assert.match(result.err.message, /did not answer the connection of device .* \(no CONNACK\)/);
    } finally {
      await silent.close();
    }
  });

  it('MQTT 5 sessions send as well', async function () {
    const c = connections.make({ protocolVersion: 5 });
    const device = addDevice(emulator, 'v5');
    await sendAs(c, device, { n: 1 });
    await c.replyRpc(device.name, 3, { ok: true });
    assert.deepEqual(telemetryOf(emulator, device.name), [{ n: 1 }]);
  });
});
