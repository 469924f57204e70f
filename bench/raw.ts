/**
 * The raw baselines: the same provisioning work with the same client libraries used directly and
 * minimally — the fastest our dependencies can go on this machine. No validation, no store, no
 * deadline, no teardown bookkeeping: only what the wire needs.
 */

import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { IClientOptions } from 'mqtt';
import { PROVISION_KEY, PROVISION_SECRET } from './common';
import type { EmulatorAddress, Transport } from './common';

/** Resolves with the server's answer (its JSON text) once the device is provisioned. */
type Provision = (deviceName: string) => Promise<string>;

export function requestBody(deviceName: string): string {
  return JSON.stringify({
    deviceName,
    provisionDeviceKey: PROVISION_KEY,
    provisionDeviceSecret: PROVISION_SECRET,
  });
}

function checkAnswer(text: string): string {
  const answer = JSON.parse(text) as { status?: string };
  if (answer.status !== 'SUCCESS') throw new Error(`answer ${text}`);
  return text;
}

/** mqtt.js: connect as "provision" (where `server` says), subscribe, publish, take the answer, end. */
export function mqttJsClient(server: IClientOptions): Provision {
  const mqtt = require('mqtt') as typeof import('mqtt');
  return (deviceName) =>
    new Promise<string>((resolve, reject) => {
      const client = mqtt.connect({
        ...server,
        protocolVersion: 4,
        clientId: `provision-${randomBytes(8).toString('hex')}`,
        username: 'provision',
        reconnectPeriod: 0,
      });
      // Without it Nagle holds PUBLISH behind SUBSCRIBE until the server's delayed ACK.
      (client.stream as unknown as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      let outcome: Error | undefined;
      let answer = '';
      client.on('error', (err) => {
        outcome ??= err;
        client.end(true);
      });
      client.on('connect', () => {
        client.subscribe('/provision/response', { qos: 1 });
        client.publish('/provision/request', requestBody(deviceName), { qos: 1 });
      });
      client.on('message', (_topic, payload) => {
        try {
          answer = checkAnswer(payload.toString('utf8'));
        } catch (err) {
          outcome = err as Error;
        }
        client.end();
      });
      client.on('close', () => {
        if (outcome) reject(outcome);
        else resolve(answer);
      });
    });
}

/**
 * The provisioning packets, encoded and parsed by mqtt.js's codec (mqtt-packet), on a socket just
 * opened: no client object. Resolves with the answer's text once the socket has closed.
 */
export function codecExchange(socket: net.Socket, body: string): Promise<string> {
  const codec = require('mqtt-packet') as typeof import('mqtt-packet');
  return new Promise<string>((resolve, reject) => {
    socket.setNoDelay(true);
    const parser = codec.parser({ protocolVersion: 4 });
    let outcome: Error | undefined;
    let answer: string | undefined;
    parser.on('packet', (packet) => {
      if (packet.cmd === 'connack') {
        const subscribe = codec.generate({
          cmd: 'subscribe',
          messageId: 1,
          subscriptions: [{ topic: '/provision/response', qos: 1 }],
        });
        const publish = codec.generate({
          cmd: 'publish',
          messageId: 2,
          topic: '/provision/request',
          payload: body,
          qos: 1,
          dup: false,
          retain: false,
        });
        socket.write(subscribe);
        socket.write(publish);
      } else if (packet.cmd === 'publish') {
        socket.write(codec.generate({ cmd: 'puback', messageId: packet.messageId }));
        try {
          answer = checkAnswer(packet.payload.toString());
        } catch (err) {
          outcome = err as Error;
        }
        socket.write(codec.generate({ cmd: 'disconnect' }));
        socket.destroy();
      }
    });
    parser.on('error', (err) => {
      outcome ??= err as Error;
      socket.destroy();
    });
    socket.on('data', (chunk: Buffer) => parser.parse(chunk));
    socket.on('error', (err) => {
      outcome ??= err;
    });
    socket.on('close', () => {
      if (answer !== undefined && !outcome) resolve(answer);
      else reject(outcome ?? new Error('closed before the answer'));
    });
    socket.write(
      codec.generate({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clientId: `provision-${randomBytes(8).toString('hex')}`,
        clean: true,
        keepalive: 30,
        username: 'provision',
      }),
    );
  });
}

/** Node's http client with one keep-alive agent. */
function httpRaw(emulator: EmulatorAddress): Provision {
  const agent = new http.Agent({ keepAlive: true });
  return (deviceName) =>
    new Promise<string>((resolve, reject) => {
      const body = requestBody(deviceName);
      const request = http.request(
        {
          host: emulator.host,
          port: emulator.ports.http,
          method: 'POST',
          path: '/api/v1/provision',
          agent,
          headers: {
            'Content-Type': 'application/json',
            'Content-Length': Buffer.byteLength(body),
          },
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => {
            try {
              resolve(checkAnswer(Buffer.concat(chunks).toString('utf8')));
            } catch (err) {
              reject(err as Error);
            }
          });
        },
      );
      request.on('error', reject);
      request.end(body);
    });
}

