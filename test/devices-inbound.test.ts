/** What ThingsBoard pushes to device sessions (RPC, shared attributes), and sessions taken over. */

import assert from 'node:assert/strict';
import type { Emulator } from '../src/emulator';
import type { InboundRpc, SessionChange, SharedAttributesUpdate } from '../src/devices';
import {
  FAST,
  addDevice,
  connectionsForEachTest,
  serverOf,
  startEmulator,
  waitFor,
} from './support/devices';
import type { TestDevice } from './support/devices';

describe('devices: RPC and shared attributes', function () {
  let emulator: Emulator;
  before(async () => {
    emulator = await startEmulator();
  });
  after(() => emulator.stop());
  const connections = connectionsForEachTest(() => ({ server: serverOf(emulator), ...FAST }));

  async function connected(device: TestDevice): Promise<void> {
    connections.current.open(device.name, device.login);
    await waitFor('the session', () => emulator.session(device.name)?.subscriptions.rpc === true);
  }

  it('an RPC request comes out as an event; its reply reaches the caller', async function () {
    const device = addDevice(emulator, 'rpc');
    const requests: InboundRpc[] = [];
    connections.current.on('rpc', (request) => {
      requests.push(request);
      void connections.current.replyRpc(request.deviceName, request.id, {
        opened: (request.params as { open: boolean }).open,
      });
    });
    await connected(device);
    const reply = await emulator.sendRpc(
      device.name,
      'setValve',
      { open: true },
      { timeoutMs: 3000 },
    );
    assert.deepEqual(reply, { opened: true });
    assert.equal(requests.length, 1);
    assert.equal(requests[0].deviceName, device.name);
    assert.equal(requests[0].method, 'setValve');
    assert.deepEqual(requests[0].params, { open: true });
    assert.equal(typeof requests[0].id, 'number');
  });

  it('an RPC sent before the device connected arrives once it subscribes', async function () {
    const device = addDevice(emulator, 'rpc-held');
    const requests: InboundRpc[] = [];
    connections.current.on('rpc', (request) => {
      requests.push(request);
      void connections.current.replyRpc(request.deviceName, request.id, 'done');
    });
    const reply = emulator.sendRpc(device.name, 'reboot', {}, { timeoutMs: 3000 });
    connections.current.open(device.name, device.login);
    assert.equal(await reply, 'done');
    assert.deepEqual(
      requests.map((request) => request.method),
      ['reboot'],
    );
  });

  it('shared-attribute updates and deletions come out as events', async function () {
    const device = addDevice(emulator, 'shared');
    const updates: SharedAttributesUpdate[] = [];
    connections.current.on('attributes', (update) => updates.push(update));
    await connected(device);
    await waitFor(
      'the attributes subscription',
      () => emulator.session(device.name)?.subscriptions.attributes === true,
    );
    assert.equal(emulator.updateSharedAttributes(device.name, { mode: 'eco', level: 3 }), 1);
    assert.equal(emulator.deleteSharedAttributes(device.name, ['mode']), 1);
    await waitFor('two updates', () => updates.length === 2);
    assert.deepEqual(updates, [
      { deviceName: device.name, data: { mode: 'eco', level: 3 } },
      { deviceName: device.name, data: { deleted: ['mode'] } },
    ]);
  });

  it('after the server closed the session, the reconnected one takes RPC again', async function () {
    const device = addDevice(emulator, 'rpc-again');
    connections.current.on('rpc', (request) => {
      void connections.current.replyRpc(request.deviceName, request.id, { n: request.params });
    });
    await connected(device);
    assert.deepEqual(await emulator.sendRpc(device.name, 'echo', 1, { timeoutMs: 3000 }), { n: 1 });
    assert.equal(emulator.closeSession(device.name), true);
    await waitFor('resubscribed', () => emulator.session(device.name)?.subscriptions.rpc === true);
    assert.deepEqual(await emulator.sendRpc(device.name, 'echo', 2, { timeoutMs: 3000 }), { n: 2 });
  });
});

describe('devices: a session taken over by another client', function () {
  let emulator: Emulator;
  before(async () => {
    emulator = await startEmulator();
  });
  after(() => emulator.stop());
  const connections = connectionsForEachTest(() => ({
    server: serverOf(emulator),
    ...FAST,
    random: () => 0.5,
  }));

  /** Another client as the same device that reconnects whenever it is closed, as a core mqtt node does. */
  function rival(device: TestDevice, protocolVersion: 4 | 5): () => Promise<void> {
    const mqtt = require('mqtt') as typeof import('mqtt');
    const client = mqtt.connect({
      host: '127.0.0.1',
      port: emulator.ports.mqtt,
      username: (device.login as { token: string }).token,
      protocolVersion,
      reconnectPeriod: 100,
    });
    client.on('error', () => undefined);
    return () => client.endAsync(true);
  }

  for (const protocolVersion of [5, 4] as const) {
    it(`MQTT ${protocolVersion === 5 ? '5 (DISCONNECT 0x8E)' : '3.1.1 (closed again and again)'}: backs off with growing waits and says so`, async function () {
      const c = connections.make({ protocolVersion });
      const device = addDevice(emulator, `takeover-v${protocolVersion}`);
      const changes: Array<SessionChange & { at: number }> = [];
      c.on('session', (change) => changes.push({ ...change, at: Date.now() }));
      c.open(device.name, device.login);
      await waitFor('connected', () => c.sessionState(device.name) === 'connected');
      const stopRival = rival(device, protocolVersion);
      try {
        await waitFor(
          'two take-overs',
          () => changes.filter((change) => change.state === 'taken-over').length >= 2,
          6000,
        );
        const startedAt = Date.now();
        await new Promise((resolve) => setTimeout(resolve, 1000));
        const connects = changes.filter(
          (change) => change.state === 'connected' && change.at >= startedAt,
        ).length;
        // The rival reconnects within 100 ms of every close; a session fighting back would too.
        assert.ok(connects <= 3, `reconnected ${connects} times in a second: fighting`);
      } finally {
        await stopRival();
      }
      const takeovers = changes.filter((change) => change.state === 'taken-over');
      const waits = takeovers.map((change) => change.retryInMs ?? 0);
      assert.ok(waits[0] >= 150, `first wait ${waits[0]} ms`);
      assert.ok(waits[1] > waits[0], `waits ${waits.join(', ')} do not grow`);
      assert.match(takeovers[0].reason ?? '', /Another client took over the session of device/);
      assert.doesNotMatch(JSON.stringify(changes), /token-takeover/);
      await waitFor(
        'back once the rival is gone',
        () => c.sessionState(device.name) === 'connected',
        5000,
      );
    });
  }
});
