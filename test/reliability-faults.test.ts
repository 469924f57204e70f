/**
 * The fault matrix through the provision node as a flow sees it: each server fault on each
 * transport ends in the contract's status at the Catch node (or the output), after exactly the
 * attempts configured, within the time the timeouts and the backoff allow, with nothing left open
 * and no unhandled rejection. Lost answers: recovered for device-chosen credentials, explained for
 * server-chosen ones.
 *
 * The emulator runs in a child process so the leak check counts the node's handles alone; bodies
 * the emulator cannot produce come from raw servers written here.
 */

import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import dns from 'node:dns';
import http from 'node:http';
import type net from 'node:net';
import * as coapPacket from 'coap-packet';
import * as mqttPacket from 'mqtt-packet';
import { DEFAULT_BACKOFF } from '../src/provisioner';
import type { TransportName } from '../src/transports';
import { Collector, PROFILE, SECRET, keys, loadFlow, provisionFlow, send } from './support/flows';
import type { Message } from './support/flows';
import { flowTarget, guardEachTest, oneWayOut } from './support/reliability';
import { TRANSPORTS } from './support/common';
import {
  HOST,
  closedTcpPort,
  closedUdpPort,
  rawTcpServer,
  rawUdpServer,
  serverSide,
  emulatorForSuite,
} from './support/transport-helpers';
import type { RemoteEmulator } from './support/transport-helpers';

type Status =
  | 'SUCCESS'
  | 'NOT_FOUND'
  | 'FAILURE'
  | 'TIMEOUT'
  | 'CONNECTION_ERROR'
  | 'PROTOCOL_ERROR'
  | 'INVALID_INPUT';

/** The longest the node's full-jitter backoff can wait in total before `retries` retries. */
function backoffCeiling(retries: number): number {
  let total = 0;
  for (let retry = 0; retry < retries; retry++) {
    total += Math.min(DEFAULT_BACKOFF.maxMs, DEFAULT_BACKOFF.baseMs * 2 ** retry);
  }
  return total;
}

/** Scheduling slack on a loaded 2-core machine running other suites at the same time. */
const SLACK_MS = 1500;
const TEN_MB = 10 * 1024 * 1024;

let nameCounter = 0;
function deviceName(label: string): string {
  nameCounter += 1;
  return `fault-${label}-${process.pid}-${nameCounter}`.replace(/[^A-Za-z0-9-]/g, '-');
}

/** Where the node is pointed, and how many requests (attempts) reached that place. */
interface Scene {
  config: Record<string, unknown>;
  attempts(): Promise<number>;
  close(): Promise<void>;
}

interface Outcome {
  status: Status;
  msg: Message;
  tookMs: number;
}