/** The coap package with one agent (one UDP socket) for every request. */
function coapRaw(emulator: EmulatorAddress): Provision {
  const coap = require('coap') as typeof import('coap');
  const agent = new coap.Agent({ type: 'udp4' });
  return (deviceName) =>
    new Promise<string>((resolve, reject) => {
      const request = coap.request({
        hostname: emulator.host,
        port: emulator.ports.coap,
        method: 'POST',
        pathname: '/api/v1/provision',
        confirmable: true,
        agent,
      });
      request.on('response', (response: { payload: Buffer }) => {
        try {
          resolve(checkAnswer(response.payload.toString('utf8')));
        } catch (err) {
          reject(err as Error);
        }
      });
      request.on('error', reject);
      request.end(requestBody(deviceName));
    });
}

/**
 * coap-packet on one connected UDP socket: a confirmable POST per device, its answer matched by
 * token, the way the product's CoAP transport speaks (without its retransmission, which loopback
 * never needs, and its block-wise answers). A separate answer is acknowledged.
 */
function coapCodecRaw(emulator: EmulatorAddress): Provision {
  const codec = require('coap-packet') as typeof import('coap-packet');
  const socket = dgram.createSocket('udp4');
  const connected = new Promise<void>((resolve) =>
    socket.connect(emulator.ports.coap, emulator.host, resolve),
  );
  const waiting = new Map<string, (payload: Buffer) => void>();
  socket.on('message', (message: Buffer) => {
    const packet = codec.parse(message);
    if (packet.confirmable) {
      socket.send(codec.generate({ messageId: packet.messageId, code: '0.00', ack: true }));
    }
    if (packet.code === '0.00') return;
    const key = packet.token.toString('hex');
    const answer = waiting.get(key);
    waiting.delete(key);
    answer?.(packet.payload);
  });
  const path = ['api', 'v1', 'provision'].map((segment) => ({
    name: 'Uri-Path' as const,
    value: Buffer.from(segment),
  }));
  let messageId = Math.floor(Math.random() * 0x10000);
  let token = Math.floor(Math.random() * 0x100000000);
  return async (deviceName) => {
    await connected;
    messageId = (messageId + 1) & 0xffff;
    token = (token + 1) >>> 0;
    const tokenBytes = Buffer.alloc(4);
    tokenBytes.writeUInt32BE(token);
    return new Promise<string>((resolve, reject) => {
      waiting.set(tokenBytes.toString('hex'), (payload) => {
        try {
          resolve(checkAnswer(payload.toString('utf8')));
        } catch (err) {
          reject(err as Error);
        }
      });
      socket.send(
        codec.generate({
          confirmable: true,
          messageId,
          token: tokenBytes,
          code: '0.02',
          options: path,
          payload: Buffer.from(requestBody(deviceName)),
        }),
      );
    });
  };
}

/**
 * undici's pool with the dispatcher interface, the way the product's HTTP transport uses it: no
 * ClientRequest or IncomingMessage stream per request.
 */
function undiciRaw(emulator: EmulatorAddress): Provision {
  const { Pool } = require('undici') as typeof import('undici');
  const pool = new Pool(`http://${emulator.host}:${emulator.ports.http}`);
  const headers = { 'content-type': 'application/json' };
  return (deviceName) =>
    new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      pool.dispatch(
        { path: '/api/v1/provision', method: 'POST', headers, body: requestBody(deviceName) },
        {
          onRequestStart: () => undefined,
          onResponseData: (_controller, chunk) => chunks.push(chunk),
          onResponseEnd: () => {
            try {
              resolve(checkAnswer(Buffer.concat(chunks).toString('utf8')));
            } catch (err) {
              reject(err as Error);
            }
          },
          onResponseError: (_controller, err) => reject(err),
        },
      );
    });
}

