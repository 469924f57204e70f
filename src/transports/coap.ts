/**
 * Provisioning over CoAP: a confirmable POST /api/v1/provision, encoded and parsed with
 * coap-packet on a UDP socket of our own, shared by the exchanges to the same server and closed a
 * second after the last one ends (unref'd meanwhile, never keeping the process alive). The
 * exchange itself is small (RFC 7252): retransmit the request until acknowledged, take the answer
 * piggy-backed on the ACK or sent apart (and acknowledge that), follow a block-wise answer
 * (RFC 7959); the deadline, not the ~93 s of retransmissions, decides when to give up.
 *
 * Not the coap package's agent: its streams and objects per exchange cost more than the exchange.
 */

import type { NamedOption, ParsedPacket } from 'coap-packet';
import {
  MAX_ANSWER_BYTES,
  ProvisionError,
  classifyCoapResponse,
  serializeRequest,
} from '../protocol';
import type { ProvisionAnswer } from '../protocol';
import { answerTooLargeError, connectionFailure, describeEndpoint, runExchange } from './exchange';
import type { Endpoint, ExchangeControl } from './exchange';
import { nextMessageId } from './coap-ids';
import {
  codec,
  joinLink,
  leaveLink,
  links,
  nextToken,
  openLink,
  resolveAddress,
  type LinkUser,
} from './coap-link';

export { closeCoapLinks } from './coap-link';
import type { Transport, TransportOptions, TransportTarget } from './types';

export const PROVISION_PATH = '/api/v1/provision';

export const DTLS_NOT_OFFERED =
  'CoAP over DTLS is not offered; use MQTT or HTTP with TLS, or turn TLS off for CoAP';

/** RFC 7252 transmission parameters: the first wait is 2-3 s, doubled for each of 4 retries. */
const ACK_TIMEOUT_MS = 2000;
const ACK_RANDOM_FACTOR = 1.5;
const MAX_RETRANSMIT = 4;
/** Whole steps for the first wait: Node keeps one timer list per distinct duration. */
const ACK_TIMEOUT_STEP_MS = 100;

/** RFC 7252's random first wait, in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR]. */
function firstWait(): number {
  const steps = (ACK_TIMEOUT_MS * (ACK_RANDOM_FACTOR - 1)) / ACK_TIMEOUT_STEP_MS;
  return ACK_TIMEOUT_MS + ACK_TIMEOUT_STEP_MS * Math.floor(Math.random() * (steps + 1));
}

/** Content-Format application/json (50). */
const JSON_FORMAT: NamedOption = { name: 'Content-Format', value: Buffer.from([50]) };

function endpointOf(target: TransportTarget): Endpoint {
  return { transport: 'CoAP', host: target.host, port: target.port };
}

interface CoapCall<T> {
  method: 'GET' | 'POST';
  /** Uri-Path segments, sent as they are (a token may hold any character). */
  path: string[];
  payload?: string;
  onAnswer(code: string, payload: Buffer): T;
  /** The error for a request too large for one datagram (coap-packet's reason); nothing was sent. */
  tooLarge?(reason: string): ProvisionError;
}

/** A Block2 option's block number, whether more follow, and its size exponent (RFC 7959). */
function block2Of(packet: ParsedPacket): { num: number; more: boolean; szx: number } | undefined {
  const option = packet.options.find((o) => o.name === 'Block2');
  if (option === undefined) return undefined;
  let value = 0;
  for (const byte of option.value) value = value * 256 + byte;
  return { num: Math.floor(value / 16), more: (value & 0x08) !== 0, szx: value & 0x07 };
}

function block2Option(num: number, szx: number): NamedOption {
  const value = num * 16 + szx;
  const bytes: number[] = [];
  for (let rest = value; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff);
  return { name: 'Block2', value: Buffer.from(bytes) };
}

