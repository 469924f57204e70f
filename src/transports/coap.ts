/**
 * Provisioning over CoAP: a confirmable POST /api/v1/provision through a private agent on a UDP
 * socket of our own, closed when the exchange ends; the deadline, not the coap package's ~93 s of
 * retransmissions, decides when to give up.
 */

import * as dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { CoapRequestParams, IncomingMessage, OutgoingMessage } from 'coap';
import {
  MAX_ANSWER_BYTES,
  ProvisionError,
  classifyCoapResponse,
  serializeRequest,
} from '../protocol';
import type { ProvisionAnswer } from '../protocol';
import { answerTooLargeError, connectionFailure, describeEndpoint, runExchange } from './exchange';
import type { Endpoint, ExchangeControl } from './exchange';
import type { Transport, TransportOptions, TransportTarget } from './types';

export const PROVISION_PATH = '/api/v1/provision';

export const DTLS_NOT_OFFERED =
  'CoAP over DTLS is not offered; use MQTT or HTTP with TLS, or turn TLS off for CoAP';

let coapModule: typeof import('coap') | undefined;

/** Loaded on first use so that loading the transports stays cheap. */
function loadCoap(): typeof import('coap') {
  coapModule ??= require('coap') as typeof import('coap');
  return coapModule;
}

type SendCallback = (error: Error | null, bytes?: number) => void;

/**
 * The face of a connected UDP socket that the coap agent uses. Connected, the kernel reports an
 * ICMP "port unreachable" as ECONNREFUSED at once instead of leaving us to wait for the deadline,
 * and drops datagrams from any other address.
 */
class ConnectedDatagram extends EventEmitter {
  readonly type: dgram.SocketType;
  private open = true;

  constructor(
    private readonly socket: dgram.Socket,
    type: dgram.SocketType,
  ) {
    super();
    this.type = type;
    socket.on('message', (message: Buffer, remote: dgram.RemoteInfo) => {
      this.emit('message', message, remote);
    });
    socket.on('error', (err) => this.emit('error', err));
    socket.once('close', () => {
      this.open = false;
    });
  }

  address(): AddressInfo {
    return this.socket.address();
  }

  /** The agent names the peer on every send; a connected socket must not be told it again. */
  send(
    message: Buffer,
    offset: number,
    length: number,
    _port: unknown,
    _address: unknown,
    callback?: SendCallback,
  ): void {
    if (!this.open) return;
    this.socket.send(message, offset, length, (error) => callback?.(error ?? null, length));
  }
}

function endpointOf(target: TransportTarget): Endpoint {
  return { transport: 'CoAP', host: target.host, port: target.port };
}

interface CoapCall<T> {
  method: 'GET' | 'POST';
  /** Uri-Path segments, sent as they are (a token may hold any character). */
  path: string[];
  payload?: string;
  onAnswer(code: string, payload: Buffer): T;
}

async function resolveAddress(host: string): Promise<{ address: string; family: 4 | 6 }> {
  const literal = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const family = isIP(literal);
  if (family !== 0) return { address: literal, family: family === 6 ? 6 : 4 };
  const found = await lookup(literal);
  return { address: found.address, family: found.family === 6 ? 6 : 4 };
}