/**
 * The raw client for a transport (the bench process exits when done: nothing to close); `floor`
 * picks, over the client library, the layer the product speaks through: mqtt-packet on a bare
 * socket for MQTT, undici's pool for HTTP, coap-packet on a UDP socket for CoAP.
 */
export function rawClient(
  transport: Transport,
  emulator: EmulatorAddress,
  floor = false,
): Provision {
  switch (transport) {
    case 'mqtt':
      return floor
        ? (deviceName) =>
            codecExchange(
              net.connect({ host: emulator.host, port: emulator.ports.mqtt }),
              requestBody(deviceName),
            )
        : mqttJsClient({ host: emulator.host, port: emulator.ports.mqtt });
    case 'http':
      return floor ? undiciRaw(emulator) : httpRaw(emulator);
    case 'coap':
      return floor ? coapCodecRaw(emulator) : coapRaw(emulator);
  }
}

/**
 * The fastest raw client for a transport, which the in-flow and flushed rows build on: the layer
 * the product speaks through (mqtt-packet, undici, coap-packet).
 */
export function fastestRawClient(transport: Transport, emulator: EmulatorAddress): Provision {
  return rawClient(transport, emulator, true);
}

const write = promisify(fs.write);
const fdatasync = promisify(fs.fdatasync);

/** As in the product's store (src/store/file/durable-file.ts): on Linux, no fdatasync call. */
const SYNCED_WRITES = process.platform === 'linux' && fs.constants.O_DSYNC !== undefined;

/** A new journal, opened as the product's store opens its own (O_DSYNC on Linux). */
function openJournal(file: string): number {
  const { O_WRONLY, O_CREAT, O_EXCL, O_APPEND, O_DSYNC } = fs.constants;
  return fs.openSync(
    file,
    SYNCED_WRITES ? O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_DSYNC : 'ax',
    0o600,
  );
}

/** Appends `data` to the journal open as `fd` and flushes it, on Node's thread pool. */
async function appendAndFlush(fd: number, data: Buffer): Promise<void> {
  for (let offset = 0; offset < data.length;) {
    offset += (await write(fd, data, offset, data.length - offset, null)).bytesWritten;
  }
  if (!SYNCED_WRITES) await fdatasync(fd);
}

/**
 * The time of `count` appends of `bytes` each to a new file in the temporary folder, one after the
 * other, in ms: the flush alone, measured while nothing else runs.
 */
export async function idleFlushes(count: number, bytes: number): Promise<number[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-bench-idle-'));
  const fd = openJournal(path.join(dir, 'journal'));
  const data = Buffer.alloc(bytes, 'x');
  const times: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      await appendAndFlush(fd, data);
      times.push(performance.now() - started);
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return times;
}

/**
 * The raw client plus the least that keeping credentials durably takes: each answer appended as a
 * line to one journal file and flushed (a synchronized write on Node's thread pool; a write and an
 * fdatasync where O_DSYNC is not used) before the device counts as done. Answers that arrive in
 * the same event-loop turn share an append, and one append runs at a time, as in the product's
 * store; nothing else (no index, no snapshot). Its rate against the raw row is what durability
 * itself costs on this disk. Each append's time, from the write's submission to its completion as
 * durable, in ms, is pushed onto `flushes`.
 */
export function flushedToDisk(
  provision: Provision,
  file: string,
  flushes: number[] = [],
): Provision {
  const fd = openJournal(file);
  let pending: Array<{ line: string; done: () => void; failed: (err: Error) => void }> = [];
  let appending = false;
  const append = async (): Promise<void> => {
    appending = true;
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (pending.length > 0) {
      const group = pending;
      pending = [];
      const data = Buffer.from(group.map((entry) => entry.line).join(''));
      try {
        const started = performance.now();
        await appendAndFlush(fd, data);
        flushes.push(performance.now() - started);
        for (const entry of group) entry.done();
      } catch (err) {
        for (const entry of group) entry.failed(err as Error);
      }
    }
    appending = false;
  };
  return async (deviceName) => {
    const answer = await provision(deviceName);
    await new Promise<void>((done, failed) => {
      pending.push({
        line: `{"deviceName":${JSON.stringify(deviceName)},"answer":${answer}}\n`,
        done,
        failed,
      });
      if (!appending) void append();
    });
    return answer;
  };
}
