/**
 * What each transport puts on the wire and how it copes with servers the emulator does not play:
 * raw MQTT, HTTP and CoAP servers written inside the test on ephemeral ports of 127.0.0.1.
 */

import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import type * as net from 'node:net';
import * as coapPacket from 'coap-packet';
import * as mqttPacket from 'mqtt-packet';
import type { Packet as MqttPacket } from 'mqtt-packet';
import { serializeRequest } from '../src/protocol';
import { getTransport } from '../src/transports';
import type { TransportTarget } from '../src/transports';
import {
  HOST,
  allowRequest,
  deadlineIn,
  expectProvisionError,
  rawTcpServer,
  rawUdpServer,
  answerOnly,
  serveMqtt,
  serverSide,
  watchForLeaks,
} from './support/transport-helpers';
import type { RawTcpServer } from './support/transport-helpers';

const ANSWER =
  '{"credentialsValue":"raw-token","credentialsType":"ACCESS_TOKEN","status":"SUCCESS"}';
const TEN_MB = 10 * 1024 * 1024;

type MqttHandler = (
  packet: MqttPacket,
  reply: (packet: MqttPacket) => void,
  socket: net.Socket,
) => void;

/** A raw MQTT 3.1.1 server: parses what the client sends and lets the test answer. */
function rawMqttServer(onPacket: MqttHandler, seen: MqttPacket[] = []): Promise<RawTcpServer> {
  return rawTcpServer((socket) =>
    serveMqtt(socket, (packet, reply) => {
      seen.push(packet);
      onPacket(packet, reply, socket);
    }),
  );
}

/** Answers like ThingsBoard: CONNACK 0, SUBACK, then PUBACK and the answer for the request. */
function provisioningServer(answer: string | Buffer = ANSWER): MqttHandler {
  return (packet, reply) => {
    if (packet.cmd === 'connect') reply({ cmd: 'connack', returnCode: 0, sessionPresent: false });
    if (packet.cmd === 'subscribe') {
      reply({ cmd: 'suback', messageId: packet.messageId, granted: [1] });
    }
    if (packet.cmd === 'publish') {
      reply({ cmd: 'puback', messageId: packet.messageId });
      reply({
        cmd: 'publish',
        topic: '/provision/response',
        payload: answer,
        qos: 1,
        messageId: 7,
        dup: false,
        retain: false,
      });
    }
  };
}

function mqttTarget(server: RawTcpServer): TransportTarget {
  return { host: HOST, port: server.port };
}

