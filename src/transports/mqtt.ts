/**
 * Provisioning over MQTT 3.1.1: CONNECT as "provision", subscribe to /provision/response, publish
 * the request on /provision/request, take the first answer, disconnect. One request per connection.
 */

import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { IClientOptions, MqttClient, Packet } from 'mqtt';
import {
  MAX_ANSWER_BYTES,
  ProvisionError,
  classifyMqttResponse,
  serializeRequest,
} from '../protocol';
import type { MqttBasicCredentialsValue, ProvisionAnswer } from '../protocol';
import {
  answerTooLargeError,
  closedBeforeAnswerError,
  connectionFailure,
  describeEndpoint,
  remainingMs,
  runExchange,
  timeoutError,
  tlsHandshakeClosed,
  tlsHandshakeWatch,
} from './exchange';
import type { Endpoint, ExchangeControl } from './exchange';
import { tlsConnectOptions } from './tls-options';
import type { Transport, TransportOptions, TransportTarget } from './types';

export const PROVISION_REQUEST_TOPIC = '/provision/request';
export const PROVISION_RESPONSE_TOPIC = '/provision/response';
/** ThingsBoard recognises a provisioning connection by this user name. */
export const PROVISION_USERNAME = 'provision';

const KEEPALIVE_SECONDS = 30;
const DISCONNECT_PACKET = Buffer.from([0xe0, 0x00]);

const CONNACK_REASONS: Record<number, string> = {
  1: 'unacceptable protocol version',
  2: 'client identifier rejected',
  3: 'server unavailable',
  4: 'bad user name or password',
  5: 'not authorised',
  0x80: 'unspecified error',
  0x84: 'unsupported protocol version',
  0x85: 'client identifier not valid',
  0x86: 'bad user name or password',
  0x87: 'not authorised',
  0x88: 'server unavailable',
  0x89: 'server busy',
  0x8a: 'banned',
  0x8c: 'bad authentication method',
};

/** CONNACK codes that mean "these credentials are not accepted" (3.1.1 and 5). */
const CREDENTIALS_REFUSED = new Set([2, 4, 5, 0x85, 0x86, 0x87, 0x8c]);
const SERVER_BUSY = new Set([3, 0x88, 0x89]);

let mqttModule: typeof import('mqtt') | undefined;

/** Loaded on first use so that loading the transports stays cheap. */
function loadMqtt(): typeof import('mqtt') {
  mqttModule ??= require('mqtt') as typeof import('mqtt');
  return mqttModule;
}

export function randomClientId(prefix = 'provision-'): string {
  return prefix + randomBytes(8).toString('hex');
}

interface SessionIdentity {
  clientId: string;
  username?: string;
  password?: string;
}

interface SessionEvents {
  /** CONNACK with its return code (0 accepted); the session ends if the code is not 0. */
  onConnack(code: number, client: MqttClient): void;
  onMessage?(topic: string, payload: Buffer): void;
}

function connackReason(code: number): string {
  return `CONNACK ${code}: ${CONNACK_REASONS[code] ?? 'refused'}`;
}

/**
 * Opens one MQTT connection on a socket we own, so that errors, the byte cap and the teardown are
 * exact; the mqtt client only speaks the protocol on it.
 */
function openSession<T>(
  target: TransportTarget,
  endpoint: Endpoint,
  options: TransportOptions,
  identity: SessionIdentity,
  x: ExchangeControl<T>,
  events: SessionEvents,
): void {
  const { MqttClient: Client } = loadMqtt();
  const startedAt = Date.now();
  const socket: net.Socket = target.tls
    ? tls.connect({
        host: target.host,
        port: target.port,
        ...tlsConnectOptions(target.host, target.tls),
      })
    : net.connect({ host: target.host, port: target.port });

  // SUBSCRIBE and PUBLISH go out back to back: Nagle would hold the second for a delayed ACK.
  socket.setNoDelay(true);
  let received = 0;
  let connected = false;
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length;
    // mqtt-packet buffers a whole packet before parsing: cap what we let it collect.
    if (received > MAX_ANSWER_BYTES) x.fail(answerTooLargeError(endpoint, MAX_ANSWER_BYTES));
  });
  const inTlsHandshake = target.tls ? tlsHandshakeWatch(socket) : () => false;
  socket.on('error', (err) => {
    if (x.settled) return;
    x.fail(connectionFailure(err, endpoint, x.delivered, { duringTlsHandshake: inTlsHandshake() }));
  });
  socket.on('close', () => {
    // The usual close is our own teardown: building an error (and its stack) for it costs.
    if (x.settled) return;
    if (inTlsHandshake()) x.fail(tlsHandshakeClosed(endpoint, 'closed'));
    else x.fail(closedBeforeAnswerError(endpoint, x.delivered));
  });

  const session: { client?: MqttClient } = {};
  x.onTeardown(async () => {
    // Let a PUBACK for the answer go out before the connection ends.
    await new Promise<void>((resolve) => setImmediate(resolve));
    await new Promise<void>((resolve) => {
      if (socket.closed) {
        resolve();
        return;
      }
      socket.once('close', () => resolve());
      if (connected && socket.writable) socket.write(DISCONNECT_PACKET);
      session.client?.end(true);
      socket.destroy();
    });
  });

  const clientOptions: IClientOptions = {
    protocolId: 'MQTT',
    protocolVersion: 4,
    clientId: identity.clientId,
    clean: true,
    reconnectPeriod: 0,
    // Our own deadline timer normally fires first; mqtt.js reports "connack timeout" otherwise.
    connectTimeout: remainingMs(options),
    keepalive: KEEPALIVE_SECONDS,
    resubscribe: false,
    queueQoSZero: false,
  };
  if (identity.username !== undefined) clientOptions.username = identity.username;
  if (identity.password !== undefined) clientOptions.password = identity.password;
  const client = new Client(() => socket, clientOptions);
  session.client = client;

  client.on('error', (err: Error) => {
    if (x.settled) return;
    if (err.message === 'connack timeout') {
      x.fail(timeoutError(endpoint, Date.now() - startedAt, 'the CONNACK', false));
    } else if (typeof (err as { code?: unknown }).code === 'string') {
      x.fail(connectionFailure(err, endpoint, x.delivered));
    } else {
      x.fail(
        new ProvisionError(
          'PROTOCOL_ERROR',
          `The server at ${describeEndpoint(endpoint)} does not speak MQTT as expected ` +
            `(${err.message}). Check that the port is the server's MQTT port.`,
          { maybeDelivered: x.delivered, cause: err },
        ),
      );
    }
  });
  client.on('packetreceive', (packet: Packet) => {
    // A refusal never reaches 'connect'; mqtt.js reports it as a generic error after this.
    if (packet.cmd !== 'connack' || x.settled) return;
    const code = packet.returnCode ?? packet.reasonCode ?? 0;
    if (code !== 0) events.onConnack(code, client);
  });
  client.on('connect', () => {
    if (x.settled) return;
    connected = true;
    events.onConnack(0, client);
  });
  client.on('message', (topic: string, payload: Buffer) => {
    if (!x.settled) events.onMessage?.(topic, payload);
  });
}

