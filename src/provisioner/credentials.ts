/**
 * Device-chosen credentials, made when a message asks for them but brings none. Every random value
 * comes from node:crypto; the certificate is built by @peculiar/x509 (loaded on first use only).
 */
import { KeyObject, randomBytes, webcrypto } from 'node:crypto';
import { ProvisionError, errorText } from '../protocol/errors';
import type { CredentialsType, DeviceCredentials } from '../protocol/types';
import type { GeneratedMaterial } from './types';

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
/** Largest multiple of 62 below 256: bytes at or above it are dropped, so no character is favoured. */
const UNBIASED_LIMIT = 256 - (256 % ALPHANUMERIC.length);

export const ACCESS_TOKEN_LENGTH = 24;
export const MQTT_PASSWORD_LENGTH = 32;
const MQTT_USERNAME_LENGTH = 20;
const CLIENT_ID_RANDOM_LENGTH = 12;
/** MQTT 3.1 brokers may refuse client ids longer than 23 characters. */
const CLIENT_ID_MAX_LENGTH = 23;
export const CERTIFICATE_VALIDITY_YEARS = 10;

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

export interface GeneratedCertificate {
  /** PEM of the self-signed certificate. */
  certificate: string;
  /** PEM (PKCS#8) of its private key. */
  privateKey: string;
}

type X509Module = typeof import('@peculiar/x509');
let x509Module: X509Module | undefined;

/** Loaded on the first certificate only: the library and its dependencies cost start-up time. */
function loadX509(): X509Module {
  if (x509Module === undefined) {
    // @peculiar/x509 2.x resolves its algorithms through tsyringe, which needs the Reflect metadata API.
    require('reflect-metadata');
    x509Module = require('@peculiar/x509') as X509Module;
  }
  return x509Module;
}

/** A positive, non-zero 16-byte serial number in hex (RFC 5280 allows up to 20 octets). */
function randomSerialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] & 0x7f) | 0x01;
  return bytes.toString('hex');
}

/** A new EC P-256 key and a self-signed certificate whose subject is CN=<device name>. */
export async function generateCertificate(deviceName: string): Promise<GeneratedCertificate> {
  const x509 = loadX509();
  // Passed to every call rather than set as the library's process-wide default provider.
  const crypto = webcrypto as unknown as Crypto;
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, [
    'sign',
    'verify',
  ])) as unknown as CryptoKeyPair;
  const notBefore = new Date();
  // Tolerates a device clock slightly behind ours.
  notBefore.setUTCMinutes(notBefore.getUTCMinutes() - 5);
  const notAfter = new Date(notBefore);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + CERTIFICATE_VALIDITY_YEARS);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerialNumber(),
      // The object form is taken literally; plain strings would be unquoted, unescaped or read as hex.
      name: new x509.Name([{ CN: [{ utf8String: deviceName }] }]),
      notBefore,
      notAfter,
      signingAlgorithm: algorithm,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement,
          true,
        ),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  const privateKey = KeyObject.from(keys.privateKey as unknown as webcrypto.CryptoKey).export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;
  return { certificate: certificate.toString('pem'), privateKey };
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