/**
 * One confirmable request and its answer, piggy-backed or separate, over the server's link; a
 * block-wise answer is asked for block by block, each a confirmable request of its own.
 */
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
  const token = nextToken(link);
  const tokenKey = token.toString('hex');
  const options: NamedOption[] = call.path.map((segment) => ({
    name: 'Uri-Path',
    value: Buffer.from(segment, 'utf8'),
  }));
  if (call.payload !== undefined) options.push(JSON_FORMAT);
  const payload = call.payload === undefined ? undefined : Buffer.from(call.payload, 'utf8');
  let messageId = -1;
  let retransmit: NodeJS.Timeout | undefined;
  let received = 0;
  const blocks: Buffer[] = [];
  let answered = false;

  const stopRetransmitting = (): void => {
    clearTimeout(retransmit);
    retransmit = undefined;
    if (link.byMessageId.get(messageId) === user) link.byMessageId.delete(messageId);
  };
  /** Sends the request (or its ask for block `block`) and resends it until acknowledged. */
  const request = (block?: NamedOption): void => {
    stopRetransmitting();
    messageId = nextMessageId();
    link.byMessageId.set(messageId, user);
    let datagram: Buffer;
    try {
      datagram = codec().generate({
        confirmable: true,
        messageId,
        token,
        code: call.method === 'GET' ? '0.01' : '0.02',
        options: block === undefined ? options : [...options, block],
        payload,
      });
    } catch (err) {
      // coap-packet refuses a datagram over 1 280 bytes; its reason gives only the sizes.
      const reason = (err as Error).message;
      x.fail(
        call.tooLarge?.(reason) ??
          new ProvisionError(
            'PROTOCOL_ERROR',
            `The request to ${describeEndpoint(endpoint)} does not fit in one CoAP datagram ` +
              `(${reason}). Nothing was sent; use MQTT or HTTP for this device.`,
            { transient: false },
          ),
      );
      return;
    }
    let wait = firstWait();
    let sent = 0;
    const transmit = (): void => {
      if (sent > MAX_RETRANSMIT) {
        x.fail(
          new ProvisionError(
            'TIMEOUT',
            `The CoAP server at ${describeEndpoint(endpoint)} acknowledged nothing after all ` +
              'retransmissions. Check the host, the port and that the server is running.',
            { transient: true, maybeDelivered: true },
          ),
        );
        return;
      }
      sent++;
      link.socket.send(datagram);
      retransmit = setTimeout(transmit, wait);
      retransmit.unref();
      wait *= 2;
    };
    transmit();
  };

  const user: LinkUser = {
    fail: (err) => x.fail(connectionFailure(err, endpoint, x.delivered)),
    onEmpty(packet) {
      stopRetransmitting();
      if (!packet.reset) return; // An empty ACK: the answer comes apart.
      x.fail(
        new ProvisionError(
          'CONNECTION_ERROR',
          `The CoAP server at ${describeEndpoint(endpoint)} reset the exchange (RST) instead of ` +
            'answering. Check the host, the port and that the CoAP transport is enabled.',
          { transient: true, maybeDelivered: true },
        ),
      );
    },
    onAnswer(packet, size) {
      const block = block2Of(packet);
      // A block asked for before (a repeated answer) is not the one awaited now.
      if ((block?.num ?? 0) !== blocks.length) return;
      stopRetransmitting();
      received += size;
      if (received > MAX_ANSWER_BYTES) {
        x.fail(answerTooLargeError(endpoint, MAX_ANSWER_BYTES));
        return;
      }
      blocks.push(packet.payload);
      if (block?.more) {
        request(block2Option(block.num + 1, block.szx));
        return;
      }
      answered = true;
      try {
        x.succeed(
          call.onAnswer(packet.code, blocks.length === 1 ? blocks[0] : Buffer.concat(blocks)),
        );
      } catch (err) {
        x.fail(err);
      }
    },
  };
  joinLink(link, user);
  link.byToken.set(tokenKey, user);
  x.onTeardown(() => {
    stopRetransmitting();
    if (link.byToken.get(tokenKey) === user) link.byToken.delete(tokenKey);
    // No answer (timeout, reset, abort): later exchanges get a new socket, in case the server
    // stopped answering this one.
    if (!answered && links.get(link.key) === link) links.delete(link.key);
    return leaveLink(link, user);
  });

  await link.connected;
  if (x.settled) return;
  request();
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

export interface CoapAnswer {
  code: string;
  payload: Buffer;
}

export interface CoapRequest {
  method: 'GET' | 'POST';
  /** Uri-Path segments, sent as they are (a token may hold any character). */
  path: string[];
  payload?: string;
  /** What the exchange waits for, in error texts: never the path, which may hold a token. */
  waitingFor: string;
  tooLarge?(reason: string): ProvisionError;
}

/**
 * One confirmable request over the server's shared link, answered with its code and payload
 * whatever they are. A target with TLS is refused: DTLS is not offered.
 */
export function coapRequest(
  target: TransportTarget,
  request: CoapRequest,
  options: TransportOptions,
): Promise<CoapAnswer> {
  if (target.tls !== undefined) {
    return Promise.reject(new ProvisionError('INVALID_INPUT', DTLS_NOT_OFFERED));
  }
  const endpoint = endpointOf(target);
  return runExchange<CoapAnswer>(endpoint, options, request.waitingFor, (x) =>
    sendCoap(target, endpoint, x, {
      ...request,
      onAnswer: (code, payload) => ({ code, payload }),
    }),
  );
}

/** GET /api/v1/{token}/attributes: true on 2.05 (or 4.04), false when the server refuses the token. */
export async function checkCoapToken(
  target: TransportTarget,
  token: string,
  options: TransportOptions,
): Promise<boolean> {
  const { code } = await coapRequest(
    target,
    {
      method: 'GET',
      path: ['api', 'v1', token, 'attributes'],
      waitingFor: 'the answer of the device API',
    },
    options,
  );
  // "Not found" is a device without attributes yet, as every new device: the token was taken.
  if (code.startsWith('2.') || code === '4.04') return true;
  if (code === '4.01') return false;
  throw new ProvisionError(
    'PROTOCOL_ERROR',
    `The device API at ${describeEndpoint(endpointOf(target))} answered CoAP ${code} when asked ` +
      'for the attributes of the device; the credentials could not be checked.',
    { transient: code.startsWith('5.') },
  );
}