/** One confirmable request and its answer, piggy-backed or separate, over a private agent. */
async function sendCoap<T>(
  target: TransportTarget,
  endpoint: Endpoint,
  x: ExchangeControl<T>,
  call: CoapCall<T>,
): Promise<void> {
  const { address, family } = await resolveAddress(target.host);
  if (x.settled) return;
  const { Agent } = loadCoap();

  const type = family === 6 ? 'udp6' : 'udp4';
  const socket = dgram.createSocket(type);
  let socketOpen = true;
  let received = 0;
  let answered = false;

  socket.once('close', () => {
    socketOpen = false;
  });
  socket.on('error', (err) => x.fail(connectionFailure(err, endpoint, x.delivered)));
  socket.on('message', (message: Buffer) => {
    received += message.length;
    // Block-wise answers are reassembled inside the agent: cap what it may collect.
    if (received > MAX_ANSWER_BYTES) x.fail(answerTooLargeError(endpoint, MAX_ANSWER_BYTES));
  });
  x.onTeardown(async () => {
    // Let the ACK of a separate answer leave before the socket closes.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (socketOpen) await new Promise<void>((resolve) => socket.close(() => resolve()));
  });

  await new Promise<void>((resolve) => socket.connect(target.port, address, () => resolve()));
  if (x.settled) return;

  const datagram = new ConnectedDatagram(socket, type);
  const agent = new Agent({ socket: datagram as unknown as dgram.Socket });
  agent.on('error', (err: Error) => x.fail(connectionFailure(err, endpoint, x.delivered)));

  const params: CoapRequestParams = {
    hostname: address,
    port: target.port,
    method: call.method,
    confirmable: true,
    options: { 'Uri-Path': call.path.map((segment) => Buffer.from(segment, 'utf8')) },
  };
  if (call.payload !== undefined) params.contentFormat = 'application/json';
  const request: OutgoingMessage = agent.request(params);
  // Runs before the socket closes (release steps run newest first): stops retransmission timers.
  x.onTeardown(() => {
    if (!answered) agent.abort(request);
  });
  request.on('error', (err: Error) => x.fail(connectionFailure(err, endpoint, x.delivered)));
  request.on('timeout', () => {
    x.fail(
      new ProvisionError(
        'TIMEOUT',
        `The CoAP server at ${describeEndpoint(endpoint)} acknowledged nothing after all ` +
          'retransmissions. Check the host, the port and that the server is running.',
        { transient: true, maybeDelivered: true },
      ),
    );
  });
  request.on('response', (response: IncomingMessage) => {
    answered = true;
    if (response.code === '0.00') {
      // An empty reset: the server rejected the message itself.
      x.fail(
        new ProvisionError(
          'CONNECTION_ERROR',
          `The CoAP server at ${describeEndpoint(endpoint)} reset the exchange (RST) instead of ` +
            'answering. Check the host, the port and that the CoAP transport is enabled.',
          { transient: true, maybeDelivered: true },
        ),
      );
      return;
    }
    try {
      x.succeed(call.onAnswer(response.code, response.payload));
    } catch (err) {
      x.fail(err);
    }
  });
  request.end(call.payload === undefined ? undefined : Buffer.from(call.payload, 'utf8'));
  x.markDelivered();
}

/** One provisioning exchange over CoAP (UDP). A target with TLS is refused: DTLS is not offered. */
export const coapTransport: Transport = (target, request, options) => {
  if (target.tls !== undefined) {
    return Promise.reject(new ProvisionError('INVALID_INPUT', DTLS_NOT_OFFERED));
  }
  const endpoint = endpointOf(target);
  return runExchange<ProvisionAnswer>(
    endpoint,
    options,
    `the answer to POST ${PROVISION_PATH}`,
    (x) =>
      sendCoap(target, endpoint, x, {
        method: 'POST',
        path: ['api', 'v1', 'provision'],
        payload: serializeRequest(request),
        // Answers come as 2.01 or 4.00 with Content-Format text/plain: the payload is JSON anyway.
        onAnswer: (code, payload) => classifyCoapResponse(code, payload),
      }),
  );
};

/** GET /api/v1/{token}/attributes: true on 2.05, false when the server refuses the token. */
export function checkCoapToken(
  target: TransportTarget,
  token: string,
  options: TransportOptions,
): Promise<boolean> {
  if (target.tls !== undefined) {
    return Promise.reject(new ProvisionError('INVALID_INPUT', DTLS_NOT_OFFERED));
  }
  const endpoint = endpointOf(target);
  return runExchange<boolean>(endpoint, options, 'the answer of the device API', (x) =>
    sendCoap(target, endpoint, x, {
      method: 'GET',
      path: ['api', 'v1', token, 'attributes'],
      onAnswer: (code) => {
        if (code.startsWith('2.')) return true;
        if (code === '4.01' || code === '4.03' || code === '4.04') return false;
        throw new ProvisionError(
          'PROTOCOL_ERROR',
          `The device API at ${describeEndpoint(endpoint)} answered CoAP ${code} when asked for ` +
            'the attributes of the device; the credentials could not be checked.',
          { transient: code.startsWith('5.') },
        );
      },
    }),
  );
}
