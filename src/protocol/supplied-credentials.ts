/**
 * Checks the device credentials a flow chooses (msg.credentials), for each credentials type, and
 * returns them typed. Errors name the field and what to do, never the value.
 */

import { X509Certificate } from 'node:crypto';

import { invalidProvisionInput, type ProvisionError } from './errors';
import { isCredentialsType, type CredentialsType, type DeviceCredentials } from './types';
import { describeType, describeWord, findBadCharacter, isPlainObject, ownField } from './text';

export const MAX_TOKEN_LENGTH = 255;
export const MAX_MQTT_CREDENTIAL_LENGTH = 255;
/** A device certificate in PEM, in UTF-8 bytes. */
export const MAX_CERTIFICATE_BYTES = 16 * 1024;

const SHAPES: Record<CredentialsType, string> = {
  ACCESS_TOKEN: '{token}',
  MQTT_BASIC: '{clientId, username, password}',
  X509_CERTIFICATE: '{certificate} (PEM)',
};

/** Which credentials type an object looks like, to point a user at a mismatched setting. */
function lookalikeType(raw: Record<string, unknown>): CredentialsType | undefined {
  if (ownField(raw, 'token') !== undefined) return 'ACCESS_TOKEN';
  if (ownField(raw, 'certificate') !== undefined) return 'X509_CERTIFICATE';
  for (const key of ['clientId', 'username', 'userName', 'password']) {
    if (ownField(raw, key) !== undefined) return 'MQTT_BASIC';
  }
  return undefined;
}

function missingField(type: CredentialsType, field: string, raw: Record<string, unknown>): never {
  const lookalike = lookalikeType(raw);
  const hint =
    lookalike && lookalike !== type
      ? ` They look like ${lookalike} credentials: set the node's credentials type to ` +
        `${lookalike}, or supply ${SHAPES[type]}.`
      : ` Supply ${SHAPES[type]}, or let the server generate an access token.`;
  throw invalidProvisionInput(`msg.credentials.${field} is missing for ${type}.${hint}`);
}

/** A secret string field: type, emptiness, length and characters, never echoing the value. */
function checkSecretString(
  value: unknown,
  field: string,
  maxLength: number,
  allowWhitespace: boolean,
): string {
  if (typeof value !== 'string') {
    throw invalidProvisionInput(
      `msg.credentials.${field} must be a string, but ${describeType(value)} was given.`,
    );
  }
  if (value.length === 0) {
    throw invalidProvisionInput(`msg.credentials.${field} is empty.`);
  }
  if (value.length > maxLength) {
    throw invalidProvisionInput(
      `msg.credentials.${field} is ${value.length} characters long; at most ${maxLength} are allowed.`,
    );
  }
  const bad = findBadCharacter(value);
  if (bad) {
    throw invalidProvisionInput(
      `msg.credentials.${field} contains an invalid character (a control character or malformed ` +
        `Unicode) at position ${bad.index + 1}.`,
    );
  }
  if (!allowWhitespace) {
    const space = /\s/.exec(value);
    if (space) {
      throw invalidProvisionInput(
        `msg.credentials.${field} contains whitespace at position ${space.index + 1}; ` +
          'an access token must be a single word.',
      );
    }
  }
  return value;
}

function validateAccessToken(raw: Record<string, unknown>): DeviceCredentials {
  const token = ownField(raw, 'token');
  if (token === undefined || token === null) missingField('ACCESS_TOKEN', 'token', raw);
  return {
    type: 'ACCESS_TOKEN',
    token: checkSecretString(token, 'token', MAX_TOKEN_LENGTH, false),
  };
}

/** An MQTT basic field; null, undefined and "" all mean absent, as they do for the server. */
function optionalMqttField(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  return checkSecretString(value, field, MAX_MQTT_CREDENTIAL_LENGTH, true);
}

