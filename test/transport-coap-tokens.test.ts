/**
 * CoAP tokens are random (RFC 7252 §5.3.1): an answer is matched to its request by token, so a
 * guessable token lets an off-path sender forge one. Seen on the wire by a raw UDP server.
 */
import * as assert from 'node:assert/strict';
import * as coapPacket from 'coap-packet';
import { getTransport } from '../src/transports';
import {
  HOST,
  allowRequest,
  deadlineIn,
  rawUdpServer,
  watchForLeaks,
} from './support/transport-helpers';

const ANSWER =
  '{"credentialsValue":"raw-token","credentialsType":"ACCESS_TOKEN","status":"SUCCESS"}';

describe('transport: coap tokens', function () {
  watchForLeaks();

  it('gives every request an 8-byte random token, none following from the one before', async function () {
    const tokens: Buffer[] = [];
    const server = await rawUdpServer((message, remote, socket) => {
      const request = coapPacket.parse(message);
      tokens.push(request.token);
      const answer = coapPacket.generate({
        messageId: request.messageId,
        token: request.token,
        code: '2.01',
        ack: true,
        payload: Buffer.from(ANSWER),
      });
      socket.send(answer, remote.port, remote.address);
    });
    try {
      const provision = () =>
        getTransport('coap')({ host: HOST, port: server.port }, allowRequest('token-device'), {
          deadline: deadlineIn(3000),
        });
      for (let i = 0; i < 10; i++) await provision();
      await Promise.all(Array.from({ length: 20 }, provision));
      assert.equal(tokens.length, 30);
      for (const token of tokens) assert.equal(token.length, 8);
      assert.equal(new Set(tokens.map((t) => t.toString('hex'))).size, 30, 'all different');
      const steps = tokens
        .slice(1)
        .map((token, i) => token.readBigUInt64BE() - tokens[i].readBigUInt64BE());
      assert.ok(
        steps.filter((step) => step > -1000n && step < 1000n).length === 0,
        'no token is a small step from the one before',
      );
    } finally {
      await server.close();
    }
  });
});
