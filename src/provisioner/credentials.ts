/**
 * Device-chosen credentials, made when a message asks for them but brings none. Every random value
 * comes from node:crypto.
 */
import { randomBytes } from 'node:crypto';
import { ProvisionError, errorText } from '../protocol/errors';
import type { CredentialsType, DeviceCredentials } from '../protocol/types';
import { generateCertificate } from './certificate';
import type { GeneratedMaterial } from './types';

export { CERTIFICATE_VALIDITY_YEARS, generateCertificate } from './certificate';
export type { GeneratedCertificate } from './certificate';

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
/** Largest multiple of 62 below 256: bytes at or above it are dropped, so no character is favoured. */
const UNBIASED_LIMIT = 256 - (256 % ALPHANUMERIC.length);

export const ACCESS_TOKEN_LENGTH = 24;
export const MQTT_PASSWORD_LENGTH = 32;
const MQTT_USERNAME_LENGTH = 20;
const CLIENT_ID_RANDOM_LENGTH = 12;
/** MQTT 3.1 brokers may refuse client ids longer than 23 characters. */
const CLIENT_ID_MAX_LENGTH = 23;

/** `length` characters of [A-Za-z0-9], uniformly distributed. */
export function randomAlphanumeric(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < UNBIASED_LIMIT) {
        out += ALPHANUMERIC[byte % ALPHANUMERIC.length];
        if (out.length === length) break;
      }
    }
  }
  return out;
}

export function generateAccessToken(): string {
  return randomAlphanumeric(ACCESS_TOKEN_LENGTH);
}

export interface GeneratedMqttBasic {
  clientId: string;
  username: string;
  password: string;
}

/** The client id starts with a readable fragment of the device name so it can be recognised in broker logs. */
export function generateMqttBasic(deviceName: string): GeneratedMqttBasic {
  const room = CLIENT_ID_MAX_LENGTH - CLIENT_ID_RANDOM_LENGTH - 1;
  const fragment = deviceName.replace(/[^A-Za-z0-9_-]/g, '').slice(0, room) || 'device';
  return {
    clientId: `${fragment}-${randomAlphanumeric(CLIENT_ID_RANDOM_LENGTH)}`,
    username: randomAlphanumeric(MQTT_USERNAME_LENGTH),
    password: randomAlphanumeric(MQTT_PASSWORD_LENGTH),
  };
}

/** Credentials of one type for a device, and what of them ThingsBoard will never send back. */
export async function generateCredentials(
  type: CredentialsType,
  deviceName: string,
): Promise<{ credentials: DeviceCredentials; generated?: GeneratedMaterial }> {
  switch (type) {
    case 'ACCESS_TOKEN':
      return { credentials: { type: 'ACCESS_TOKEN', token: generateAccessToken() } };
    case 'MQTT_BASIC':
      return { credentials: { type: 'MQTT_BASIC', ...generateMqttBasic(deviceName) } };
    case 'X509_CERTIFICATE': {
      let made;
      try {
        made = await generateCertificate(deviceName);
      } catch (err) {
        throw new ProvisionError(
          'PROTOCOL_ERROR',
          `Could not make a certificate for device ${JSON.stringify(deviceName)}: ` +
            `${errorText(err)}. Nothing was sent to the server.`,
          { cause: err },
        );
      }
      return {
        credentials: { type: 'X509_CERTIFICATE', certificate: made.certificate },
        generated: made,
      };
    }
  }
}
