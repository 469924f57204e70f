/** Test faults on every transport, the request statistics, the log, and a clean stop(). */

import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { Emulator } from '../src/emulator';
import type { EmulatorOptions, FaultSpec } from '../src/emulator/types';
import type { TransportName } from '../src/transports/types';
import { TRANSPORTS, delay } from './support/common';
import {
  CREATE,
  FAILURE,
  PRE,
  RawCoapPeer,
  RawMqttClient,
  activeResources,
  assertNoNewResources,
  httpRequest,
  provisionOverCoap,
  provisionOverHttp,
  provisionOverMqtt,
  request,
  startEmulator,
} from './support/emulator-clients';

/** What a client saw within `waitMs`: an answer body, a code without one, a close, or nothing. */
type Seen =
  | { kind: 'answer'; body: string }
  | { kind: 'error-code'; code: string }
  | { kind: 'closed' }
  | { kind: 'nothing' };

async function attempt(
  transport: TransportName,
  emulator: Emulator,
  body: string,
  waitMs = 1500,
): Promise<Seen> {
  switch (transport) {
    case 'mqtt': {
      const client = await RawMqttClient.provisionSession(emulator.ports.mqtt, 5);
      try {
        client.publish('/provision/request', body, 1);
        const first = await client.next(waitMs).catch(() => undefined);
        if (first === undefined) return { kind: 'nothing' };
        if (first.cmd === 'closed') return { kind: 'closed' };
        assert.equal(first.cmd, 'puback');
        const second = await client.next(waitMs);
        if (second.cmd === 'closed') {
          return { kind: 'error-code', code: `puback 0x${(first.reasonCode ?? 0).toString(16)}` };
        }
        assert.equal(second.cmd, 'publish');
        return { kind: 'answer', body: Buffer.from(second.payload).toString() };
      } finally {
        client.destroy();
        await client.closed;
      }
    }
    case 'http': {
      const giveUp = new AbortController();
      const timer = setTimeout(() => giveUp.abort(), waitMs);
      try {
        const reply = await provisionOverHttp(emulator.ports.http, body, giveUp.signal);
        if (reply.status === 200) return { kind: 'answer', body: reply.body };
        return {
          kind: 'error-code',
          code: `${reply.status} ${reply.body === '' ? 'empty' : 'body'}`,
        };
      } catch {
        return giveUp.signal.aborted ? { kind: 'nothing' } : { kind: 'closed' };
      } finally {
        clearTimeout(timer);
      }
    }
    case 'coap': {
      const peer = await RawCoapPeer.open();
      try {
        peer.post(emulator.ports.coap, '/api/v1/provision', body, {
          confirmable: true,
          messageId: Math.floor(Math.random() * 60000),
        });
        const response = await peer.response(waitMs);
        if (response === undefined) return { kind: 'nothing' };
        const payload = response.payload.toString();
        if (response.code === '2.01' || payload !== '') return { kind: 'answer', body: payload };
        return { kind: 'error-code', code: `${response.code} empty` };
      } finally {
        await peer.close();
      }
    }
  }
}

