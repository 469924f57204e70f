/**
 * device out when things go wrong on the way, on every transport: the link cut mid-stream, and a
 * redeploy with messages in flight. Every message ends in an output or at a Catch node, and the
 * server recorded the data of every output. No secret shows anywhere on the way.
 */

import assert from 'node:assert/strict';
import type { Emulator } from '../src/emulator';
import { defaultStorePath, deviceKey, openFileStore } from '../src/store';
import type { TransportName } from '../src/transports/types';
import { TRANSPORTS, delay } from './support/common';
import { tcpProxy } from './support/devices';
import {
  collectors,
  deviceFlow,
  send,
  statusesOf,
  telemetryOf,
  until,
} from './support/device-flows';
import type { DeviceFlowOptions } from './support/device-flows';
import {
  PROFILE,
  SECRET,
  keys,
  loadFlow,
  startEmulator,
  tearDown,
  tempUserDir,
} from './support/flows';
import type { Message } from './support/flows';
import { helper, onCall } from './support/node-red';
import { udpRelay } from './support/udp-relay';

/** What sits between the nodes and the emulator: a TCP proxy, or a UDP relay for CoAP. */
interface Link {
  port: number;
  /** Breaks the link: TCP connections destroyed, or CoAP datagrams lost for a while. */
  cut(): void;
  hold(): void;
  release(): void;
  close(): Promise<void>;
}

async function linkTo(emulator: Emulator, transport: TransportName): Promise<Link> {
  if (transport !== 'coap') return tcpProxy(emulator.ports[transport]);
  const relay = await udpRelay(emulator.ports.coap);
  return {
    port: relay.port,
    cut: () => {
      relay.drop();
      setTimeout(() => relay.restore(), 400);
    },
    hold: () => relay.hold(),
    release: () => relay.release(),
    close: () => relay.close(),
  };
}

function numbersOf(msgs: Message[]): number[] {
  return msgs.flatMap((msg) => {
    const n = (msg.payload as { n?: unknown } | undefined)?.n;
    return typeof n === 'number' ? [n] : [];
  });
}

/** Every output's data is on the server (some may be there twice: resent after a lost PUBACK). */
function assertRecorded(emulator: Emulator, device: string, outputs: Message[]): void {
  const recorded = new Set(
    numbersOf(telemetryOf(emulator, device).map((payload) => ({ payload }))),
  );
  for (const n of numbersOf(outputs)) assert.ok(recorded.has(n), `output ${n} not recorded`);
}