describe('transports on the wire (raw servers)', function () {
  watchForLeaks();

  describe('mqtt', function () {
    const provision = (server: RawTcpServer, deadlineMs = 3000) =>
      getTransport('mqtt')(mqttTarget(server), allowRequest('wire-device'), {
        deadline: deadlineIn(deadlineMs),
      });

    it('connects as "provision" with a fresh client id, subscribes, then publishes the request', async function () {
      const seen: MqttPacket[] = [];
      const server = await rawMqttServer(provisioningServer(), seen);
      try {
        const answer = await provision(server);
        assert.equal(answer.credentialsValue, 'raw-token');
        await provision(server);
        // The server may parse the client's last packets just after the exchange settles.
        await new Promise((resolve) => setTimeout(resolve, 50));
        const second = seen.findIndex((packet, index) => index > 0 && packet.cmd === 'connect');
        const first = seen.slice(0, second);
        assert.deepEqual(
          first.map((packet) => packet.cmd),
          ['connect', 'subscribe', 'publish', 'puback', 'disconnect'],
        );
        const connect = first[0] as mqttPacket.IConnectPacket;
        assert.equal(connect.username, 'provision');
        assert.equal(connect.protocolVersion, 4);
        assert.equal(connect.clean, true);
        assert.match(connect.clientId, /^provision-[0-9a-f]{16}$/);
        assert.ok((connect.keepalive ?? 0) > 0 && (connect.keepalive ?? 0) <= 60);
        const subscribe = first[1] as mqttPacket.ISubscribePacket;
        assert.deepEqual(subscribe.subscriptions, [{ topic: '/provision/response', qos: 1 }]);
        const publish = first[2] as mqttPacket.IPublishPacket;
        assert.equal(publish.topic, '/provision/request');
        assert.equal(publish.qos, 1);
        assert.equal(publish.payload.toString(), serializeRequest(allowRequest('wire-device')));
        const again = seen[second] as mqttPacket.IConnectPacket;
        assert.equal(again.cmd, 'connect');
        assert.notEqual(again.clientId, connect.clientId);
        assert.equal(server.connections, 2);
      } finally {
        await server.close();
      }
    });

    it('asks for a keep-alive that outlasts a long deadline, so nothing needs to ping', async function () {
      const seen: MqttPacket[] = [];
      const server = await rawMqttServer(provisioningServer(), seen);
      try {
        await provision(server, 600_000);
        const connect = seen[0] as mqttPacket.IConnectPacket;
        assert.equal(connect.cmd, 'connect');
        // The server drops a client silent for 1.5 keep-alive periods: 600 s is enough here.
        const keepalive = connect.keepalive ?? 0;
        assert.ok(keepalive >= 600 && keepalive <= 601, `keep-alive ${keepalive} s`);
      } finally {
        await server.close();
      }
    });

    it('does not wait for SUBACK or PUBACK: an answer alone is enough', async function () {
      const server = await rawMqttServer(answerOnly(ANSWER));
      try {
        assert.equal((await provision(server)).status, 'SUCCESS');
      } finally {
        await server.close();
      }
    });

    it('a refused subscription (SUBACK 0x80) does not hang the exchange', async function () {
      const server = await rawMqttServer((packet, reply) => {
        if (packet.cmd === 'subscribe') {
          reply({ cmd: 'suback', messageId: packet.messageId, granted: [0x80] });
        } else {
          provisioningServer()(packet, reply, undefined as unknown as net.Socket);
        }
      });
      try {
        assert.equal((await provision(server)).status, 'SUCCESS');
      } finally {
        await server.close();
      }
    });

    it('ignores messages on other topics and takes the answer', async function () {
      const server = await rawMqttServer((packet, reply, socket) => {
        if (packet.cmd === 'publish') {
          reply({
            cmd: 'publish',
            topic: 'other/topic',
            payload: 'noise',
            qos: 0,
            dup: false,
            retain: false,
          });
        }
        provisioningServer()(packet, reply, socket);
      });
      try {
        assert.equal((await provision(server)).credentialsValue, 'raw-token');
      } finally {
        await server.close();
      }
    });

    it('a CONNACK refusal is a CONNECTION_ERROR that names the reason, not transient', async function () {
      const server = await rawMqttServer((packet, reply) => {
        if (packet.cmd === 'connect')
          reply({ cmd: 'connack', returnCode: 5, sessionPresent: false });
      });
      try {
        await expectProvisionError(provision(server), {
          status: 'CONNECTION_ERROR',
          transient: false,
          maybeDelivered: false,
          message: /refused the connection \(CONNACK 5: not authorised\)/,
        });
      } finally {
        await server.close();
      }
    });

    it('CONNACK 3 (server unavailable) is transient', async function () {
      const server = await rawMqttServer((packet, reply) => {
        if (packet.cmd === 'connect')
          reply({ cmd: 'connack', returnCode: 3, sessionPresent: false });
      });
      try {
        await expectProvisionError(provision(server), {
          status: 'CONNECTION_ERROR',
          transient: true,
          message: /CONNACK 3: server unavailable/,
        });
      } finally {
        await server.close();
      }
    });

    it('a server that never sends CONNACK: TIMEOUT waiting for the CONNACK', async function () {
      const server = await rawMqttServer(() => undefined);
      try {
        await expectProvisionError(provision(server, 400), {
          status: 'TIMEOUT',
          maybeDelivered: false,
          message: /for the CONNACK/,
        });
      } finally {
        await server.close();
      }
    });

    it('an answer that is not JSON is a PROTOCOL_ERROR', async function () {
      const server = await rawMqttServer(provisioningServer('definitely not json'));
      try {
        await expectProvisionError(provision(server), { status: 'PROTOCOL_ERROR' });
      } finally {
        await server.close();
      }
    });

    it('a server that does not speak MQTT is a PROTOCOL_ERROR', async function () {
      const server = await rawTcpServer((socket) => {
        socket.once('data', () =>
          socket.write('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n'),
        );
      });
      try {
        await expectProvisionError(provision(server), {
          status: 'PROTOCOL_ERROR',
          message: /does not speak MQTT/,
        });
      } finally {
        await server.close();
      }
    });

    it('a 10 MB answer is cut off at 1 MiB: PROTOCOL_ERROR, quickly', async function () {
      const server = await rawTcpServer((socket) => {
        socket.once('data', () => {
          socket.write(
            mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }),
          );
          // A PUBLISH header announcing 10 MB, then the bytes themselves.
          const topic = Buffer.from('/provision/response');
          const length = 2 + topic.length + TEN_MB;
          const header = [0x30];
          for (let rest = length; ;) {
            const digit = rest % 128;
            rest = Math.floor(rest / 128);
            header.push(rest > 0 ? digit | 0x80 : digit);
            if (rest === 0) break;
          }
          socket.write(Buffer.concat([Buffer.from(header), Buffer.from([0, topic.length]), topic]));
          socket.write(Buffer.alloc(TEN_MB, 0x61));
        });
      });
      try {
        const startedAt = Date.now();
        await expectProvisionError(provision(server, 10_000), {
          status: 'PROTOCOL_ERROR',
          message: /more than 1048576 bytes/,
        });
        assert.ok(Date.now() - startedAt < 2000, `took ${Date.now() - startedAt} ms`);
      } finally {
        await server.close();
      }
    });
  });

  describe('http', function () {
    interface Seen {
      method?: string;
      url?: string;
      contentType?: string;
      body: string;
    }

    async function rawHttpServer(
      respond: (req: http.IncomingMessage, res: http.ServerResponse, seen: Seen) => void,
    ): Promise<{ port: number; seen: Seen[]; connections: number; close(): Promise<void> }> {
      const seen: Seen[] = [];
      const server = http.createServer((req, res) => {
        const entry: Seen = {
          method: req.method,
          url: req.url,
          contentType: req.headers['content-type'],
          body: '',
        };
        seen.push(entry);
        req.setEncoding('utf8');
        req.on('data', (chunk: string) => {
          entry.body += chunk;
        });
        req.on('end', () => respond(req, res, entry));
      });
      const state = { connections: 0 };
      server.on('connection', () => {
        state.connections += 1;
      });
      const retire = serverSide(server);
      await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
      return {
        port: (server.address() as net.AddressInfo).port,
        seen,
        get connections() {
          return state.connections;
        },
        close: async () => retire(),
      };
    }

    const provision = (port: number, deadlineMs = 3000) =>
      getTransport('http')({ host: HOST, port }, allowRequest('wire-device'), {
        deadline: deadlineIn(deadlineMs),
      });

    it('POSTs JSON to /api/v1/provision and reads a text/plain answer as JSON', async function () {
      const server = await rawHttpServer((_req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/plain;charset=UTF-8' });
        res.end(ANSWER);
      });
      try {
        assert.equal((await provision(server.port)).credentialsValue, 'raw-token');
        assert.deepEqual(server.seen, [
          {
            method: 'POST',
            url: '/api/v1/provision',
            contentType: 'application/json',
            body: serializeRequest(allowRequest('wire-device')),
          },
        ]);
      } finally {
        await server.close();
      }
    });

    it('keeps its connections alive across requests until closeHttpAgents()', async function () {
      const server = await rawHttpServer((_req, res) => res.end(ANSWER));
      try {
        // undici's pool may open a second connection while the first ends its first exchange.
        await provision(server.port);
        await provision(server.port);
        const opened = server.connections;
        assert.ok(opened <= 2, `${opened} connections for two requests`);
        for (let i = 0; i < 5; i++) await provision(server.port);
        assert.equal(server.connections, opened);
      } finally {
        await server.close();
      }
    });

    it('an answer that is not JSON is a PROTOCOL_ERROR', async function () {
      const server = await rawHttpServer((_req, res) => res.end('<html>hello</html>'));
      try {
        await expectProvisionError(provision(server.port), { status: 'PROTOCOL_ERROR' });
      } finally {
        await server.close();
      }
    });

    it('a 10 MB streamed answer is cut off at 1 MiB: PROTOCOL_ERROR, quickly', async function () {
      const server = await rawHttpServer((_req, res) => {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.on('error', () => undefined);
        res.end(Buffer.alloc(TEN_MB, 0x61));
      });
      try {
        const startedAt = Date.now();
        await expectProvisionError(provision(server.port, 10_000), {
          status: 'PROTOCOL_ERROR',
          message: /more than 1048576 bytes/,
        });
        assert.ok(Date.now() - startedAt < 2000, `took ${Date.now() - startedAt} ms`);
      } finally {
        await server.close();
      }
    });

    it('a declared 10 MB Content-Length is refused before reading', async function () {
      const server = await rawHttpServer((_req, res) => {
        res.writeHead(200, { 'Content-Length': String(TEN_MB) });
        res.on('error', () => undefined);
        res.write('{');
      });
      try {
        await expectProvisionError(provision(server.port, 10_000), {
          status: 'PROTOCOL_ERROR',
          message: /more than 1048576 bytes/,
        });
      } finally {
        await server.close();
      }
    });

    it('a body cut short is a transient CONNECTION_ERROR', async function () {
      const server = await rawHttpServer((req, res) => {
        res.writeHead(200, { 'Content-Length': '500' });
        res.write('{"credentials');
        setTimeout(() => req.socket.destroy(), 20);
      });
      try {
        await expectProvisionError(provision(server.port), {
          status: 'CONNECTION_ERROR',
          transient: true,
          maybeDelivered: true,
        });
      } finally {
        await server.close();
      }
    });
  });

  describe('coap', function () {
    const provision = (port: number, deadlineMs = 3000) =>
      getTransport('coap')({ host: HOST, port }, allowRequest('wire-device'), {
        deadline: deadlineIn(deadlineMs),
      });
    /** A piggy-backed 2.01 answer to `request`, as ThingsBoard sends. */
    const answerTo = (request: coapPacket.ParsedPacket, payload = ANSWER): Buffer =>
      coapPacket.generate({
        messageId: request.messageId,
        token: request.token,
        code: '2.01',
        ack: true,
        payload: Buffer.from(payload),
      });

    it('sends a confirmable POST to /api/v1/provision with the JSON payload', async function () {
      const requests: coapPacket.ParsedPacket[] = [];
      const server = await rawUdpServer((message, remote, socket) => {
        const request = coapPacket.parse(message);
        requests.push(request);
        socket.send(answerTo(request), remote.port, remote.address);
      });
      try {
        assert.equal((await provision(server.port)).credentialsValue, 'raw-token');
        assert.equal(requests.length, 1);
        const [request] = requests;
        assert.equal(request.code, '0.02');
        assert.equal(request.confirmable, true);
        const path = request.options
          .filter((option) => option.name === 'Uri-Path')
          .map((option) => option.value.toString());
        assert.deepEqual(path, ['api', 'v1', 'provision']);
        assert.equal(request.payload.toString(), serializeRequest(allowRequest('wire-device')));
      } finally {
        await server.close();
      }
    });

    it('waits for a separate response after an empty ACK, and acknowledges it', async function () {
      const acknowledged: number[] = [];
      const server = await rawUdpServer((message, remote, socket) => {
        const packet = coapPacket.parse(message);
        if (packet.ack) {
          acknowledged.push(packet.messageId);
          return;
        }
        socket.send(
          coapPacket.generate({ messageId: packet.messageId, code: '0.00', ack: true }),
          remote.port,
          remote.address,
        );
        setTimeout(() => {
          const separate = coapPacket.generate({
            messageId: 4242,
            token: packet.token,
            code: '2.01',
            confirmable: true,
            payload: Buffer.from(ANSWER),
          });
          socket.send(separate, remote.port, remote.address);
        }, 300);
      });
      try {
        assert.equal((await provision(server.port)).status, 'SUCCESS');
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.deepEqual(acknowledged, [4242]);
      } finally {
        await server.close();
      }
    });

    it('resends an unacknowledged request unchanged after 2-3 s (RFC 7252)', async function () {
      this.timeout(10_000);
      const arrivals: Array<{ at: number; message: Buffer }> = [];
      const server = await rawUdpServer((message, remote, socket) => {
        arrivals.push({ at: performance.now(), message });
        if (arrivals.length === 1) return; // Lost on the way.
        socket.send(answerTo(coapPacket.parse(message)), remote.port, remote.address);
      });
      try {
        assert.equal((await provision(server.port, 8000)).credentialsValue, 'raw-token');
        assert.equal(arrivals.length, 2);
        assert.deepEqual(arrivals[1].message, arrivals[0].message, 'the same message id and token');
        const waited = arrivals[1].at - arrivals[0].at;
        assert.ok(waited >= 1990 && waited < 3200, `resent after ${waited.toFixed(0)} ms`);
      } finally {
        await server.close();
      }
    });

    it('a request too large for one datagram: PROTOCOL_ERROR, nothing sent', async function () {
      let datagrams = 0;
      const server = await rawUdpServer(() => {
        datagrams++;
      });
      try {
        await expectProvisionError(
          getTransport('coap')({ host: HOST, port: server.port }, allowRequest('d'.repeat(1500)), {
            deadline: deadlineIn(3000),
          }),
          {
            status: 'PROTOCOL_ERROR',
            transient: false,
            message: /does not fit in one CoAP datagram/,
          },
        );
        assert.equal(datagrams, 0);
      } finally {
        await server.close();
      }
    });

    it('an answer that is not JSON is a PROTOCOL_ERROR', async function () {
      const server = await rawUdpServer((message, remote, socket) => {
        socket.send(answerTo(coapPacket.parse(message), 'not json'), remote.port, remote.address);
      });
      try {
        await expectProvisionError(provision(server.port), { status: 'PROTOCOL_ERROR' });
      } finally {
        await server.close();
      }
    });

    it('a reset (RST) is a transient CONNECTION_ERROR', async function () {
      const server = await rawUdpServer((message, remote, socket) => {
        const request = coapPacket.parse(message);
        const reset = coapPacket.generate({
          messageId: request.messageId,
          code: '0.00',
          reset: true,
        });
        socket.send(reset, remote.port, remote.address);
      });
      try {
        await expectProvisionError(provision(server.port), {
          status: 'CONNECTION_ERROR',
          transient: true,
          message: /reset the exchange/,
        });
      } finally {
        await server.close();
      }
    });

    it('a block-wise answer is put together in order, each block sent twice counted once', async function () {
      // 16-byte blocks (SZX 0): the answer comes in several.
      const asked: number[] = [];
      const server = await rawUdpServer((message, remote, socket) => {
        const request = coapPacket.parse(message);
        const option = request.options.find((o) => o.name === 'Block2');
        let num = 0;
        if (option !== undefined) for (const byte of option.value) num = num * 256 + byte;
        num >>= 4;
        asked.push(num);
        const more = (num + 1) * 16 < ANSWER.length;
        const value = (num << 4) | (more ? 0x08 : 0);
        const reply = coapPacket.generate({
          messageId: request.messageId,
          token: request.token,
          code: '2.01',
          ack: true,
          options: [{ name: 'Block2', value: Buffer.from([(value >> 8) & 0xff, value & 0xff]) }],
          payload: Buffer.from(ANSWER.slice(num * 16, (num + 1) * 16)),
        });
        // Each answer twice, as a server that answers a retransmission would.
        socket.send(reply, remote.port, remote.address);
        socket.send(reply, remote.port, remote.address);
      });
      try {
        assert.equal((await provision(server.port)).credentialsValue, 'raw-token');
        const blocks = Math.ceil(ANSWER.length / 16);
        assert.deepEqual(
          asked,
          Array.from({ length: blocks }, (_, i) => i),
        );
      } finally {
        await server.close();
      }
    });

    it('an endless block-wise answer is cut off at 1 MiB: PROTOCOL_ERROR, quickly', async function () {
      const block = Buffer.alloc(1024, 0x61);
      const server = await rawUdpServer((message, remote, socket) => {
        const request = coapPacket.parse(message);
        const asked = request.options.find((option) => option.name === 'Block2');
        let num = 0;
        if (asked !== undefined) {
          for (const byte of asked.value) num = num * 256 + byte;
          num >>= 4;
        }
        // Block2: NUM, More = 1, SZX = 6 (1024 bytes).
        const value = (num << 4) | 0x08 | 6;
        const option = Buffer.from([(value >> 16) & 0xff, (value >> 8) & 0xff, value & 0xff]);
        const reply = coapPacket.generate({
          messageId: request.messageId,
          token: request.token,
          code: '2.01',
          ack: true,
          options: [{ name: 'Block2', value: option }],
          payload: block,
        });
        socket.send(reply, remote.port, remote.address);
      });
      try {
        const startedAt = Date.now();
        await expectProvisionError(provision(server.port, 10_000), {
          status: 'PROTOCOL_ERROR',
          message: /more than 1048576 bytes/,
        });
        assert.ok(Date.now() - startedAt < 3000, `took ${Date.now() - startedAt} ms`);
      } finally {
        await server.close();
      }
    });
  });
});
