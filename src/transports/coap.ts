/**
 * Provisioning over CoAP: a confirmable POST /api/v1/provision through an agent on a UDP socket of
 * our own, shared by the exchanges to the same server and closed a second after the last one ends
 * (unref'd meanwhile, never keeping the process alive); the deadline, not the coap package's ~93 s
 * of retransmissions, decides when to give up.
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

/** An exchange using a link: told about socket errors and the bytes of its own answer. */
interface LinkUser {
  fail(err: unknown): void;
  /** Hex of the request's CoAP token, once sent. */
  token?: string;
  received: number;
}

/**
 * One connected UDP socket and coap agent per server address, shared by the exchanges in flight
 * and closed when the last of them ends: a socket and an agent per exchange cost more than the
 * exchange itself.
 */
interface CoapLink {
  key: string;
  socket: dgram.Socket;
  agent: InstanceType<typeof import('coap').Agent>;
  users: Set<LinkUser>;
  connected: Promise<void>;
  open: boolean;
  /** Set while the link waits, unused, for the next exchange. */
  idle?: NodeJS.Timeout;
  closing?: Promise<void>;
}

/**
 * How long an unused link waits for the next exchange before its socket closes. Meanwhile socket
 * and timer are unref'd, like a pooled HTTP connection: they never keep the process alive.
 */
const LINK_IDLE_MS = 1000;

const links = new Map<string, CoapLink>();

/**
 * The last CoAP message id sent, across every link of this process. A server drops a request
 * whose (address, port, message id) it saw in the last 247 s as a retransmission; each agent
 * counts from a random start of its own, so a new link that got a recently used port could repeat
 * a whole run of ids and lose every answer. One counter for all links never repeats an id before
 * 65 536 requests.
 */
let lastMessageId = Math.floor(Math.random() * 0xffff);

interface AgentCounters {
  _lastMessageId: number;
}

/** The CoAP token of a datagram (RFC 7252: its length is the low nibble of the first byte). */
function tokenOf(message: Buffer): string {
  const length = message.length >= 4 ? message[0] & 0x0f : 0;
  return length > 0 && length <= 8 ? message.toString('hex', 4, 4 + length) : '';
}

function openLink(key: string, address: string, family: 4 | 6, port: number): CoapLink {
  const { Agent } = loadCoap();
  const type = family === 6 ? 'udp6' : 'udp4';
  const socket = dgram.createSocket(type);
  const users = new Set<LinkUser>();
  const link: CoapLink = {
    key,
    socket,
    agent: undefined as unknown as CoapLink['agent'],
    users,
    connected: new Promise<void>((resolve) => socket.connect(port, address, () => resolve())),
    open: true,
  };
  const broken = (err: unknown): void => {
    // An ICMP "port unreachable" reaches every exchange on the socket: none will get an answer.
    if (links.get(key) === link) links.delete(key);
    for (const user of [...users]) user.fail(err);
  };
  socket.once('close', () => {
    link.open = false;
  });
  socket.on('error', broken);
  socket.on('message', (message: Buffer) => {
    const token = tokenOf(message);
    if (token === '') return;
    for (const user of users) {
      if (user.token !== token) continue;
      user.received += message.length;
      // Block-wise answers are reassembled inside the agent: cap what it may collect.
      if (user.received > MAX_ANSWER_BYTES) user.fail('too large');
    }
  });
  link.agent = new Agent({
    socket: new ConnectedDatagram(socket, type) as unknown as dgram.Socket,
  });
  link.agent.on('error', broken);
  links.set(key, link);
  return link;
}

function closeLink(link: CoapLink): Promise<void> {
  if (link.idle !== undefined) clearTimeout(link.idle);
  link.idle = undefined;
  if (links.get(link.key) === link) links.delete(link.key);
  link.closing ??= (async () => {
    // Let the ACK of a separate answer leave before the socket closes.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (link.open) await new Promise<void>((resolve) => link.socket.close(() => resolve()));
  })();
  return link.closing;
}

function joinLink(link: CoapLink, user: LinkUser): void {
  if (link.idle !== undefined) {
    clearTimeout(link.idle);
    link.idle = undefined;
    link.socket.ref();
  }
  link.users.add(user);
}

/**
 * Leaves a link. The last user of a link still handed out leaves it idle for the next exchange;
 * of a link taken out of service (no answer, socket error, closeCoapLinks) it closes the socket
 * and waits for that.
 */
function leaveLink(link: CoapLink, user: LinkUser): Promise<void> | undefined {
  link.users.delete(user);
  if (link.users.size > 0) return undefined;
  if (links.get(link.key) !== link) return closeLink(link);
  link.socket.unref();
  link.idle = setTimeout(() => void closeLink(link), LINK_IDLE_MS);
  link.idle.unref();
  return undefined;
}

/** Closes the idle links and takes the busy ones out of service; the node calls it on close. */
export function closeCoapLinks(): Promise<void> {
  const closing: Array<Promise<void>> = [];
  for (const link of [...links.values()]) {
    links.delete(link.key);
    if (link.users.size === 0) closing.push(closeLink(link));
  }
  return Promise.all(closing).then(() => undefined);
}

/** One confirmable request and its answer, piggy-backed or separate, over the server's link. */
async function sendCoap<T>(
  target: TransportTarget,
  endpoint: Endpoint,
  x: ExchangeControl<T>,
  call: CoapCall<T>,
): Promise<void> {
  const { address, family } = await resolveAddress(target.host);
  if (x.settled) return;
  const key = `${address}|${target.port}`;
  const link = links.get(key) ?? openLink(key, address, family, target.port);
  let answered = false;
  const user: LinkUser = {
    received: 0,
    fail: (err) =>
      x.fail(
        err === 'too large'
          ? answerTooLargeError(endpoint, MAX_ANSWER_BYTES)
          : connectionFailure(err, endpoint, x.delivered),
      ),
  };
  joinLink(link, user);
  x.onTeardown(() => leaveLink(link, user));

  await link.connected;
  if (x.settled) return;

  const params: CoapRequestParams = {
    hostname: address,
    port: target.port,
    method: call.method,
    confirmable: true,
    options: { 'Uri-Path': call.path.map((segment) => Buffer.from(segment, 'utf8')) },
  };
  if (call.payload !== undefined) params.contentFormat = 'application/json';
  const counters = link.agent as unknown as AgentCounters;
  counters._lastMessageId = lastMessageId;
  const request: OutgoingMessage = link.agent.request(params);
  // Runs before leaving the link (release steps run newest first): stops retransmission timers.
  x.onTeardown(() => {
    if (answered) return;
    link.agent.abort(request);
    // No answer (timeout, reset, abort): later exchanges get a new socket, in case the server
    // stopped answering this one.
    if (links.get(link.key) === link) links.delete(link.key);
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
  lastMessageId = counters._lastMessageId;
  const token = (request as unknown as { _packet?: { token?: Buffer } })._packet?.token;
  if (token) user.token = token.toString('hex');
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