describe('device out: faults on the way', function () {
  this.timeout(40_000);
  let emulator: Emulator;
  let userDir: string;
  let link: Link | undefined;

  beforeEach(async function () {
    emulator = await startEmulator();
    userDir = tempUserDir();
  });

  afterEach(async function () {
    await helper.unload();
    await link?.close();
    link = undefined;
    await tearDown(emulator, userDir);
  });

  async function linkedFlow(transport: TransportName, out: Record<string, unknown> = {}) {
    link = await linkTo(emulator, transport);
    const options: DeviceFlowOptions = {
      config: { [`${transport}Port`]: link.port },
      out: { transport, timeout: 8, ...out },
    };
    await loadFlow(deviceFlow(emulator, options), keys(), userDir);
    return options;
  }

  /** Provisions the device over the emulator's own HTTP port and hands it to device out. */
  async function handOver(name: string, out: { waitFor(n: number): Promise<Message[]> }) {
    helper.getNode('prov').receive({ deviceName: name });
    await out.waitFor(1);
  }

  for (const transport of TRANSPORTS) {
    describe(`over ${transport}`, function () {
      it('a link cut mid-stream: each message ends in an output or a Catch, every output recorded', async function () {
        await linkedFlow(transport);
        const statuses = statusesOf('dev');
        const { out, caught } = collectors();
        const device = `cut-${transport}`;
        await handOver(device, out);
        for (let n = 0; n < 200; n++) send({ deviceName: device, payload: { n } });
        await until('some messages through', () => out.messages.length > 30, 10_000);
        (link as Link).cut();
        await until(
          'every message ended',
          () => out.messages.length - 1 + caught.messages.length === 200,
          30_000,
        );
        const outputs = out.messages.slice(1);
        assertRecorded(emulator, device, outputs);
        assert.ok(outputs.length > 30);
        for (const msg of caught.messages) {
          const status = (msg.thingsboard as Record<string, unknown>).status;
          assert.ok(status === 'CONNECTION_ERROR' || status === 'TIMEOUT', String(status));
        }
        if (transport === 'mqtt') {
          // QoS 1: what was written and not acknowledged goes out again after reconnecting.
          assert.equal(caught.messages.length, 0, 'none lost with QoS 1');
          assert.deepEqual(
            numbersOf(outputs).sort((a, b) => a - b),
            [...Array(200).keys()],
          );
          assert.ok(
            statuses.some((s) => s.fill === 'yellow' && s.text === 'reconnecting: 1 of 1'),
            'a yellow ring while reconnecting',
          );
          await until('back to green', () => statuses.at(-1)?.fill === 'green');
          assert.deepEqual(statuses.at(-1), { fill: 'green', shape: 'dot', text: '1 connected' });
        }
      });

      it('a redeploy with messages in flight: each ends in an output or a Catch', async function () {
        const options = await linkedFlow(transport);
        const warnings: string[] = [];
        onCall(helper.getNode('cfg'), 'warn', (args) => warnings.push(String(args[0])));
        const { out, caught } = collectors();
        const device = `redeploy-${transport}`;
        await handOver(device, out);
        if (transport === 'mqtt') {
          await until('the session', () => emulator.session(device) !== undefined);
        }
        (link as Link).hold();
        for (let n = 0; n < 50; n++) send({ deviceName: device, payload: { n } });
        await delay(200);
        // The server configuration changes: it and every node using it restart; the rest stays.
        const changed = deviceFlow(emulator, options).map((node) =>
          node.id === 'cfg' ? { ...node, name: 'emulator, renamed' } : node,
        );
        const redeployed = helper.setFlows(changed, 'nodes', keys());
        // Over MQTT 32 messages are written (the window) and 18 still wait: those are not sent.
        const queued = transport === 'mqtt' ? 18 : 0;
        await until('the waiting messages refused', () => caught.messages.length >= queued);
        await delay(100);
        (link as Link).release();
        await redeployed;
        await until(
          'every message ended',
          () => out.messages.length - 1 + caught.messages.length === 50,
          15_000,
        );
        const outputs = out.messages.slice(1);
        assertRecorded(emulator, device, outputs);
        assert.equal(outputs.length, 50 - queued, 'the written messages were acknowledged');
        for (const msg of caught.messages) {
          assert.equal((msg.thingsboard as Record<string, unknown>).status, 'CONNECTION_ERROR');
          assert.deepEqual(Object.keys(msg.payload as object), ['n'], 'payload left as it was');
        }
        if (queued > 0) {
          await until('the warning', () => warnings.length > 0);
          assert.equal(warnings.length, 1);
          assert.match(warnings[0], /^18 messages for devices were still waiting/);
        } else {
          assert.deepEqual(warnings, []);
        }
      });
    });
  }

  for (const transport of TRANSPORTS) {
    it(`over ${transport}: a redeploy while first-use provisioning is at the server keeps its credentials`, async function () {
      const options: DeviceFlowOptions = { out: { transport } };
      await loadFlow(deviceFlow(emulator, options), keys(), userDir);
      const { out, caught } = collectors();
      emulator.setFaults({ answerDelayMs: 400 });
      const device = `first-redeploy-${transport}`;
      send({ deviceName: device, payload: { n: 1 } });
      await until('the request at the server', () => emulator.requests.length === 1);
      const changed = deviceFlow(emulator, options).map((node) =>
        node.id === 'cfg' ? { ...node, name: 'emulator, renamed' } : node,
      );
      await helper.setFlows(changed, 'nodes', keys());
      await until('the message ended', () => out.messages.length + caught.messages.length === 1);
      // Its message could not be sent by the closing node: a Catch says so.
      assert.equal(caught.messages.length, 1);
      assert.equal(
        (caught.messages[0].thingsboard as Record<string, unknown>).status,
        'CONNECTION_ERROR',
      );

      // A request the node gave up on still creates the device.
      await until('the server created the device', () => emulator.device(device) !== undefined);
      const created = emulator.device(device);
      assert.ok(created);
      const store = openFileStore({ filePath: defaultStorePath(userDir) });
      try {
        await store.ready();
        const entry = await store.get(deviceKey(emulator.host, PROFILE.provisionDeviceKey, device));
        assert.ok(entry, 'created by the server but its credentials were lost');
        assert.equal(
          entry.answer.credentialsValue,
          created.credentials.credentialsType === 'ACCESS_TOKEN' && created.credentials.token,
        );
      } finally {
        await store.release();
      }
      // Sent again to the redeployed flow, it goes out as the kept device: no second request.
      send({ deviceName: device, payload: { n: 2 } });
      await out.waitFor(1);
      assert.equal(emulator.requests.length, 1);
    });
  }

  it('never shows a token or the provision secret in a status, log line or error', async function () {
    await loadFlow(deviceFlow(emulator), keys(), userDir);
    const texts: string[] = [];
    for (const id of ['cfg', 'prov', 'dev', 'din']) {
      for (const method of ['status', 'warn', 'error', 'log']) {
        onCall(helper.getNode(id), method, (args) => texts.push(JSON.stringify(args[0])));
      }
    }
    const { out, caught } = collectors();
    // Provisioned on first use, with a token the node generated.
    send({ deviceName: 'quiet-1', payload: { a: 1 } });
    await out.waitFor(1);
    const token = String((emulator.requests[0].body as Record<string, unknown>).token);
    // Refused: credentials handed over that the server does not know.
    const refused = 'refused-token-Zz81x';
    send({
      payload: {
        status: 'SUCCESS',
        deviceName: 'quiet-2',
        credentialsType: 'ACCESS_TOKEN',
        credentialsValue: refused,
      },
      thingsboard: { host: emulator.host, provisionedAt: new Date().toISOString() },
    });
    send({ deviceName: 'quiet-2', payload: { a: 2 } });
    await caught.waitFor(1);
    await delay(200);
    const logged = helper
      .log()
      .args.map((a: unknown[]) => JSON.stringify(a))
      .join('\n');
    const errors = caught.messages.map(
      (m) => `${m.error?.message} ${JSON.stringify(m.thingsboard)}`,
    );
    for (const secret of [SECRET, token, refused]) {
      const where = [...texts, logged, ...errors].find((text) => text.includes(secret));
      assert.equal(where, undefined, `secret shown: ${secret}`);
    }
  });
});
