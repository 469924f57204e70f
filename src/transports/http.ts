/**
 * Provisioning over HTTP(S): POST /api/v1/provision with the JSON body, through one keep-alive
 * agent per scheme and TLS configuration. The body is read with a byte cap whatever its type.
 */

import * as http from 'node:http';
import * as https from 'node:https';
import type { Socket } from 'node:net';
import {
  MAX_ANSWER_BYTES,
  ProvisionError,
  classifyHttpResponse,
  serializeRequest,
} from '../protocol';
import type { ProvisionAnswer } from '../protocol';
import {
  answerTooLargeError,
  closedBeforeAnswerError,
  connectionFailure,
  describeEndpoint,
  runExchange,
  tlsHandshakeWatch,
} from './exchange';
import type { Endpoint, ExchangeControl } from './exchange';
import { tlsConnectOptions, tlsIdentity } from './tls-options';
import type { Transport, TransportOptions, TransportTarget } from './types';

export const PROVISION_PATH = '/api/v1/provision';

/** Idle keep-alive sockets close before common server keep-alive timeouts (Node 5 s). */
const IDLE_SOCKET_MS = 4000;

const agents = new Map<string, http.Agent>();

function agentFor(target: TransportTarget): http.Agent {
  const key = target.tls ? `https:${tlsIdentity(target)}` : 'http';
  let agent = agents.get(key);
  if (agent === undefined) {
    agent = target.tls
      ? new https.Agent({
          keepAlive: true,
          timeout: IDLE_SOCKET_MS,
          ...tlsConnectOptions(undefined, target.tls),
        })
      : new http.Agent({ keepAlive: true, timeout: IDLE_SOCKET_MS });
    agents.set(key, agent);
  }
  return agent;
}

/** Destroys every pooled HTTP(S) connection; called when the node closes and by tests. */
export function closeHttpAgents(): void {
  for (const agent of agents.values()) agent.destroy();
  agents.clear();
}

function endpointOf(target: TransportTarget): Endpoint {
  return { transport: 'HTTP', host: target.host, port: target.port };
}

interface HttpCall<T> {
  method: 'GET' | 'POST';
  path: string;
  body?: string;
  /** Turns a complete answer into the result; may throw a ProvisionError. */
  onAnswer(statusCode: number, body: Buffer): T;
}

/** Sends one request and reads one capped answer; destroys the connection unless it ended clean. */
function sendHttp<T>(
  target: TransportTarget,
  endpoint: Endpoint,
  x: ExchangeControl<T>,
  call: HttpCall<T>,
): void {
  const headers: http.OutgoingHttpHeaders = { Accept: 'application/json' };
  if (call.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = Buffer.byteLength(call.body);
  }
  const request = (target.tls ? https : http).request({
    hostname: target.host,
    port: target.port,
    method: call.method,
    path: call.path,
    headers,
    agent: agentFor(target),
  });
  let socket: Socket | undefined;
  let answered = false;
  let inTlsHandshake = () => false;

  request.on('socket', (assigned: Socket) => {
    socket = assigned;
    if (target.tls) inTlsHandshake = tlsHandshakeWatch(assigned);
  });
  request.on('finish', () => x.markDelivered());
  request.on('error', (err) => {
    x.fail(connectionFailure(err, endpoint, x.delivered, { duringTlsHandshake: inTlsHandshake() }));
  });
  request.on('response', (response: http.IncomingMessage) => {
    const statusCode = response.statusCode ?? 0;
    const declared = Number(response.headers['content-length']);
    if (Number.isFinite(declared) && declared > MAX_ANSWER_BYTES) {
      x.fail(answerTooLargeError(endpoint, MAX_ANSWER_BYTES));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    response.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_ANSWER_BYTES) x.fail(answerTooLargeError(endpoint, MAX_ANSWER_BYTES));
      else chunks.push(chunk);
    });
    response.on('error', (err) => x.fail(connectionFailure(err, endpoint, true)));
    response.on('end', () => {
      answered = true;
      try {
        x.succeed(call.onAnswer(statusCode, Buffer.concat(chunks, size)));
      } catch (err) {
        x.fail(err);
      }
    });
    response.on('close', () => {
      if (!answered) x.fail(closedBeforeAnswerError(endpoint, true));
    });
  });

  x.onTeardown(() => {
    // A complete answer leaves the socket to the keep-alive pool; anything else closes it.
    if (answered) return undefined;
    request.destroy();
    const closing: Array<Promise<void>> = [];
    if (!request.closed) closing.push(new Promise((resolve) => request.once('close', resolve)));
    if (socket !== undefined && !socket.closed) {
      const open = socket;
      closing.push(new Promise((resolve) => open.once('close', () => resolve())));
    }
    return Promise.all(closing).then(() => undefined);
  });

  request.end(call.body);
}

/** One provisioning exchange over HTTP (HTTPS when target.tls is set). */
export const httpTransport: Transport = (target, request, options) => {
  const endpoint = endpointOf(target);
  return runExchange<ProvisionAnswer>(
    endpoint,
    options,
    `the answer to POST ${PROVISION_PATH}`,
    (x) => {
      sendHttp(target, endpoint, x, {
        method: 'POST',
        path: PROVISION_PATH,
        body: serializeRequest(request),
        // HTTP 200 carries SUCCESS, NOT_FOUND and FAILURE alike: the body decides, whatever its type.
        onAnswer: (statusCode, body) => classifyHttpResponse(statusCode, body),
      });
    },
  );
};

/** GET /api/v1/{token}/attributes: true when the server accepts the token, false when it refuses. */
export function checkHttpToken(
  target: TransportTarget,
  token: string,
  options: TransportOptions,
): Promise<boolean> {
  const endpoint = endpointOf(target);
  return runExchange<boolean>(endpoint, options, 'the answer of the device API', (x) => {
    sendHttp(target, endpoint, x, {
      method: 'GET',
      path: `/api/v1/${encodeURIComponent(token)}/attributes`,
      onAnswer: (statusCode) => {
        if (statusCode >= 200 && statusCode <= 299) return true;
        if (statusCode === 401 || statusCode === 403 || statusCode === 404) return false;
        throw new ProvisionError(
          'PROTOCOL_ERROR',
          `The device API at ${describeEndpoint(endpoint)} answered HTTP ${statusCode} when ` +
            'asked for the attributes of the device; the credentials could not be checked.',
          { transient: statusCode >= 500 },
        );
      },
    });
  });
}