describe('reliability: the fault matrix through the provision node', function () {
  this.timeout(30_000);
  let emulator: RemoteEmulator;
  const guard = guardEachTest();
  emulatorForSuite((e) => (emulator = e), { profiles: [PROFILE] }, { clearFaults: true });

  /** Runs one message through the node and waits for its output or its Catch. */
  async function provisionOnce(
    props: Record<string, unknown>,
    config: Record<string, unknown>,
    msg: Record<string, unknown>,
  ): Promise<Outcome> {
    await loadFlow(provisionFlow(flowTarget(emulator), props, config), keys(), guard.userDir);
    const { msg: received, via, tookMs } = await oneWayOut(msg);
    const payload = received.payload as { status: Status };
    assert.equal(via === 'out', payload.status === 'SUCCESS', 'SUCCESS on the output only');
    return { status: payload.status, msg: received, tookMs };
  }

  function assertCaught(outcome: Outcome, status: Status, name: string, text?: RegExp): void {
    assert.equal(outcome.status, status, String(outcome.msg.error?.message));
    const payload = outcome.msg.payload as Record<string, unknown>;
    assert.deepEqual(Object.keys(payload).sort(), ['deviceName', 'errorMsg', 'status']);
    assert.equal(payload.deviceName, name);
    assert.equal(typeof payload.errorMsg, 'string');
    assert.ok(outcome.msg.error?.message.includes(status), outcome.msg.error?.message);
    if (text) assert.match(String(payload.errorMsg), text);
    const visible = `${String(payload.errorMsg)}\n${outcome.msg.error?.message ?? ''}`;
    assert.ok(!visible.includes(SECRET), 'the provision secret is not in the error');
  }

  function assertWithin(tookMs: number, minMs: number, maxMs: number): void {
    assert.ok(tookMs >= minMs, `took ${tookMs} ms, expected at least ${minMs} ms`);
    assert.ok(tookMs <= maxMs, `took ${tookMs} ms, expected at most ${maxMs} ms`);
  }

  // ---------------------------------------------------------------------------------------------
  // Scenes: where the node is pointed and who counts the attempts.

  /** The emulator with faults; attempts are the requests it recorded for this device. */
  async function emulatorScene(
    faults: Parameters<RemoteEmulator['setFaults']>[0],
    name: string,
  ): Promise<Scene> {
    await emulator.setFaults(faults);
    return {
      config: {},
      attempts: async () =>
        (await emulator.requests()).filter(
          (r) => (r.body as { deviceName?: string } | undefined)?.deviceName === name,
        ).length,
      close: async () => undefined,
    };
  }

  /** A port nothing listens on; attempts are the client sockets the node opened to it. */
  async function refusingScene(transport: TransportName): Promise<Scene> {
    const port = transport === 'coap' ? await closedUdpPort() : await closedTcpPort();
    const channel = transport === 'coap' ? 'udp.socket' : 'net.client.socket';
    let opened = 0;
    const onSocket = (): void => {
      opened += 1;
    };
    diagnostics.subscribe(channel, onSocket);
    return {
      config: { [`${transport}Port`]: port },
      attempts: async () => opened,
      close: async () => {
        diagnostics.unsubscribe(channel, onSocket);
      },
    };
  }

  /** A host name that does not resolve; attempts are the look-ups made for it. */
  function unresolvableScene(): Scene {
    const host = 'nonexistent.invalid';
    let lookups = 0;
    const original = { lookup: dns.lookup, promises: dns.promises.lookup };
    const countedLookup = ((hostname: string, ...rest: unknown[]) => {
      if (hostname === host) lookups += 1;
      return (original.lookup as (...args: unknown[]) => unknown)(hostname, ...rest);
    }) as typeof dns.lookup;
    dns.lookup = countedLookup;
    dns.promises.lookup = ((hostname: string, ...rest: unknown[]) => {
      if (hostname === host) lookups += 1;
      return (original.promises as (...args: unknown[]) => unknown)(hostname, ...rest);
    }) as typeof dns.promises.lookup;
    return {
      config: { host },
      attempts: async () => lookups,
      close: async () => {
        dns.lookup = original.lookup;
        dns.promises.lookup = original.promises;
      },
    };
  }

  /** A raw server on `transport` that answers every provisioning request with `body`. */
  async function rawAnswerScene(transport: TransportName, body: Buffer): Promise<Scene> {
    if (transport === 'mqtt') return rawMqttScene(body);
    if (transport === 'http') return rawHttpScene(body);
    return rawCoapScene(body);
  }

  async function rawMqttScene(body: Buffer): Promise<Scene> {
    let requests = 0;
    const server = await rawTcpServer((socket) => {
      const parser = mqttPacket.parser({ protocolVersion: 4 });
      const reply = (packet: mqttPacket.Packet): void => {
        if (!socket.destroyed) socket.write(mqttPacket.generate(packet));
      };
      parser.on('packet', (packet) => {
        if (packet.cmd === 'connect')
          reply({ cmd: 'connack', returnCode: 0, sessionPresent: false });
        if (packet.cmd === 'subscribe') {
          reply({ cmd: 'suback', messageId: packet.messageId, granted: [1] });
        }
        if (packet.cmd === 'publish' && packet.topic === '/provision/request') {
          requests += 1;
          reply({ cmd: 'puback', messageId: packet.messageId });
          reply({
            cmd: 'publish',
            topic: '/provision/response',
            payload: body,
            qos: 0,
            dup: false,
            retain: false,
          });
        }
      });
      socket.on('data', (chunk: Buffer) => parser.parse(chunk));
    });
    return {
      config: { mqttPort: server.port },
      attempts: async () => requests,
      close: () => server.close(),
    };
  }

  async function rawHttpScene(body: Buffer): Promise<Scene> {
    let requests = 0;
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.method === 'POST' && req.url === '/api/v1/provision') requests += 1;
        res.on('error', () => undefined);
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(body);
      });
    });
    const retire = serverSide(server);
    await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
    return {
      config: { httpPort: (server.address() as net.AddressInfo).port },
      attempts: async () => requests,
      close: async () => retire(),
    };
  }

  /** Answers 2.01 piggy-backed; bodies over one datagram go block-wise (Block2, 1024 bytes). */
  async function rawCoapScene(body: Buffer): Promise<Scene> {
    const BLOCK = 1024;
    const seen = new Set<string>();
    let requests = 0;
    const server = await rawUdpServer((message, remote, socket) => {
      const request = coapPacket.parse(message);
      if (request.code === '0.00') return;
      const asked = request.options.find((option) => option.name === 'Block2');
      let num = 0;
      if (asked !== undefined) {
        for (const byte of asked.value) num = num * 256 + byte;
        num >>= 4;
      }
      const key = `${remote.port}/${request.messageId}`;
      if (num === 0 && !seen.has(key)) requests += 1;
      seen.add(key);
      const options: coapPacket.Option[] = [{ name: 'Content-Format', value: Buffer.from([0]) }];
      let payload = body;
      if (body.length > BLOCK) {
        payload = body.subarray(num * BLOCK, (num + 1) * BLOCK);
        const more = (num + 1) * BLOCK < body.length ? 0x08 : 0;
        // Block2 option: NUM, M, SZX = 6 (1024 bytes).
        const value = (num << 4) | more | 6;
        options.push({
          name: 'Block2',
          value: Buffer.from([(value >> 16) & 0xff, (value >> 8) & 0xff, value & 0xff]),
        });
      }
      const reply = coapPacket.generate({
        messageId: request.messageId,
        token: request.token,
        code: '2.01',
        ack: true,
        options,
        payload,
      });
      socket.send(reply, remote.port, remote.address);
    });
    return {
      config: { coapPort: server.port },
      attempts: async () => requests,
      close: () => server.close(),
    };
  }

  // ---------------------------------------------------------------------------------------------

  for (const transport of TRANSPORTS) {
    describe(`over ${transport}`, function () {
      const base = { transport, credentialsType: 'server' };

      it('refused connection: CONNECTION_ERROR after 1 + retries attempts, promptly', async function () {
        const retries = 1;
        const scene = await refusingScene(transport);
        const name = deviceName('refused');
        try {
          const outcome = await provisionOnce({ ...base, retries, timeout: 5 }, scene.config, {
            deviceName: name,
          });
          assertCaught(outcome, 'CONNECTION_ERROR', name, /refused/);
          assert.equal(await scene.attempts(), 1 + retries);
          // Never waits for the 5 s timeout: refusals are heard at once, only backoff is spent.
          assertWithin(outcome.tookMs, 0, backoffCeiling(retries) + SLACK_MS);
        } finally {
          await scene.close();
        }
      });

      it('accepts but never answers: TIMEOUT after each attempt timed out, then backoff', async function () {
        const retries = 1;
        const timeoutMs = 400;
        const name = deviceName('silent');
        const scene = await emulatorScene({ neverAnswerFirst: 100 }, name);
        const outcome = await provisionOnce(
          { ...base, retries, timeout: timeoutMs / 1000 },
          scene.config,
          { deviceName: name },
        );
        assertCaught(outcome, 'TIMEOUT', name);
        assert.equal(await scene.attempts(), 1 + retries);
        const attempts = 1 + retries;
        assertWithin(
          outcome.tookMs,
          attempts * timeoutMs - 20,
          attempts * timeoutMs + backoffCeiling(retries) + SLACK_MS,
        );
      });

      it('closes without answering: transient, retried, then the last error', async function () {
        const retries = 1;
        const timeoutMs = 400;
        const name = deviceName('closed');
        const scene = await emulatorScene({ closeWithoutAnswerFirst: 100 }, name);
        const outcome = await provisionOnce(
          { ...base, retries, timeout: timeoutMs / 1000 },
          scene.config,
          { deviceName: name },
        );
        // Over UDP the emulator drops the request silently: only the timeout can tell.
        if (transport === 'coap') assertCaught(outcome, 'TIMEOUT', name);
        else assertCaught(outcome, 'CONNECTION_ERROR', name, /may have reached the server/);
        assert.equal(await scene.attempts(), 1 + retries);
        const floor = transport === 'coap' ? (1 + retries) * timeoutMs - 20 : 0;
        const waited = transport === 'coap' ? (1 + retries) * timeoutMs : 0;
        assertWithin(outcome.tookMs, floor, waited + backoffCeiling(retries) + SLACK_MS);
      });

      it('a slow answer (800 ms; CoAP: separate response) is waited for: SUCCESS, one request', async function () {
        const name = deviceName('slow');
        const scene = await emulatorScene({ answerDelayMs: 800 }, name);
        const outcome = await provisionOnce({ ...base, retries: 2, timeout: 3 }, scene.config, {
          deviceName: name,
        });
        assert.equal(outcome.status, 'SUCCESS', String(outcome.msg.error?.message));
        assert.equal(await scene.attempts(), 1);
        assertWithin(outcome.tookMs, 780, 800 + SLACK_MS);
        const device = await emulator.device(name);
        assert.equal(
          (outcome.msg.payload as Record<string, unknown>).credentialsValue,
          device?.credentials.credentialsType === 'ACCESS_TOKEN' && device.credentials.token,
        );
      });

      it('internal errors for the first 2 with 2 retries: SUCCESS on the third request', async function () {
        const retries = 2;
        const name = deviceName('5xx-ok');
        const scene = await emulatorScene({ internalErrorFirst: 2 }, name);
        const outcome = await provisionOnce({ ...base, retries, timeout: 3 }, scene.config, {
          deviceName: name,
        });
        assert.equal(outcome.status, 'SUCCESS', String(outcome.msg.error?.message));
        assert.equal(await scene.attempts(), 3);
        assertWithin(outcome.tookMs, 0, backoffCeiling(retries) + SLACK_MS);
      });

      it('internal errors beyond the retries: the last error after exactly 1 + retries', async function () {
        const retries = 1;
        const name = deviceName('5xx-fail');
        const scene = await emulatorScene({ internalErrorFirst: 100 }, name);
        const outcome = await provisionOnce({ ...base, retries, timeout: 3 }, scene.config, {
          deviceName: name,
        });
        // MQTT has no error code: ThingsBoard acknowledges and closes, a lost connection.
        if (transport === 'mqtt') assertCaught(outcome, 'CONNECTION_ERROR', name);
        else {
          assertCaught(
            outcome,
            'PROTOCOL_ERROR',
            name,
            transport === 'http' ? /HTTP 500/ : /CoAP 5\.00/,
          );
        }
        assert.equal(await scene.attempts(), 1 + retries);
        assertWithin(outcome.tookMs, 0, backoffCeiling(retries) + SLACK_MS);
      });

      const malformed: Array<[string, Buffer, RegExp]> = [
        ['not JSON', Buffer.from('<html><body>502 Bad Gateway</body></html>'), /not JSON/],
        ['JSON that is not an object', Buffer.from('["SUCCESS"]'), /not a JSON object/],
        [
          'no status',
          Buffer.from('{"credentialsValue":"abc","credentialsType":"ACCESS_TOKEN"}'),
          /no status/,
        ],
        ['an unknown status', Buffer.from('{"status":"PENDING"}'), /status is "PENDING"/],
        [
          'a credentialsValue of the wrong type',
          Buffer.from(
            '{"credentialsValue":42,"credentialsType":"ACCESS_TOKEN","status":"SUCCESS"}',
          ),
          /credentialsValue/,
        ],
        ['a body of 10 MB', Buffer.alloc(TEN_MB, 0x7b), /more than 1048576 bytes/],
      ];
      for (const [label, body, text] of malformed) {
        it(`an answer with ${label}: PROTOCOL_ERROR, not retried`, async function () {
          const scene = await rawAnswerScene(transport, body);
          const name = deviceName('malformed');
          try {
            const outcome = await provisionOnce({ ...base, retries: 2, timeout: 5 }, scene.config, {
              deviceName: name,
            });
            assertCaught(outcome, 'PROTOCOL_ERROR', name, text);
            assert.equal(await scene.attempts(), 1, 'a malformed answer is not retried');
            assertWithin(outcome.tookMs, 0, (body.length > 1e6 ? 3000 : 500) + SLACK_MS);
            // The body is described, never echoed.
            assert.ok(
              !String((outcome.msg.payload as Record<string, unknown>).errorMsg).includes('abc'),
            );
          } finally {
            await scene.close();
          }
        });
      }

      it('a host name that does not resolve: CONNECTION_ERROR after 1 + retries look-ups', async function () {
        const retries = 1;
        const scene = unresolvableScene();
        const name = deviceName('dns');
        try {
          const outcome = await provisionOnce({ ...base, retries, timeout: 3 }, scene.config, {
            deviceName: name,
          });
          assertCaught(outcome, 'CONNECTION_ERROR', name, /nonexistent\.invalid" does not resolve/);
          assert.equal(await scene.attempts(), 1 + retries);
          assertWithin(outcome.tookMs, 0, backoffCeiling(retries) + 2 * 1000 + SLACK_MS);
        } finally {
          await scene.close();
        }
      });
    });
  }

  it('MQTT server that never sends SUBACK (before November 2024): SUCCESS, one request', async function () {
    const name = deviceName('no-suback');
    const scene = await emulatorScene({ noSuback: true }, name);
    const outcome = await provisionOnce(
      { transport: 'mqtt', retries: 2, timeout: 3 },
      scene.config,
      { deviceName: name },
    );
    assert.equal(outcome.status, 'SUCCESS', String(outcome.msg.error?.message));
    assert.equal(await scene.attempts(), 1);
    assertWithin(outcome.tookMs, 0, SLACK_MS);
  });

  describe('lost answers (the device was created, the answer never came back)', function () {
    const deviceChosen: Array<[TransportName, 'ACCESS_TOKEN' | 'MQTT_BASIC']> = [
      ['mqtt', 'ACCESS_TOKEN'],
      ['http', 'ACCESS_TOKEN'],
      ['coap', 'ACCESS_TOKEN'],
      ['mqtt', 'MQTT_BASIC'],
      // MQTT basic credentials can only be checked by an MQTT login, on the config's MQTT port.
      ['http', 'MQTT_BASIC'],
      ['coap', 'MQTT_BASIC'],
    ];
    for (const [transport, credentialsType] of deviceChosen) {
      it(`${credentialsType} chosen by the node, over ${transport}: recovered, SUCCESS, stored`, async function () {
        const name = deviceName(`lost-${credentialsType}`);
        const scene = await emulatorScene({ loseAnswerFirst: 1 }, name);
        const outcome = await provisionOnce(
          { transport, credentialsType, retries: 1, timeout: 0.5 },
          scene.config,
          { deviceName: name },
        );
        assert.equal(outcome.status, 'SUCCESS', String(outcome.msg.error?.message));
        // The lost one, then the retry the server refused as a duplicate.
        assert.equal(await scene.attempts(), 2);
        const device = await emulator.device(name);
        assert.ok(device, 'the first attempt created the device');
        const payload = outcome.msg.payload as Record<string, unknown>;
        assert.equal(payload.credentialsType, credentialsType);
        if (device.credentials.credentialsType === 'ACCESS_TOKEN') {
          assert.equal(payload.credentialsValue, device.credentials.token);
        } else {
          const { clientId, userName, password } = device.credentials as Record<string, string>;
          assert.deepEqual(payload.credentialsValue, { clientId, userName, password });
        }
        // Kept like any other answer: the next message for the device comes from the store.
        const out = new Collector('out');
        send({ deviceName: name });
        const [again] = await out.waitFor(1);
        assert.equal((again.thingsboard as Record<string, unknown>).cached, true);
        assert.deepEqual(
          (again.payload as Record<string, unknown>).credentialsValue,
          payload.credentialsValue,
        );
        assert.equal(await scene.attempts(), 2);
      });
    }

    for (const transport of TRANSPORTS) {
      it(`credentials chosen by the server, over ${transport}: FAILURE that says what happened and what to do`, async function () {
        const name = deviceName('lost-server');
        const scene = await emulatorScene({ loseAnswerFirst: 1 }, name);
        const outcome = await provisionOnce(
          { transport, credentialsType: 'server', retries: 1, timeout: 0.5 },
          scene.config,
          { deviceName: name },
        );
        assertCaught(outcome, 'FAILURE', name);
        const text = String((outcome.msg.payload as Record<string, unknown>).errorMsg);
        assert.match(text, /earlier attempt probably created device/);
        assert.match(text, /answer was lost/);
        assert.match(text, /delete the device in ThingsBoard/);
        assert.match(text, /copy its credentials from the device in ThingsBoard/);
        assert.match(text, /ACCESS_TOKEN/);
        assert.equal(await scene.attempts(), 2);
        assert.ok(await emulator.device(name), 'the device exists on the server');
      });
    }

    it('a certificate chosen by the node cannot be checked: FAILURE that says so and how to recover', async function () {
      const name = deviceName('lost-x509');
      const scene = await emulatorScene({ loseAnswerFirst: 1 }, name);
      const outcome = await provisionOnce(
        { transport: 'http', credentialsType: 'X509_CERTIFICATE', retries: 1, timeout: 0.5 },
        scene.config,
        { deviceName: name },
      );
      assertCaught(outcome, 'FAILURE', name, /cannot check a certificate/);
      const text = String((outcome.msg.payload as Record<string, unknown>).errorMsg);
      assert.match(text, /delete the device in ThingsBoard/);
      assert.ok(!text.includes('PRIVATE KEY'));
      assert.equal(await scene.attempts(), 2);
    });

    it('an answer lost with retries 0 is not retried: the transient error, nothing recovered', async function () {
      const name = deviceName('lost-no-retry');
      const scene = await emulatorScene({ loseAnswerFirst: 1 }, name);
      const outcome = await provisionOnce(
        { transport: 'http', credentialsType: 'ACCESS_TOKEN', retries: 0, timeout: 0.5 },
        scene.config,
        { deviceName: name },
      );
      assertCaught(outcome, 'CONNECTION_ERROR', name, /may have reached the server/);
      assert.equal(await scene.attempts(), 1);
    });
  });
});
