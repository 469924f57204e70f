/** A device's login: from a provisioning answer, checked against a transport, made into MQTT terms. */

import { DeviceError, invalidInput } from '../protocol/device-errors';
import type { ProvisionAnswer } from '../protocol/types';
import type { TlsOptions, TransportName, TransportTarget } from '../transports/types';
import type { DeviceLogin, DeviceServer } from './types';

/** The certificate and key a node generated for a device; ThingsBoard never returns the key. */
export interface GeneratedKeys {
  certificate?: string;
  privateKey?: string;
}

/** The login a provisioning answer gives; X.509 needs the generated private key beside it. */
export function loginFromAnswer(answer: ProvisionAnswer, generated?: GeneratedKeys): DeviceLogin {
  switch (answer.credentialsType) {
    case 'ACCESS_TOKEN':
      return { type: 'ACCESS_TOKEN', token: answer.credentialsValue };
    case 'MQTT_BASIC': {
      const { clientId, userName, password } = answer.credentialsValue;
      const login: DeviceLogin = { type: 'MQTT_BASIC' };
      if (clientId) login.clientId = clientId;
      if (userName) login.username = userName;
      if (password) login.password = password;
      return login;
    }
    case 'X509_CERTIFICATE':
      if (!generated?.privateKey) {
        throw new DeviceError(
          'NOT_PROVISIONED',
          'This device logs in with an X.509 certificate whose private key this package does not ' +
            'hold (the flow chose the certificate): connect it with its own client, or provision ' +
            'it with credentials this package generates.',
        );
      }
      return {
        type: 'X509_CERTIFICATE',
        certificate: generated.certificate ?? answer.credentialsValue,
        privateKey: generated.privateKey,
      };
  }
}

const TYPE_NAMES: Record<DeviceLogin['type'], string> = {
  ACCESS_TOKEN: 'an access token',
  MQTT_BASIC: 'MQTT basic credentials',
  X509_CERTIFICATE: 'an X.509 certificate',
};

/**
 * INVALID_INPUT unless the login works on the transport: the HTTP and CoAP device APIs take access
 * tokens only, X.509 needs TLS, and CoAP over DTLS is not offered.
 */
export function checkTransport(
  transport: TransportName,
  login: DeviceLogin,
  server: DeviceServer,
): void {
  if (transport !== 'mqtt') accessTokenFor(transport, login);
  if (transport === 'coap' && server.tls !== undefined) {
    throw invalidInput(
      'CoAP over DTLS is not offered; send over MQTT or HTTP with TLS, or turn TLS off for CoAP.',
    );
  }
  if (login.type === 'X509_CERTIFICATE' && server.tls === undefined) {
    throw invalidInput(
      'This device logs in with an X.509 certificate, which takes MQTT over TLS: turn TLS on in ' +
        'the config node (with the MQTTS port).',
    );
  }
}

/** The access token the HTTP and CoAP device APIs take in their paths; INVALID_INPUT otherwise. */
export function accessTokenFor(transport: TransportName, login: DeviceLogin): string {
  if (login.type === 'ACCESS_TOKEN') return login.token;
  throw invalidInput(
    `This device logs in with ${TYPE_NAMES[login.type]}, which ThingsBoard takes over MQTT ` +
      `only; its ${transport.toUpperCase()} API takes access tokens. Send over MQTT.`,
  );
}

/** What an MQTT CONNECT carries for a login (the certificate goes in the TLS handshake). */
export interface MqttIdentity {
  clientId: string | undefined;
  username: string | undefined;
  password: string | undefined;
}

export function mqttIdentity(login: DeviceLogin): MqttIdentity {
  switch (login.type) {
    case 'ACCESS_TOKEN':
      // ThingsBoard reads the token from the user name and ignores the client id.
      return { clientId: undefined, username: login.token, password: undefined };
    case 'MQTT_BASIC':
      return { clientId: login.clientId, username: login.username, password: login.password };
    case 'X509_CERTIFICATE':
      return { clientId: undefined, username: undefined, password: undefined };
  }
}

/** Where a device's MQTT session connects: the server's TLS, plus the device's certificate. */
export function mqttTarget(server: DeviceServer, login: DeviceLogin): TransportTarget {
  const target: TransportTarget = { host: server.host, port: server.ports.mqtt };
  if (server.tls === undefined) return target;
  if (login.type !== 'X509_CERTIFICATE') return { ...target, tls: server.tls };
  const tls: TlsOptions = { ...server.tls, cert: login.certificate, key: login.privateKey };
  if (login.passphrase !== undefined) tls.passphrase = login.passphrase;
  return { ...target, tls };
}

/** Whether two logins are the same credentials (a message per send hands them over again). */
export function sameLogin(a: DeviceLogin, b: DeviceLogin): boolean {
  if (a === b) return true;
  switch (a.type) {
    case 'ACCESS_TOKEN':
      return b.type === 'ACCESS_TOKEN' && a.token === b.token;
    case 'MQTT_BASIC':
      return (
        b.type === 'MQTT_BASIC' &&
        a.clientId === b.clientId &&
        a.username === b.username &&
        a.password === b.password
      );
    case 'X509_CERTIFICATE':
      return (
        b.type === 'X509_CERTIFICATE' &&
        a.certificate === b.certificate &&
        a.privateKey === b.privateKey &&
        a.passphrase === b.passphrase
      );
  }
}
