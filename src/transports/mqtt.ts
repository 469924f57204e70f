/**
 * Provisioning over MQTT 3.1.1: CONNECT as "provision", subscribe to /provision/response, publish
 * the request on /provision/request, take the first answer, disconnect. One request per connection.
 */

import { randomBytes } from 'node:crypto';
import { generate, parser as createParser } from 'mqtt-packet';
import type { IConnectPacket, Packet } from 'mqtt-packet';
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
  tlsHandshakeClosed,
  tlsHandshakeWatch,
} from './exchange';
import type { Endpoint, ExchangeControl } from './exchange';
import { connectTo } from './tls-options';
import type { Transport, TransportOptions, TransportTarget } from './types';

export const PROVISION_REQUEST_TOPIC = '/provision/request';
export const PROVISION_RESPONSE_TOPIC = '/provision/response';
/** ThingsBoard recognises a provisioning connection by this user name. */
export const PROVISION_USERNAME = 'provision';

const KEEPALIVE_SECONDS = 30;
const MAX_KEEPALIVE_SECONDS = 65535;
const CODEC = { protocolVersion: 4 };
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
export const CREDENTIALS_REFUSED = new Set([2, 4, 5, 0x85, 0x86, 0x87, 0x8c]);
const SERVER_BUSY = new Set([3, 0x88, 0x89]);

export function randomClientId(prefix = 'provision-'): string {
  return prefix + randomBytes(8).toString('hex');
}

interface SessionIdentity {
  clientId: string;
  username?: string;
  password?: string;
}

/** What the owner of a session can do once the server has accepted it. */
interface Session {
  send(packet: Packet): void;
}

interface SessionEvents {
  /** CONNACK with its return code (0 accepted); the session ends if the code is not 0. */
  onConnack(code: number, session: Session): void;
  onMessage?(topic: string, payload: Buffer): void;
}

/** "CONNACK 5: not authorised": the code and what it means, for error texts. */
export function connackReason(code: number): string {
  return `CONNACK ${code}: ${CONNACK_REASONS[code] ?? 'refused'}`;
}

function notMqttError(
  endpoint: Endpoint,
  reason: string,
  maybeDelivered: boolean,
  cause: unknown,
): ProvisionError {
  return new ProvisionError(
    'PROTOCOL_ERROR',
    `The server at ${describeEndpoint(endpoint)} does not speak MQTT as expected ` +
      `(${reason}). Check that the port is the server's MQTT port.`,
    { maybeDelivered, cause },
  );
}

/**
 * Opens one MQTT 3.1.1 connection and speaks the few packets provisioning needs with mqtt.js's
 * own codec (mqtt-packet): a full client per device would cost more than the exchange itself.
 */
function openSession<T>(
  target: TransportTarget,
  endpoint: Endpoint,
  options: TransportOptions,
  identity: SessionIdentity,
  x: ExchangeControl<T>,
  events: SessionEvents,
): void {
  const connect: IConnectPacket = {
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clientId: identity.clientId,
    clean: true,
    // Long enough that the server never drops the connection as idle before our own deadline:
    // nothing needs to ping.
    keepalive: Math.min(
      MAX_KEEPALIVE_SECONDS,
      Math.max(KEEPALIVE_SECONDS, Math.ceil(remainingMs(options) / 1000)),
    ),
  };
  if (identity.username !== undefined) connect.username = identity.username;
  if (identity.password !== undefined) connect.password = Buffer.from(identity.password, 'utf8');
  let connectBytes: Buffer;
  try {
    connectBytes = generate(connect, CODEC);
  } catch (err) {
    // Credentials MQTT cannot carry (a password without a user name). mqtt-packet's reasons name
    // the field, never its value.
    x.fail(
      new ProvisionError(
        'PROTOCOL_ERROR',
        `These credentials cannot be sent in an MQTT CONNECT to ${describeEndpoint(endpoint)} ` +
          `(${(err as Error).message}).`,
        { transient: false, cause: err },
      ),
    );
    return;
  }

  const socket = connectTo(target);
  let connected = false;
  let received = 0;
  const session: Session = {
    send(packet) {
      if (!socket.destroyed) socket.write(generate(packet, CODEC));
    },
  };

  const parser = createParser(CODEC);
  parser.on('packet', (packet: Packet) => {
    if (x.settled) return;
    if (packet.cmd === 'connack') {
      if (connected) return;
      const code = packet.returnCode ?? packet.reasonCode ?? 0;
      connected = code === 0;
      events.onConnack(code, session);
    } else if (packet.cmd === 'publish') {
      // Acknowledged before it is handed on, so the acknowledgement leaves ahead of DISCONNECT.
      if (packet.qos === 1) session.send({ cmd: 'puback', messageId: packet.messageId });
      const { payload } = packet;
      events.onMessage?.(
        packet.topic,
        typeof payload === 'string' ? Buffer.from(payload) : payload,
      );
    }
  });
  parser.on('error', (err: Error) => {
    if (!x.settled) x.fail(notMqttError(endpoint, err.message, x.delivered, err));
  });
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length;
    // The parser buffers a whole packet before it hands it on: cap what we let it collect.
    if (received > MAX_ANSWER_BYTES) x.fail(answerTooLargeError(endpoint, MAX_ANSWER_BYTES));
    else parser.parse(chunk);
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
  x.onTeardown(
    () =>
      new Promise<void>((resolve) => {
        if (socket.closed) {
          resolve();
          return;
        }
        socket.once('close', () => resolve());
        if (connected && socket.writable) socket.write(DISCONNECT_PACKET);
        socket.destroy();
      }),
  );

  // Queued by the socket until it is connected (and through its TLS handshake).
  socket.write(connectBytes);
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
        onConnack(code, session) {
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
          session.send({
            cmd: 'subscribe',
            messageId: 1,
            subscriptions: [{ topic: PROVISION_RESPONSE_TOPIC, qos: 1 }],
          });
          // The PUBACK comes just before the answer: the answer itself is what we wait for.
          session.send({
            cmd: 'publish',
            messageId: 2,
            topic: PROVISION_REQUEST_TOPIC,
            payload,
            qos: 1,
            dup: false,
            retain: false,
          });
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
