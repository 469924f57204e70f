/** The emulator's CoAP side: response codes, content format, separate responses, device API. */

import assert from 'node:assert/strict';
import type { Emulator } from '../src/emulator';
import { delay } from './support/common';
import {
  CREATE,
  FAILURE,
  NOT_FOUND,
  PRE,
  RawCoapPeer,
  coapRequest,
  provisionOverCoap,
  request,
  startEmulator,
} from './support/emulator-clients';

const TEXT_PLAIN = 0;
const CONTENT_FORMAT = 'Content-Format';

describe('emulator CoAP', () => {
  let emulator: Emulator;
  let peer: RawCoapPeer | undefined;

  beforeEach(async () => {
    emulator = await startEmulator();
    emulator.addDevice({
      name: 'token-device',
      profile: PRE.name,
      credentials: { credentialsType: 'ACCESS_TOKEN', token: 'device-token' },
    });
  });

  afterEach(async () => {
    await peer?.close();
    peer = undefined;
    await emulator.stop();
  });

  it('SUCCESS: 2.01 with the JSON, Content-Format text/plain', async () => {
    const reply = await provisionOverCoap(emulator.ports.coap, request(CREATE, { token: 'tk' }));
    assert.equal(reply.code, '2.01');
    assert.equal(reply.contentFormat, 'text/plain');
    assert.equal(
      reply.body,
      '{"credentialsValue":"tk","credentialsType":"ACCESS_TOKEN","status":"SUCCESS"}',
    );
  });

  it('NOT_FOUND and FAILURE: 4.00 with the same JSON bodies', async () => {
    const notFound = await provisionOverCoap(
      emulator.ports.coap,
      request({ ...CREATE, provisionDeviceKey: 'nope' }),
    );
    assert.deepEqual(notFound, { code: '4.00', contentFormat: 'text/plain', body: NOT_FOUND });
    const failure = await provisionOverCoap(emulator.ports.coap, request(PRE, { deviceName: 'x' }));
    assert.deepEqual(failure, { code: '4.00', contentFormat: 'text/plain', body: FAILURE });
  });

  const undecodable: Array<[string, string]> = [
    ['not JSON', 'deviceName=a'],
    ['empty', ''],
    ['missing provisionDeviceKey', JSON.stringify({ provisionDeviceSecret: 's' })],
    ['a null field', request(CREATE, { password: null })],
    ['an unknown credentialsType', request(CREATE, { credentialsType: 'X509' })],
  ];
  for (const [what, body] of undecodable) {
    it(`${what}: 4.00 with an empty payload and no Content-Format`, async () => {
      const reply = await provisionOverCoap(emulator.ports.coap, body);
      assert.deepEqual(reply, { code: '4.00', contentFormat: undefined, body: '' });
      assert.equal(emulator.devices.size, 1);
    });
  }

  it('internal error: 5.00 with an empty payload', async () => {
    emulator.setFaults({ internalErrorFirst: 1 });
    const reply = await provisionOverCoap(
      emulator.ports.coap,
      request(CREATE, { deviceName: 'a' }),
    );
    assert.deepEqual(reply, { code: '5.00', contentFormat: undefined, body: '' });
    assert.equal(emulator.device('a'), undefined);
  });

  it('a non-confirmable request is answered with a non-confirmable response', async () => {
    peer = await RawCoapPeer.open();
    peer.post(emulator.ports.coap, '/api/v1/provision', request(CREATE, { deviceName: 'non' }), {
      confirmable: false,
      messageId: 100,
    });
    await peer.waitFor(1);
    const { packet } = peer.received[0];
    assert.equal(packet.confirmable, false);
    assert.equal(packet.ack, false);
    assert.equal(packet.code, '2.01');
    assert.deepEqual(packet.token, Buffer.from('a1b2', 'hex'));
    assert.ok(emulator.device('non'));
  });

  it('a quick answer is piggybacked on the ACK, with Content-Format 0', async () => {
    peer = await RawCoapPeer.open();
    peer.post(emulator.ports.coap, '/api/v1/provision', request(CREATE, { deviceName: 'quick' }), {
      confirmable: true,
      messageId: 200,
    });
    await peer.waitFor(1);
    const { packet } = peer.received[0];
    assert.equal(packet.ack, true);
    assert.equal(packet.messageId, 200);
    assert.equal(packet.code, '2.01');
    const format = packet.options.find((option) => option.name === CONTENT_FORMAT);
    assert.ok(format, 'Content-Format present');
    assert.equal(
      format.value.length === 0 ? 0 : format.value.readUIntBE(0, format.value.length),
      TEXT_PLAIN,
    );
  });

  it('an answer slower than 500 ms: empty ACK first, then a separate confirmable response', async () => {
    emulator.setFaults({ answerDelayMs: 800 });
    peer = await RawCoapPeer.open();
    peer.post(emulator.ports.coap, '/api/v1/provision', request(CREATE, { deviceName: 'slow' }), {
      confirmable: true,
      messageId: 300,
      token: Buffer.from('0badcafe', 'hex'),
    });
    await peer.waitFor(2);
    const [ack, response] = peer.received;
    assert.equal(ack.packet.ack, true);
    assert.equal(ack.packet.code, '0.00');
    assert.equal(ack.packet.messageId, 300);
    assert.equal(ack.packet.payload.length, 0);
    assert.ok(ack.at >= 450, `empty ACK after about 500 ms (${ack.at})`);
    assert.equal(response.packet.confirmable, true);
    assert.equal(response.packet.code, '2.01');
    assert.deepEqual(response.packet.token, Buffer.from('0badcafe', 'hex'));
    assert.ok(response.at >= 780, `response when ready (${response.at})`);
    assert.match(response.packet.payload.toString(), /"status":"SUCCESS"/);
    peer.ack(emulator.ports.coap, response.packet.messageId);
    await delay(300);
    assert.equal(peer.received.length, 2, 'nothing more once the response is acknowledged');
  });

  it('neverAnswerFirst: the request is accepted (empty ACK at 500 ms), the response never comes', async () => {
    emulator.setFaults({ neverAnswerFirst: 1 });
    peer = await RawCoapPeer.open();
    peer.post(emulator.ports.coap, '/api/v1/provision', request(CREATE, { deviceName: 'held' }), {
      confirmable: true,
      messageId: 500,
    });
    await delay(1000);
    assert.equal(peer.received.length, 1);
    assert.equal(peer.received[0].packet.code, '0.00');
    assert.equal(peer.received[0].packet.ack, true);
    assert.equal(emulator.inFlight, 1);
  });

  it('closeWithoutAnswerFirst: dropped silently, not even an ACK; a retransmission is ignored too', async () => {
    emulator.setFaults({ closeWithoutAnswerFirst: 1 });
    peer = await RawCoapPeer.open();
    const body = request(CREATE, { deviceName: 'dropped' });
    peer.post(emulator.ports.coap, '/api/v1/provision', body, {
      confirmable: true,
      messageId: 600,
    });
    await delay(700);
    peer.post(emulator.ports.coap, '/api/v1/provision', body, {
      confirmable: true,
      messageId: 600,
    });
    await delay(700);
    assert.deepEqual(peer.received, []);
    assert.equal(emulator.requests.length, 1);
    assert.equal(emulator.device('dropped'), undefined);
  });

  it('the coap client library waits through a separate response', async () => {
    emulator.setFaults({ answerDelayMs: 700 });
    const reply = await provisionOverCoap(
      emulator.ports.coap,
      request(CREATE, { deviceName: 'w' }),
    );
    assert.equal(reply.code, '2.01');
  });

  it('a retransmitted request (same message id) is not provisioned twice', async () => {
    emulator.setFaults({ answerDelayMs: 300 });
    peer = await RawCoapPeer.open();
    const body = request(CREATE, { deviceName: 'once' });
    peer.post(emulator.ports.coap, '/api/v1/provision', body, {
      confirmable: true,
      messageId: 400,
    });
    await delay(50);
    peer.post(emulator.ports.coap, '/api/v1/provision', body, {
      confirmable: true,
      messageId: 400,
    });
    await peer.waitFor(1);
    await delay(400);
    assert.equal(emulator.requests.length, 1);
    const answers = peer.received.filter(({ packet }) => packet.code === '2.01');
    assert.ok(answers.length >= 1);
    assert.ok(peer.received.every(({ packet }) => packet.code !== '4.00'));
  });

  it('an answer over 1 KiB comes block-wise, every block keeping the code 2.01', async () => {
    const certificate = `${'A'.repeat(1000)}end`;
    const reply = await provisionOverCoap(
      emulator.ports.coap,
      request(CREATE, {
        deviceName: 'big',
        credentialsType: 'X509_CERTIFICATE',
        hash: certificate,
      }),
    );
    assert.equal(reply.code, '2.01');
    assert.equal(
      reply.body,
      `{"credentialsValue":"${certificate}","credentialsType":"X509_CERTIFICATE","status":"SUCCESS"}`,
    );
    assert.equal(emulator.requests.length, 1, 'later blocks are not new requests');
  });

  it('device API: telemetry 2.01 with a known token (recorded), 4.01 otherwise', async () => {
    const ok = await coapRequest(
      emulator.ports.coap,
      '/api/v1/device-token/telemetry',
      '{"humidity":40}',
    );
    assert.equal(ok.code, '2.01');
    assert.deepEqual(emulator.device('token-device')?.telemetry, [{ humidity: 40 }]);
    const refused = await coapRequest(emulator.ports.coap, '/api/v1/other/telemetry', '{"a":1}');
    assert.equal(refused.code, '4.01');
  });

  it('other paths 4.04; GET on the provisioning path 4.05', async () => {
    assert.equal((await coapRequest(emulator.ports.coap, '/api/v1/nothing', '')).code, '4.04');
    const get = await coapRequest(emulator.ports.coap, '/api/v1/provision', '', { method: 'GET' });
    assert.equal(get.code, '4.05');
  });
});