describe('emulator faults', () => {
  let emulator: Emulator;

  async function restart(options: EmulatorOptions = {}): Promise<void> {
    await emulator.stop();
    emulator = await startEmulator(options);
  }

  beforeEach(async () => {
    emulator = await startEmulator();
  });

  afterEach(() => emulator.stop());

  for (const transport of TRANSPORTS) {
    describe(`over ${transport}`, () => {
      it('closeWithoutAnswerFirst: no answer, no device; the next request is answered', async () => {
        emulator.setFaults({ closeWithoutAnswerFirst: 1 });
        const first = await attempt(transport, emulator, request(CREATE, { deviceName: 'd' }), 700);
        // CoAP has no connection: the request is dropped without even an empty ACK.
        assert.deepEqual(first, { kind: transport === 'coap' ? 'nothing' : 'closed' });
        assert.equal(emulator.device('d'), undefined);
        const second = await attempt(transport, emulator, request(CREATE, { deviceName: 'd' }));
        assert.equal(second.kind, 'answer');
        assert.ok(emulator.device('d'));
        assert.equal(emulator.requests[0].outcome, 'closed without answer (fault)');
        assert.equal(emulator.requests[1].outcome, 'SUCCESS');
      });

      it('internalErrorFirst: the transport error, no device', async () => {
        emulator.setFaults({ internalErrorFirst: 1 });
        const first = await attempt(transport, emulator, request(CREATE, { deviceName: 'd' }));
        const expected = { mqtt: 'puback 0x83', http: '500 empty', coap: '5.00 empty' }[transport];
        assert.deepEqual(first, { kind: 'error-code', code: expected });
        assert.equal(emulator.device('d'), undefined);
        assert.equal(
          (await attempt(transport, emulator, request(CREATE, { deviceName: 'd' }))).kind,
          'answer',
        );
      });

      it('loseAnswerFirst: the device IS created, the answer lost; a retry then fails', async () => {
        emulator.setFaults({ loseAnswerFirst: 1 });
        const first = await attempt(transport, emulator, request(CREATE, { deviceName: 'd' }), 700);
        assert.deepEqual(first, { kind: transport === 'coap' ? 'nothing' : 'closed' });
        assert.ok(emulator.device('d'), 'created although the answer was lost');
        const retry = await attempt(transport, emulator, request(CREATE, { deviceName: 'd' }));
        assert.deepEqual(retry, { kind: 'answer', body: FAILURE });
        assert.equal(emulator.requests[0].outcome, 'SUCCESS, answer lost (fault)');
      });

      it('neverAnswerFirst: accepted and held (in flight) until the client leaves or stop()', async () => {
        emulator.setFaults({ neverAnswerFirst: 1 });
        const first = await attempt(transport, emulator, request(CREATE, { deviceName: 'd' }), 900);
        assert.deepEqual(first, { kind: 'nothing' });
        assert.equal(emulator.device('d'), undefined);
        assert.equal(emulator.requests[0].outcome, 'never answered (fault)');
        await delay(50);
        // MQTT and HTTP clients have gone, releasing it; a CoAP exchange has no end to notice.
        assert.equal(emulator.inFlight, transport === 'coap' ? 1 : 0);
        assert.equal(
          (await attempt(transport, emulator, request(CREATE, { deviceName: 'd' }))).kind,
          'answer',
        );
      });

      it('a delay reaching the server timeout: internal error at the timeout, the device created later', async () => {
        await restart({ provisionTimeoutMs: 300, faults: { answerDelayMs: 700 } });
        const started = Date.now();
        const seen = await attempt(transport, emulator, request(CREATE, { deviceName: 'late' }));
        const expected = { mqtt: 'puback 0x83', http: '500 empty', coap: '5.00 empty' }[transport];
        assert.deepEqual(seen, { kind: 'error-code', code: expected });
        const elapsed = Date.now() - started;
        assert.ok(elapsed >= 290, `answered at the timeout (${elapsed} ms)`);
        assert.equal(emulator.device('late'), undefined, 'answered before the delay ended');
        await delay(Math.max(0, 700 - elapsed) + 100);
        assert.ok(emulator.device('late'), 'created once the delay ended');
        assert.equal(emulator.requests[0].outcome, 'internal error (server timeout), then SUCCESS');
      });

      it('answerDelayMs: every answer waits that long', async () => {
        emulator.setFaults({ answerDelayMs: 300 });
        const started = Date.now();
        const seen = await attempt(transport, emulator, request(CREATE, { deviceName: 'd' }), 1500);
        assert.equal(seen.kind, 'answer');
        assert.ok(Date.now() - started >= 300);
      });
    });
  }

  it('faults take turns and are counted across transports', async () => {
    emulator.setFaults({ closeWithoutAnswerFirst: 1, internalErrorFirst: 1, loseAnswerFirst: 1 });
    assert.equal(
      (await attempt('http', emulator, request(CREATE, { deviceName: 'a' }))).kind,
      'closed',
    );
    assert.deepEqual(await attempt('coap', emulator, request(CREATE, { deviceName: 'a' })), {
      kind: 'error-code',
      code: '5.00 empty',
    });
    assert.equal(
      (await attempt('mqtt', emulator, request(CREATE, { deviceName: 'a' }))).kind,
      'closed',
    );
    assert.ok(emulator.device('a'), 'the third (lost answer) created the device');
    const fourth = await attempt('http', emulator, request(CREATE, { deviceName: 'b' }));
    assert.equal(fourth.kind, 'answer');
    assert.match(fourth.kind === 'answer' ? fourth.body : '', /"status":"SUCCESS"/);
  });

  it('setFaults replaces the faults and restarts their counts', async () => {
    emulator.setFaults({ internalErrorFirst: 1 });
    assert.equal(
      (await provisionOverHttp(emulator.ports.http, request(CREATE, { deviceName: 'a' }))).status,
      500,
    );
    emulator.setFaults({ internalErrorFirst: 1 });
    assert.equal(
      (await provisionOverHttp(emulator.ports.http, request(CREATE, { deviceName: 'a' }))).status,
      500,
    );
    emulator.setFaults({});
    assert.equal(
      (await provisionOverHttp(emulator.ports.http, request(CREATE, { deviceName: 'a' }))).status,
      200,
    );
  });

  it('malformed requests do not use up a fault', async () => {
    emulator.setFaults({ internalErrorFirst: 1 });
    const malformed = await provisionOverHttp(emulator.ports.http, '{"deviceName":"x"}');
    assert.notEqual(malformed.body, '');
    assert.equal((await provisionOverHttp(emulator.ports.http, request(CREATE))).body, '');
  });

  it('faults never touch the device API', async () => {
    emulator.addDevice({
      name: 'dev',
      profile: PRE.name,
      credentials: { credentialsType: 'ACCESS_TOKEN', token: 'dev-token' },
    });
    emulator.setFaults({
      internalErrorFirst: 5,
      answerDelayMs: 2000,
    } satisfies FaultSpec);
    const started = Date.now();
    const reply = await httpRequest(emulator.ports.http, '/api/v1/dev-token/telemetry', {
      body: '{"x":1}',
    });
    assert.equal(reply.status, 200);
    assert.ok(Date.now() - started < 1000);
    const { client, connack } = await RawMqttClient.connect(emulator.ports.mqtt, {
      username: 'dev-token',
    });
    assert.equal(connack.cmd === 'connack' && connack.returnCode, 0);
    client.destroy();
    assert.equal(emulator.requests.length, 0);
  });

  it('maxConcurrent counts requests handled at once across transports, delays included', async () => {
    emulator.setFaults({ answerDelayMs: 800 });
    const all = Promise.all([
      provisionOverHttp(emulator.ports.http, request(CREATE, { deviceName: 'h1' })),
      provisionOverHttp(emulator.ports.http, request(CREATE, { deviceName: 'h2' })),
      provisionOverMqtt(emulator.ports.mqtt, request(CREATE, { deviceName: 'm1' })),
      provisionOverCoap(emulator.ports.coap, request(CREATE, { deviceName: 'c1' })),
    ]);
    await delay(400);
    assert.equal(emulator.inFlight, 4);
    await all;
    assert.equal(emulator.maxConcurrent, 4);
    assert.equal(emulator.inFlight, 0);
    await provisionOverHttp(emulator.ports.http, request(CREATE, { deviceName: 'h3' }));
    assert.equal(emulator.maxConcurrent, 4);
    emulator.resetStats();
    assert.equal(emulator.maxConcurrent, 0);
    assert.equal(emulator.requests.length, 0);
    await provisionOverHttp(emulator.ports.http, request(CREATE, { deviceName: 'h4' }));
    assert.equal(emulator.maxConcurrent, 1);
    assert.equal(emulator.requests.length, 1);
    const [recorded] = emulator.requests;
    assert.equal(recorded.transport, 'http');
    assert.equal(recorded.outcome, 'SUCCESS');
    assert.deepEqual(recorded.body, JSON.parse(request(CREATE, { deviceName: 'h4' })));
  });

  it('stop() releases held requests and leaves no handle behind', async () => {
    await emulator.stop();
    const before = await activeResources();
    emulator = await startEmulator({ faults: { neverAnswerFirst: 3 } });
    // One held request per transport, one delayed one, an idle keep-alive and a device session.
    const mqtt = await RawMqttClient.provisionSession(emulator.ports.mqtt);
    mqtt.publish('/provision/request', request(CREATE, { deviceName: 'm' }), 1);
    const heldHttp = provisionOverHttp(
      emulator.ports.http,
      request(CREATE, { deviceName: 'h' }),
    ).then(
      () => 'answered',
      () => 'closed',
    );
    const peer = await RawCoapPeer.open();
    peer.post(emulator.ports.coap, '/api/v1/provision', request(CREATE, { deviceName: 'c' }), {
      confirmable: true,
      messageId: 1,
    });
    await delay(100);
    emulator.setFaults({ answerDelayMs: 5000 });
    const delayed = await RawMqttClient.provisionSession(emulator.ports.mqtt);
    delayed.publish('/provision/request', request(CREATE, { deviceName: 'late' }), 1);
    const agent = new http.Agent({ keepAlive: true });
    await new Promise<void>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: emulator.ports.http, path: '/nothing', agent }, (res) => {
          res.resume();
          res.on('end', resolve);
        })
        .on('error', reject);
    });
    emulator.addDevice({
      name: 'dev',
      profile: PRE.name,
      credentials: { credentialsType: 'ACCESS_TOKEN', token: 'dev-token' },
    });
    const device = await RawMqttClient.connect(emulator.ports.mqtt, { username: 'dev-token' });
    await delay(100);
    assert.equal(emulator.inFlight, 4);

    const stopping = Date.now();
    await emulator.stop();
    assert.ok(Date.now() - stopping < 1000, 'stop() does not wait for anyone');
    await Promise.all([mqtt.closed, delayed.closed, device.client.closed]);
    assert.equal(await heldHttp, 'closed');
    await peer.close();
    agent.destroy();
    await assertNoNewResources(before);
  });

  it('a second stop() is harmless', async () => {
    await emulator.stop();
    await emulator.stop();
  });

  it('the log has one line per request and never a secret, token, password or certificate', async () => {
    const lines: string[] = [];
    await restart({ log: (line) => lines.push(line) });
    const cert = 'MIIBszCCAVmgAwIBAgIUSecretCertificateBody';
    await provisionOverHttp(
      emulator.ports.http,
      request(CREATE, { deviceName: 'pump-1', token: 'token-value-1' }),
    );
    await provisionOverMqtt(
      emulator.ports.mqtt,
      request(CREATE, {
        deviceName: 'pump-2',
        credentialsType: 'MQTT_BASIC',
        clientId: 'client-value',
        username: 'user-value',
        password: 'password-value',
      }),
    );
    await provisionOverCoap(
      emulator.ports.coap,
      request(CREATE, { deviceName: 'pump-3', credentialsType: 'X509_CERTIFICATE', hash: cert }),
    );
    await provisionOverHttp(
      emulator.ports.http,
      request({ ...CREATE, provisionDeviceSecret: 'wrong-secret-value' }),
    );
    await provisionOverHttp(emulator.ports.http, '{"provisionDeviceSecret":"lonely-secret-value"}');
    await httpRequest(emulator.ports.http, '/api/v1/token-value-1/telemetry', { body: '{"a":1}' });
    await httpRequest(emulator.ports.http, '/api/v1/unknown-token-value/telemetry', { body: '{}' });
    const { client } = await RawMqttClient.connect(emulator.ports.mqtt, {
      username: 'bad-token-value',
      password: Buffer.from('bad-password-value'),
    });
    await client.closed;

    assert.equal(lines.filter((line) => line.includes('provision')).length, 5);
    assert.ok(
      lines.some(
        (line) => line === 'http  provision device "pump-1" (key cr…) -> SUCCESS ACCESS_TOKEN',
      ),
    );
    assert.ok(
      lines.some(
        (line) =>
          line.startsWith('mqtt  provision device "pump-2"') && line.endsWith('SUCCESS MQTT_BASIC'),
      ),
    );
    assert.ok(lines.some((line) => line.startsWith('coap  provision device "pump-3"')));
    const secrets = [
      CREATE.provisionDeviceSecret,
      CREATE.provisionDeviceKey,
      'token-value-1',
      'password-value',
      'user-value',
      'client-value',
      cert,
      'wrong-secret-value',
      'lonely-secret-value',
      'unknown-token-value',
      'bad-token-value',
      'bad-password-value',
    ];
    for (const line of lines) {
      for (const secret of secrets) assert.ok(!line.includes(secret), `"${line}" shows ${secret}`);
    }
  });
});
