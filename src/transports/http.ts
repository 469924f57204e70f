/**
 * Provisioning over HTTP(S): POST /api/v1/provision with the JSON body, through undici, one
 * keep-alive connection pool per server and TLS configuration. The body is read with a byte cap
 * whatever its type.
 *
 * undici rather than node:http: its dispatcher builds no request and response streams per exchange.
 * Its pools connect through connectSocket() below, so an HTTPS connection reuses the parsed TLS
 * material and the server's last session like MQTT over TLS, and a TLS handshake that fails is
 * still told apart from a refused certificate.
 */

import * as net from 'node:net';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';
import {
  MAX_ANSWER_BYTES,
  ProvisionError,
  classifyHttpResponse,
  serializeRequest,
} from '../protocol';
import type { ProvisionAnswer } from '../protocol';
import {
  answerTooLargeError,
  cancelledError,
  closedBeforeAnswerError,
  connectionFailure,
  describeEndpoint,
  runExchange,
  tlsHandshakeWatch,
} from './exchange';
import type { Endpoint, ExchangeControl } from './exchange';
import { connectTo, tlsIdentity } from './tls-options';
import type { Transport, TransportOptions, TransportTarget } from './types';

export const PROVISION_PATH = '/api/v1/provision';

/** Idle keep-alive sockets close before common server keep-alive timeouts (Node 5 s). */
const IDLE_SOCKET_MS = 4000;

/** A pool and the connections it is still opening (closed with it). */
interface ServerPool {
  pool: Pool;
  connecting: Set<net.Socket>;
}

const pools = new Map<string, ServerPool>();

/** Errors a connection met between its TCP connect and the end of its TLS handshake. */
const handshakeErrors = new WeakSet<object>();

interface ConnectionName {
  localAddress?: string;
  localPort?: number;
  remoteAddress?: string;
  remotePort?: number;
}

function connectionName(socket: ConnectionName): string {
  return `${socket.localAddress}|${socket.localPort}|${socket.remoteAddress}|${socket.remotePort}`;
}

/**
 * The first error each open connection met, by its addresses. undici reports a connection that
 * ended mid-exchange as "other side closed" even when the socket said why first, as a TLS 1.3
 * server does when it refuses a missing client certificate after the handshake.
 */
const connectionErrors = new Map<string, Error>();

/** Keeps what a connection handed to undici says when it fails, until it has closed. */
function rememberErrors(socket: net.Socket): void {
  const name = connectionName(socket);
  socket.on('error', (err: Error & { code?: unknown }) => {
    // undici destroys the socket with its own report, which must not hide the first error.
    if (typeof err.code === 'string' && err.code.startsWith('UND_ERR_')) return;
    if (!connectionErrors.has(name)) connectionErrors.set(name, err);
  });
  socket.once('close', () => connectionErrors.delete(name));
}

/**
 * Opens one connection for a pool through connectTo(): plain TCP, or TLS. While it connects the
 * socket is unref'd (an exchange's deadline timer keeps the process alive meanwhile) and listed,
 * so closeHttpAgents() can stop it.
 */
function connectSocket(
  target: TransportTarget,
  connecting: Set<net.Socket>,
  callback: (...args: [null, net.Socket] | [Error, null]) => void,
): void {
  let socket: net.Socket;
  try {
    socket = connectTo(target);
  } catch (err) {
    // A TLS configuration that cannot be used (a bad key or passphrase) fails here, at once.
    callback(err as Error, null);
    return;
  }
  socket.unref();
  connecting.add(socket);
  const inTlsHandshake = target.tls ? tlsHandshakeWatch(socket) : () => false;
  const finish = (err?: Error): void => {
    connecting.delete(socket);
    socket.off(ready, onReady);
    socket.off('error', onError);
    socket.off('close', onClose);
    socket.ref();
    if (err === undefined) {
      callback(null, socket);
      // After undici's listeners, so its report of a close comes before this forgets the error.
      rememberErrors(socket);
      return;
    }
    socket.destroy();
    callback(err, null);
  };
  const ready = target.tls ? 'secureConnect' : 'connect';
  const onReady = (): void => finish();
  const onError = (err: Error): void => {
    if (inTlsHandshake()) handshakeErrors.add(err);
    finish(err);
  };
  const onClose = (): void => {
    const err = Object.assign(new Error('closed while connecting'), { code: 'ECONNRESET' });
    onError(err);
  };
  socket.once(ready, onReady);
  socket.once('error', onError);
  socket.once('close', onClose);
}

