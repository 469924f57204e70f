/** A gateway's connection under faults: reconnects, drops mid-stream, a gateway that is not one, closing. */

import assert from 'node:assert/strict';
import type { Emulator } from '../src/emulator';
import type { DeviceConnections, SessionChange } from '../src/devices';
import {
  FAST,
  addDevice,
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

const CONNECT = 'v1/gateway/connect';

function reading(
  connections: DeviceConnections,
  gateway: TestDevice,
  deviceName: string,
  payload: unknown,
  timeoutMs = 10_000,
): Promise<void> {
  return connections.sendViaGateway({
    gatewayName: gateway.name,
    gatewayLogin: gateway.login,
    deviceName,
    deviceType: 'sensor',
    message: { kind: 'telemetry', payload },
    timeoutMs,
  });
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('devices: a gateway under faults', function () {
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

  it('after a reconnect every device is announced again, before any data, and RPC reaches it', async function () {
    const gateway = addGateway(emulator, 'gw-again');
    const names = Array.from({ length: 5 }, (_, i) => `${gateway.name}-dev-${i}`);
    await Promise.all(names.map((name, n) => reading(connections.current, gateway, name, { n })));
    assert.equal(gatewayMessagesOf(emulator, gateway.name, CONNECT).length, 5);
    assert.ok(emulator.closeSession(gateway.name), 'the server ends the gateway connection');
    await waitFor('the devices announced again', () => {
      return gatewayMessagesOf(emulator, gateway.name, CONNECT).length === 10;
    });
    await waitFor('device sessions back', () => emulator.session(names[4])?.gateway !== undefined);
    assert.deepEqual(gatewayMessagesOf(emulator, gateway.name, CONNECT).slice(5), [
      ...names.map((device) => ({ device, type: 'sensor' })),
    ]);
    const requests: string[] = [];
    connections.current.on('rpc', (request) => {
      requests.push(request.deviceName);
      void connections.current.replyRpcViaGateway(gateway.name, request.deviceName, request.id, 1);
    });
    assert.equal(await emulator.sendRpc(names[2], 'ping', {}, { timeoutMs: 3000 }), 1);
    assert.deepEqual(requests, [names[2]]);
    await reading(connections.current, gateway, names[0], { n: 99 });
    assert.equal(gatewayMessagesOf(emulator, gateway.name, CONNECT).length, 10, 'not again');
    assert.equal(proxy.connections, 2);
  });

  it('connection cut mid-stream: every message settles, every accepted one was recorded, each device in order', async function () {
    const gateway = addGateway(emulator, 'gw-cut');
    const devices = 50;
    const name = (n: number): string => `${gateway.name}-dev-${n % devices}`;
    const sends: Array<Promise<void>> = [];
    const cuts = [300, 900, 1500];
    for (let n = 0; n < 2000; n++) {
      sends.push(reading(connections.current, gateway, name(n), { n }));
      if (n % 50 === 49) await turn();
      const recorded = (): number =>
        Array.from(
          { length: devices },
          (_, d) => telemetryOf(emulator, name(d)).flat().length,
        ).reduce((sum, count) => sum + count, 0);
      if (cuts.length > 0 && n === cuts[0]) {
        cuts.shift();
        await waitFor(`${n - 100} recorded`, () => recorded() >= n - 100);
        proxy.cut();
      }
    }
    const results = await outcomes(sends);
    const resolved = results.flatMap((result, n) => (result.ok ? [n] : []));
    assert.equal(resolved.length, 2000, 'with quick reconnects and a 10 s deadline, all go out');
    for (let d = 0; d < devices; d++) {
      const seen = (telemetryOf(emulator, name(d)).flat() as Array<{ n: number }>).map((e) => e.n);
      for (const n of resolved.filter((m) => m % devices === d)) {
        assert.ok(seen.includes(n), `message ${n} resolved but not recorded`);
      }
      const firsts = seen.filter((n, index) => seen.indexOf(n) === index);
      assert.deepEqual(
        firsts,
        [...firsts].sort((a, b) => a - b),
        `${name(d)} out of order`,
      );
      assert.equal(emulator.device(name(d))?.profile, 'sensor', 'announced before its data');
    }
    assert.ok(proxy.connections >= 4, `reconnected ${proxy.connections - 1} times`);
  });

  it('a device that is not a gateway: the messages fail fast saying to tick "Is gateway", and so do later ones', async function () {
    const plain = addDevice(emulator, 'not-gw');
    const changes: SessionChange[] = [];
    connections.current.on('session', (change) => changes.push(change));
    const started = Date.now();
    const first = await outcomes(
      Array.from({ length: 20 }, (_, n) =>
        reading(connections.current, plain, `${plain.name}-dev-${n % 4}`, { n }, 600),
      ),
    );
    const waited = Date.now() - started;
    assert.ok(waited >= 550 && waited < 2000, `failed after ${waited} ms`);
    for (const result of first) {
      assert.ok(!result.ok);
      assert.equal(result.err.status, 'UNAUTHORIZED');
      assert.match(result.err.message, /not a gateway/);
      assert.match(
        result.err.message,
        /Tick "Is gateway" on the device in ThingsBoard, then redeploy/,
      );
      const token = (plain.login as { token: string }).token;
      assert.ok(!result.err.message.includes(token), 'no token in the text');
    }
    const refused = changes.find((change) => change.state === 'unauthorized');
    assert.equal(refused?.gateway, plain.name);
    assert.match(refused?.reason ?? '', /Is gateway/);
    assert.equal(connections.current.gatewayState(plain.name)?.state, 'unauthorized');
    const again = Date.now();
    await assert.rejects(reading(connections.current, plain, `${plain.name}-dev-0`, { n: 20 }), {
      status: 'UNAUTHORIZED',
      message: /Is gateway/,
    });
    assert.ok(Date.now() - again < 100, 'a later message fails at once');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(proxy.connections, 1, 'no reconnecting in a loop');
    assert.equal(emulator.device(`${plain.name}-dev-0`), undefined, 'nothing was created');

    // "Is gateway" ticked, then a redeploy: a new connection is a gateway's.
    const record = emulator.device(plain.name);
    assert.ok(record !== undefined);
    record.gateway = true;
    const redeployed = connections.make();
    await reading(redeployed, plain, `${plain.name}-dev-0`, { n: 21 }, 2000);
    assert.deepEqual(telemetryOf(emulator, `${plain.name}-dev-0`), [[{ n: 21 }]]);
  });

  it('a gateway whose flag was taken away: after the reconnect its unanswered announcements alone show it', async function () {
    const gateway = addGateway(emulator, 'gw-unflagged');
    const changes: SessionChange[] = [];
    connections.current.on('session', (change) => changes.push(change));
    const names = [0, 1].map((n) => `${gateway.name}-dev-${n}`);
    await Promise.all(
      names.map((name, n) => reading(connections.current, gateway, name, { n }, 400)),
    );
    const record = emulator.device(gateway.name);
    assert.ok(record !== undefined);
    record.gateway = false;
    emulator.closeSession(gateway.name);
    await waitFor('the refusal', () => changes.some((change) => change.state === 'unauthorized'));
    const refused = changes.find((change) => change.state === 'unauthorized');
    assert.match(refused?.reason ?? '', /not a gateway.*within 400 ms.*Tick "Is gateway"/s);
    await assert.rejects(reading(connections.current, gateway, names[0], { n: 2 }), {
      status: 'UNAUTHORIZED',
    });
    assert.equal(proxy.connections, 2);
  });

  it('close() with messages in flight: written publishes get their PUBACK, waiting messages are counted and rejected', async function () {
    const gateway = addGateway(emulator, 'gw-close');
    const c = connections.make();
    await reading(c, gateway, `${gateway.name}-warm`, { n: -1 });
    proxy.hold();
    const sends: Array<Promise<void>> = [];
    for (const [from, count] of [
      [0, 30],
      [30, 20],
      [50, 10],
    ]) {
      for (let n = from; n < from + count; n++) {
        sends.push(reading(c, gateway, `${gateway.name}-dev-${n % 7}`, { n }));
      }
      await turn();
    }
    const all = outcomes(sends);
    const closing = c.close();
    setTimeout(() => proxy.release(), 100);
    const report = await closing;
    assert.equal(report.unsent, 10, 'the third publish, never written (a window of two)');
    const results = await all;
    assert.equal(results.slice(0, 50).filter((result) => result.ok).length, 50);
    for (const result of results.slice(50)) {
      assert.ok(!result.ok);
      assert.equal(result.err.status, 'CONNECTION_ERROR');
      assert.match(result.err.message, /not sent: the node was closed/);
    }
    await assert.rejects(reading(c, gateway, `${gateway.name}-dev-0`, { n: 99 }), {
      status: 'CONNECTION_ERROR',
    });
  });

  it('speaks MQTT 5 as well', async function () {
    const gateway = addGateway(emulator, 'gw-v5');
    const c = connections.make({ protocolVersion: 5 });
    await Promise.all([0, 1, 2].map((n) => reading(c, gateway, `${gateway.name}-dev-${n}`, { n })));
    assert.equal(emulator.session(gateway.name)?.protocolVersion, 5);
    assert.deepEqual(telemetryOf(emulator, `${gateway.name}-dev-1`), [[{ n: 1 }]]);
  });
});