function validateMqttBasic(raw: Record<string, unknown>): DeviceCredentials {
  const clientId = optionalMqttField(ownField(raw, 'clientId'), 'clientId');
  const username = optionalMqttField(ownField(raw, 'username'), 'username');
  // The answer spells it userName; accept it so an earlier answer can be fed back in.
  const userName = optionalMqttField(ownField(raw, 'userName'), 'userName');
  const password = optionalMqttField(ownField(raw, 'password'), 'password');
  if (username !== undefined && userName !== undefined && username !== userName) {
    throw invalidProvisionInput(
      'msg.credentials has both username and userName with different values: keep only username.',
    );
  }
  const effectiveUsername = username ?? userName;
  if (clientId === undefined && effectiveUsername === undefined) {
    if (lookalikeType(raw) !== undefined && lookalikeType(raw) !== 'MQTT_BASIC') {
      missingField('MQTT_BASIC', 'clientId', raw);
    }
    throw invalidProvisionInput(
      'MQTT_BASIC credentials need a clientId or a username (or both) in msg.credentials; ' +
        'ThingsBoard refuses them when both are empty.',
    );
  }
  if (clientId !== undefined && effectiveUsername === undefined && password !== undefined) {
    throw invalidProvisionInput(
      'MQTT_BASIC credentials with a clientId and a password but no username are refused by ' +
        'ThingsBoard: add msg.credentials.username, or leave out the password.',
    );
  }
  const credentials: DeviceCredentials = { type: 'MQTT_BASIC' };
  if (clientId !== undefined) credentials.clientId = clientId;
  if (effectiveUsername !== undefined) credentials.username = effectiveUsername;
  if (password !== undefined) credentials.password = password;
  return credentials;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
const PEM_BEGIN = /-----BEGIN ([A-Z0-9 ]+)-----/g;

/**
 * Checks that the text holds exactly one X.509 certificate and returns it as canonical PEM, so the
 * server hashes the same bytes the device later presents over TLS (surrounding text is dropped).
 */
export function normalizeCertificatePem(text: string): string {
  const notCertificate = (why: string): ProvisionError =>
    invalidProvisionInput(`msg.credentials.certificate is not a certificate: ${why}`);
  const labels = Array.from(text.matchAll(PEM_BEGIN), (m) => m[1] ?? '');
  if (labels.some((label) => label.includes('PRIVATE KEY'))) {
    throw invalidProvisionInput(
      'A private key was supplied where a certificate is expected: put only the device ' +
        'certificate (-----BEGIN CERTIFICATE-----) in msg.credentials.certificate and keep the ' +
        'key on the device.',
    );
  }
  if (labels.length === 0) {
    throw notCertificate('expected PEM text starting with -----BEGIN CERTIFICATE-----.');
  }
  if (!labels.includes('CERTIFICATE')) {
    throw notCertificate(
      `found a PEM ${labels[0]} block; supply the device certificate ` +
        '(-----BEGIN CERTIFICATE-----).',
    );
  }
  const blocks = Array.from(text.matchAll(PEM_BLOCK)).filter((m) => m[1] === 'CERTIFICATE');
  if (blocks.length === 0) {
    throw notCertificate('the CERTIFICATE block has no matching -----END CERTIFICATE----- line.');
  }
  if (blocks.length > 1 || labels.filter((label) => label === 'CERTIFICATE').length > 1) {
    throw notCertificate(
      `found ${Math.max(blocks.length, 2)} CERTIFICATE blocks; supply only the device's own ` +
        'certificate, not a chain.',
    );
  }
  const body = (blocks[0]?.[2] ?? '').replace(/\s+/g, '');
  if (body.length === 0 || body.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(body)) {
    throw notCertificate('the CERTIFICATE block is not valid base64.');
  }
  const der = Buffer.from(body, 'base64');
  if (der.toString('base64') !== body) {
    throw notCertificate('the CERTIFICATE block is not valid base64.');
  }
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(der);
  } catch {
    throw notCertificate('the CERTIFICATE block does not parse as an X.509 certificate.');
  }
  if (certificate.raw.length !== der.length) {
    throw notCertificate('the CERTIFICATE block has extra data after the certificate.');
  }
  const lines = body.match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

function validateCertificate(raw: Record<string, unknown>): DeviceCredentials {
  const certificate = ownField(raw, 'certificate');
  if (certificate === undefined || certificate === null) {
    missingField('X509_CERTIFICATE', 'certificate', raw);
  }
  if (typeof certificate !== 'string') {
    throw invalidProvisionInput(
      `msg.credentials.certificate must be a string of PEM text, but ${describeType(certificate)} ` +
        'was given.',
    );
  }
  const bytes = Buffer.byteLength(certificate, 'utf8');
  if (bytes > MAX_CERTIFICATE_BYTES) {
    throw invalidProvisionInput(
      `msg.credentials.certificate is ${bytes} bytes; a device certificate is expected to be at ` +
        `most ${MAX_CERTIFICATE_BYTES} bytes. Supply only the device certificate.`,
    );
  }
  return { type: 'X509_CERTIFICATE', certificate: normalizeCertificatePem(certificate) };
}

/**
 * Checks device-chosen credentials as a flow supplies them in msg.credentials and returns them
 * typed (the certificate as canonical PEM). Throws INVALID_INPUT naming the field, never its value.
 */
export function validateCredentials(type: CredentialsType, raw: unknown): DeviceCredentials {
  if (!isCredentialsType(type)) {
    throw invalidProvisionInput(
      `Unknown credentials type ${describeWord(type)}: use ACCESS_TOKEN, MQTT_BASIC or X509_CERTIFICATE.`,
    );
  }
  if (!isPlainObject(raw)) {
    throw invalidProvisionInput(
      `msg.credentials must be an object ${SHAPES[type]} for ${type}, but ${describeType(raw)} ` +
        'was given.',
    );
  }
  const declared = ownField(raw, 'type');
  if (declared !== undefined && declared !== type) {
    const shown = isCredentialsType(declared) ? declared : 'an unknown type';
    throw invalidProvisionInput(
      `msg.credentials.type says ${shown}, but the node asks for ${type}: make them agree.`,
    );
  }
  switch (type) {
    case 'ACCESS_TOKEN':
      return validateAccessToken(raw);
    case 'MQTT_BASIC':
      return validateMqttBasic(raw);
    case 'X509_CERTIFICATE':
      return validateCertificate(raw);
  }
}