function poolFor(target: TransportTarget): Pool {
  const key = `${tlsIdentity(target)}|${target.host}|${target.port}`;
  let entry = pools.get(key);
  if (entry === undefined) {
    const host = target.host.includes(':') ? `[${target.host}]` : target.host;
    const connecting = new Set<net.Socket>();
    const pool = new Pool(`${target.tls ? 'https' : 'http'}://${host}:${target.port}`, {
      connect: (_options, callback) => connectSocket(target, connecting, callback),
      keepAliveTimeout: IDLE_SOCKET_MS,
      keepAliveMaxTimeout: IDLE_SOCKET_MS,
      // The exchange's deadline bounds every wait; undici's own timers would only add work.
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    entry = { pool, connecting };
    pools.set(key, entry);
  }
  return entry.pool;
}

/** Destroys every pooled HTTP(S) connection; called when the node closes and by tests. */
export function closeHttpAgents(): void {
  for (const { pool, connecting } of pools.values()) {
    for (const socket of connecting) socket.destroy();
    pool.destroy().catch(() => undefined);
  }
  pools.clear();
}

function endpointOf(target: TransportTarget): Endpoint {
  return { transport: 'HTTP', host: target.host, port: target.port };
}

/** What undici reported, as a ProvisionError naming the connection's own error where known. */
function httpFailure(reported: Error, endpoint: Endpoint, delivered: boolean): ProvisionError {
  let err = reported;
  const { code, socket } = reported as { code?: unknown; socket?: ConnectionName };
  if (code === 'UND_ERR_CLOSED' || code === 'UND_ERR_DESTROYED') {
    // The pool was closed (closeHttpAgents) under the exchange.
    return closedBeforeAnswerError(endpoint, delivered, reported);
  }
  if (code === 'UND_ERR_SOCKET') {
    const own = socket === undefined ? undefined : connectionErrors.get(connectionName(socket));
    if (own === undefined) return closedBeforeAnswerError(endpoint, delivered, reported);
    err = own;
  }
  return connectionFailure(err, endpoint, delivered, {
    duringTlsHandshake: handshakeErrors.has(err),
  });
}

interface HttpCall<T> {
  method: 'GET' | 'POST';
  path: string;
  body?: string;
  /** Turns a complete answer into the result; may throw a ProvisionError. */
  onAnswer(statusCode: number, body: Buffer): T;
}

const JSON_HEADERS = { accept: 'application/json', 'content-type': 'application/json' };
const ACCEPT_JSON = { accept: 'application/json' };

/** Sends one request and reads one capped answer; an unfinished exchange closes its connection. */
function sendHttp<T>(
  target: TransportTarget,
  endpoint: Endpoint,
  x: ExchangeControl<T>,
  call: HttpCall<T>,
): void {
  let controller: Dispatcher.DispatchController | undefined;
  let answered = false;
  let statusCode = 0;
  const chunks: Buffer[] = [];
  let size = 0;
  const tooLarge = (): void => x.fail(answerTooLargeError(endpoint, MAX_ANSWER_BYTES));
  const handler: Dispatcher.DispatchHandler = {
    onRequestStart(started) {
      controller = started;
      // Settled while the request waited for a connection: it never goes out.
      if (x.settled) started.abort(cancelledError());
      else x.markDelivered();
    },
    onResponseStart(_controller, status, headers) {
      statusCode = status;
      const declared = Number(headers['content-length']);
      if (Number.isFinite(declared) && declared > MAX_ANSWER_BYTES) tooLarge();
    },
    onResponseData(_controller, chunk) {
      size += chunk.length;
      if (size > MAX_ANSWER_BYTES) tooLarge();
      else chunks.push(chunk);
    },
    onResponseEnd() {
      answered = true;
      try {
        x.succeed(call.onAnswer(statusCode, Buffer.concat(chunks, size)));
      } catch (err) {
        x.fail(err);
      }
    },
    onResponseError(_controller, err) {
      x.fail(httpFailure(err, endpoint, x.delivered));
    },
  };
  x.onTeardown(() => {
    // A complete answer leaves the connection to the pool; anything else closes it.
    if (!answered && controller !== undefined && !controller.aborted) {
      controller.abort(cancelledError());
    }
  });
  poolFor(target).dispatch(
    {
      path: call.path,
      method: call.method,
      headers: call.body === undefined ? ACCEPT_JSON : JSON_HEADERS,
      body: call.body,
    },
    handler,
  );
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

export interface HttpAnswer {
  statusCode: number;
  body: Buffer;
}

export interface HttpRequest {
  method: 'GET' | 'POST';
  path: string;
  /** JSON text. */
  body?: string;
  /** What the exchange waits for, in error texts: never the path, which may hold a token. */
  waitingFor: string;
}

/** One request through the server's keep-alive pool, answered with its status and capped body. */
export function httpRequest(
  target: TransportTarget,
  request: HttpRequest,
  options: TransportOptions,
): Promise<HttpAnswer> {
  const endpoint = endpointOf(target);
  return runExchange<HttpAnswer>(endpoint, options, request.waitingFor, (x) => {
    sendHttp(target, endpoint, x, {
      method: request.method,
      path: request.path,
      body: request.body,
      onAnswer: (statusCode, body) => ({ statusCode, body }),
    });
  });
}

/** GET /api/v1/{token}/attributes: true when the server accepts the token, false when it refuses. */
export async function checkHttpToken(
  target: TransportTarget,
  token: string,
  options: TransportOptions,
): Promise<boolean> {
  const { statusCode } = await httpRequest(
    target,
    {
      method: 'GET',
      path: `/api/v1/${encodeURIComponent(token)}/attributes`,
      waitingFor: 'the answer of the device API',
    },
    options,
  );
  if (statusCode >= 200 && statusCode <= 299) return true;
  // The device API refuses a token with 401 only; anything else says nothing about it.
  if (statusCode === 401) return false;
  throw new ProvisionError(
    'PROTOCOL_ERROR',
    `The device API at ${describeEndpoint(endpointOf(target))} answered HTTP ${statusCode} when ` +
      'asked for the attributes of the device; the credentials could not be checked.',
    { transient: statusCode >= 500 },
  );
}
