/**
 * Checks credentials against ThingsBoard's device API, to learn after a lost answer whether the
 * device was created with the credentials the device chose.
 */

import { ProvisionError } from '../protocol/errors';
import type { ProvisionAnswer } from '../protocol/types';
import { coapModule, httpModule, mqttModule } from './lazy';
import type { TransportName, TransportOptions, TransportTarget } from './types';

function notCheckable(message: string): Promise<never> {
  return Promise.reject(new ProvisionError('PROTOCOL_ERROR', message));
}

/**
 * Resolves true when the server accepts the credentials, false when it refuses them; rejects with
 * a ProvisionError when the server cannot be asked (connection problems, timeout, abort).
 *
 * - MQTT: CONNECT with the token as user name, or with MQTT basic clientId/userName/password;
 *   CONNACK 0 is true, "bad user name or password" / "not authorised" is false.
 * - HTTP: GET /api/v1/{token}/attributes; 2xx true, 401 false, any other status PROTOCOL_ERROR.
 *   MQTT basic credentials cannot be checked over HTTP: rejects with PROTOCOL_ERROR, the caller
 *   falls back.
 * - CoAP: GET /api/v1/{token}/attributes; 2.05 true, and 4.04 true too (the server's answer for a
 *   device with no attributes, as every new device), 4.01 false, anything else PROTOCOL_ERROR.
 *   MQTT basic: as HTTP.
 * - X.509 credentials are never checkable here (it takes the device's private key and a TLS
 *   connection): rejects with PROTOCOL_ERROR on every transport.
 */
export function verifyDeviceCredentials(
  transport: TransportName,
  target: TransportTarget,
  answer: ProvisionAnswer,
  options: TransportOptions,
): Promise<boolean> {
  if (answer.credentialsType === 'X509_CERTIFICATE') {
    return notCheckable(
      'Cannot check X.509 credentials through the device API: it takes the device certificate ' +
        'and its private key on a TLS connection. Look the device up in ThingsBoard instead.',
    );
  }
  switch (transport) {
    case 'mqtt':
      return mqttModule().checkMqttCredentials(target, answer, options);
    case 'http':
      if (answer.credentialsType === 'MQTT_BASIC') {
        return notCheckable(
          'Cannot check MQTT basic credentials over HTTP: the HTTP device API takes access ' +
            'tokens only. Check them over MQTT.',
        );
      }
      return httpModule().checkHttpToken(target, answer.credentialsValue, options);
    case 'coap':
      if (answer.credentialsType === 'MQTT_BASIC') {
        return notCheckable(
          'Cannot check MQTT basic credentials over CoAP: the CoAP device API takes access ' +
            'tokens only. Check them over MQTT.',
        );
      }
      return coapModule().checkCoapToken(target, answer.credentialsValue, options);
    default:
      return Promise.reject(unknownTransport(transport));
  }
}

export function unknownTransport(name: unknown): ProvisionError {
  return new ProvisionError(
    'INVALID_INPUT',
    `Unknown transport ${JSON.stringify(String(name))}: use "mqtt", "http" or "coap".`,
  );
}
