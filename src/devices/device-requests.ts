/**
 * Device data over HTTP and CoAP: one POST per message with the access token in the path, no
 * session. HTTP goes through the transports' keep-alive pool, CoAP as a confirmable request on
 * their shared UDP link.
 */

import { DeviceError } from '../protocol/device-errors';
import type { DeviceDataKind } from '../protocol/device-data';
import { ProvisionError } from '../protocol/errors';
import { quotePrefix } from '../protocol/text';
import { coapModule, httpModule } from '../transports/lazy';
import { describeEndpoint } from '../transports/exchange';
import type { Endpoint } from '../transports/exchange';
import type { TransportTarget } from '../transports/types';
import { accessTokenFor } from './login';
import { fromTransportError } from './session-errors';
import type { DeviceLogin, DeviceServer } from './types';

export interface DeviceRequest {
  target: TransportTarget;
  token: string;
  kind: DeviceDataKind;
  text: string;
  timeoutMs: number;
  /** The device's name, quoted for messages. */
  device: string;
}

function refused(endpoint: Endpoint, device: string, answered: string): DeviceError {
  return new DeviceError(
    'UNAUTHORIZED',
    `ThingsBoard at ${describeEndpoint(endpoint)} refused the access token of device ${device} ` +
      `(${answered}): the device was deleted or its credentials changed. Provision it again or ` +
      'hand over its current credentials.',
    { sent: true },
  );
}

function notRead(endpoint: Endpoint, device: string, answered: string): DeviceError {
  return new DeviceError(
    'PROTOCOL_ERROR',
    `${describeEndpoint(endpoint)} could not take the data of device ${device} (${answered}). ` +
      "The data was checked before sending: check that the device profile's payload type is " +
      'JSON and see the server log.',
    { sent: true },
  );
}

/** One message of a device over HTTP(S) or CoAP, with its access token, to the config node's server. */
export function postDeviceData(
  server: DeviceServer,
  transport: 'http' | 'coap',
  login: DeviceLogin,
  data: { deviceName: string; kind: DeviceDataKind; text: string; timeoutMs: number },
): Promise<void> {
  const { host, ports, tls } = server;
  const post = transport === 'http' ? postOverHttp : postOverCoap;
  return post({
    target:
      transport === 'http' && tls
        ? { host, port: ports.http, tls }
        : { host, port: ports[transport] },
    token: accessTokenFor(transport, login),
    kind: data.kind,
    text: data.text,
    timeoutMs: data.timeoutMs,
    device: quotePrefix(data.deviceName, 64),
  });
}

/** POST /api/v1/{token}/telemetry|attributes over HTTP(S); resolves on 2xx. */
export async function postOverHttp(request: DeviceRequest): Promise<void> {
  const { target, device } = request;
  const endpoint: Endpoint = { transport: 'HTTP', host: target.host, port: target.port };
  let statusCode: number;
  try {
    ({ statusCode } = await httpModule().httpRequest(
      target,
      {
        method: 'POST',
        path: `/api/v1/${encodeURIComponent(request.token)}/${request.kind}`,
        body: request.text,
        waitingFor: `the answer to POST /api/v1/…/${request.kind}`,
      },
      { deadline: Date.now() + request.timeoutMs },
    ));
  } catch (err) {
    throw fromTransportError(err);
  }
  const answered = `HTTP ${statusCode}`;
  if (statusCode >= 200 && statusCode <= 299) return;
  if (statusCode === 401 || statusCode === 403) throw refused(endpoint, device, answered);
  if (statusCode === 400 || statusCode === 413) {
    throw new DeviceError(
      'INVALID_INPUT',
      `${describeEndpoint(endpoint)} refused the data of device ${device} as ` +
        (statusCode === 413
          ? 'too large (HTTP 413): split it into smaller messages.'
          : 'empty (HTTP 400).'),
      { sent: true },
    );
  }
  if (statusCode >= 500) throw notRead(endpoint, device, answered);
  throw new DeviceError(
    'PROTOCOL_ERROR',
    `${describeEndpoint(endpoint)} answered ${answered} to the data of device ${device}. Check ` +
      "that host and port point at ThingsBoard's HTTP device API.",
    { sent: true },
  );
}

/** Confirmable POST /api/v1/{token}/telemetry|attributes over CoAP; resolves on 2.xx. */
export async function postOverCoap(request: DeviceRequest): Promise<void> {
  const { target, device } = request;
  const endpoint: Endpoint = { transport: 'CoAP', host: target.host, port: target.port };
  let code: string;
  try {
    ({ code } = await coapModule().coapRequest(
      target,
      {
        method: 'POST',
        path: ['api', 'v1', request.token, request.kind],
        payload: request.text,
        waitingFor: `the answer to POST /api/v1/…/${request.kind}`,
        tooLarge: (reason) =>
          new ProvisionError(
            'INVALID_INPUT',
            `This message of device ${device} does not fit in one CoAP datagram (${reason}); ` +
              'nothing was sent. Send smaller messages, or send over MQTT or HTTP.',
          ),
      },
      { deadline: Date.now() + request.timeoutMs },
    ));
  } catch (err) {
    throw fromTransportError(err);
  }
  const answered = `CoAP ${code}`;
  if (code.startsWith('2.')) return;
  if (code === '4.01' || code === '4.03') throw refused(endpoint, device, answered);
  if (code === '4.13') {
    throw new DeviceError(
      'INVALID_INPUT',
      `${describeEndpoint(endpoint)} refused the data of device ${device} as too large ` +
        '(CoAP 4.13): split it into smaller messages.',
      { sent: true },
    );
  }
  if (code === '4.00' || code.startsWith('5.')) throw notRead(endpoint, device, answered);
  throw new DeviceError(
    'PROTOCOL_ERROR',
    `${describeEndpoint(endpoint)} answered ${answered} to the data of device ${device}. Check ` +
      "that host and port point at ThingsBoard's CoAP device API.",
    { sent: true },
  );
}