function endpointOf(target: TransportTarget): Endpoint {
  return { transport: 'MQTT', host: target.host, port: target.port };
}

function refusedError(endpoint: Endpoint, code: number, hint: string): ProvisionError {
  return new ProvisionError(
    'CONNECTION_ERROR',
    `The MQTT server at ${describeEndpoint(endpoint)} refused the connection ` +
      `(${connackReason(code)}). ${hint}`,
    { transient: SERVER_BUSY.has(code) },
  );
}

/** One provisioning exchange over MQTT (mqtt:// or mqtts:// when target.tls is set). */
export const mqttTransport: Transport = (target, request, options) => {
  const endpoint = endpointOf(target);
  return runExchange<ProvisionAnswer>(endpoint, options, 'the CONNACK', (x) => {
    const payload = serializeRequest(request);
    openSession(
      target,
      endpoint,
      options,
      { clientId: randomClientId(), username: PROVISION_USERNAME },
      x,
      {
        onConnack(code, client) {
          if (code !== 0) {
            x.fail(
              refusedError(
                endpoint,
                code,
                'ThingsBoard accepts provisioning with the user name "provision"; check that ' +
                  "host and port point at the server's MQTT transport.",
              ),
            );
            return;
          }
          x.waitingFor(`an answer on ${PROVISION_RESPONSE_TOPIC}`);
          // Servers before November 2024 never send a SUBACK: publish without waiting for it.
          client.subscribe(PROVISION_RESPONSE_TOPIC, { qos: 1 }, () => undefined);
          // The PUBACK comes just before the answer: the answer itself is what we wait for.
          client.publish(PROVISION_REQUEST_TOPIC, payload, { qos: 1 }, () => undefined);
          x.markDelivered();
        },
        onMessage(topic, message) {
          if (topic !== PROVISION_RESPONSE_TOPIC) return;
          try {
            x.succeed(classifyMqttResponse(message));
          } catch (err) {
            x.fail(err);
          }
        },
      },
    );
  });
};

export type CheckableCredentials =
  | { credentialsType: 'ACCESS_TOKEN'; credentialsValue: string }
  | { credentialsType: 'MQTT_BASIC'; credentialsValue: MqttBasicCredentialsValue };

/** Connects with device credentials: true on CONNACK 0, false when the server refuses them. */
export function checkMqttCredentials(
  target: TransportTarget,
  credentials: CheckableCredentials,
  options: TransportOptions,
): Promise<boolean> {
  const endpoint = endpointOf(target);
  const identity: SessionIdentity =
    credentials.credentialsType === 'ACCESS_TOKEN'
      ? { clientId: randomClientId('check-'), username: credentials.credentialsValue }
      : {
          clientId: credentials.credentialsValue.clientId || randomClientId('check-'),
          username: credentials.credentialsValue.userName,
          password: credentials.credentialsValue.password,
        };
  return runExchange<boolean>(endpoint, options, 'the CONNACK', (x) => {
    openSession(target, endpoint, options, identity, x, {
      onConnack(code) {
        if (code === 0) x.succeed(true);
        else if (CREDENTIALS_REFUSED.has(code)) x.succeed(false);
        else
          x.fail(
            refusedError(
              endpoint,
              code,
              "Check that host and port point at the server's MQTT transport.",
            ),
          );
      },
    });
  });
}
