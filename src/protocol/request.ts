/** Validates what a flow supplies and turns it into the provisioning request ThingsBoard expects. */

import { invalidProvisionInput } from './errors';
import { validateCredentials } from './supplied-credentials';
import type { CredentialsType, ProvisionInput, ProvisionRequest } from './types';
import { describeType, findBadCharacter, isPlainObject, ownField, quotePrefix } from './text';

// What a flow may supply as credentials is checked there; this module's API includes it.
export * from './supplied-credentials';

/** ThingsBoard's limit on names, counted in UTF-16 code units as its Java validator does. */
export const MAX_DEVICE_NAME_LENGTH = 255;
/** Provision key and secret: far above anything ThingsBoard generates, low enough to stop junk. */
export const MAX_PROVISION_KEY_LENGTH = 1024;

const DEVICE_NAME_HINT =
  "set msg.deviceName, or choose a fixed name (type string) in the node's Device name field.";
const CONFIG_HINT =
  'set it on the ThingsBoard server config node (copy it from the device profile)';

/** Returns the trimmed device name, or throws INVALID_INPUT saying what to fix. */
export function validateDeviceName(raw: unknown): string {
  // The advice leads: the editor's debug sidebar shows an error cut to its first words.
  if (raw === undefined) throw invalidProvisionInput(`No device name: ${DEVICE_NAME_HINT}`);
  if (typeof raw !== 'string') {
    throw invalidProvisionInput(
      `The device name must be a string, but ${describeType(raw)} was given: ${DEVICE_NAME_HINT}`,
    );
  }
  const name = raw.trim();
  if (name.length === 0) {
    throw invalidProvisionInput(
      `The device name is ${raw.length === 0 ? 'empty' : 'only whitespace'}: ` +
        "set msg.deviceName or the node's Device name. Nothing was sent, because ThingsBoard " +
        'would invent a random name that the device is never told.',
    );
  }
  if (name.length > MAX_DEVICE_NAME_LENGTH) {
    throw invalidProvisionInput(
      `The device name ${quotePrefix(name)} is ${name.length} characters long; ` +
        `ThingsBoard allows at most ${MAX_DEVICE_NAME_LENGTH}. Use a shorter name.`,
    );
  }
  const bad = findBadCharacter(name);
  if (bad) {
    throw invalidProvisionInput(
      `The device name ${quotePrefix(name)} contains ${bad.description} at position ` +
        `${bad.index + 1}: remove it.`,
    );
  }
  return name;
}

/** Checks one half of the config node's key pair; never repeats its value. */
function validateProvisionField(raw: unknown, label: string): string {
  if (raw === undefined || raw === null || raw === '') {
    throw invalidProvisionInput(`The ${label} is missing: ${CONFIG_HINT}.`);
  }
  if (typeof raw !== 'string') {
    throw invalidProvisionInput(
      `The ${label} must be a string, but ${describeType(raw)} was given: ${CONFIG_HINT}.`,
    );
  }
  if (raw.trim().length === 0) {
    throw invalidProvisionInput(`The ${label} is only whitespace: ${CONFIG_HINT}.`);
  }
  if (raw.trim() !== raw) {
    throw invalidProvisionInput(
      `The ${label} starts or ends with whitespace, which ThingsBoard would not match: ` +
        'remove it on the ThingsBoard server config node.',
    );
  }
  if (raw.length > MAX_PROVISION_KEY_LENGTH) {
    throw invalidProvisionInput(
      `The ${label} is ${raw.length} characters long, more than ${MAX_PROVISION_KEY_LENGTH}: ` +
        `${CONFIG_HINT}.`,
    );
  }
  const bad = findBadCharacter(raw);
  if (bad) {
    throw invalidProvisionInput(
      `The ${label} contains an invalid character at position ${bad.index + 1}: ${CONFIG_HINT}.`,
    );
  }
  return raw;
}

/** Both are required; the secret is never repeated in a message. */
export function validateProvisionKeys(
  key: unknown,
  secret: unknown,
): { provisionDeviceKey: string; provisionDeviceSecret: string } {
  return {
    provisionDeviceKey: validateProvisionField(key, 'provision device key'),
    provisionDeviceSecret: validateProvisionField(secret, 'provision device secret'),
  };
}

/**
 * Validates everything and builds the wire object. Absent fields are omitted, never null: the
 * server's parser fails on null. Server-generated credentials omit credentialsType altogether.
 */
export function buildRequest(input: ProvisionInput): ProvisionRequest {
  if (!isPlainObject(input)) {
    throw invalidProvisionInput(
      `The provisioning input must be an object, but ${describeType(input)} was given.`,
    );
  }
  const keys = validateProvisionKeys(input.provisionDeviceKey, input.provisionDeviceSecret);
  const request: ProvisionRequest = {
    provisionDeviceKey: keys.provisionDeviceKey,
    provisionDeviceSecret: keys.provisionDeviceSecret,
    deviceName: validateDeviceName(input.deviceName),
  };
  const supplied: unknown = input.credentials;
  if (supplied !== undefined && supplied !== null) {
    if (!isPlainObject(supplied)) {
      throw invalidProvisionInput(
        `Device credentials must be an object, but ${describeType(supplied)} was given.`,
      );
    }
    const credentials = validateCredentials(
      ownField(supplied, 'type') as CredentialsType,
      supplied,
    );
    request.credentialsType = credentials.type;
    switch (credentials.type) {
      case 'ACCESS_TOKEN':
        request.token = credentials.token;
        break;
      case 'MQTT_BASIC':
        if (credentials.clientId !== undefined) request.clientId = credentials.clientId;
        if (credentials.username !== undefined) request.username = credentials.username;
        if (credentials.password !== undefined) request.password = credentials.password;
        break;
      case 'X509_CERTIFICATE':
        // Despite its name, the server wants the certificate itself here and hashes it.
        request.hash = credentials.certificate;
        break;
    }
  }
  const gateway: unknown = input.gateway;
  if (gateway !== undefined && gateway !== null && typeof gateway !== 'boolean') {
    throw invalidProvisionInput(
      `msg.gateway must be true or false, but ${describeType(gateway)} was given.`,
    );
  }
  if (gateway === true) request.gateway = true;
  return request;
}

const REQUEST_FIELDS = [
  'provisionDeviceKey',
  'provisionDeviceSecret',
  'deviceName',
  'credentialsType',
  'token',
  'clientId',
  'username',
  'password',
  'hash',
] as const;

/** Compact JSON in a fixed key order; anything null, undefined or unknown is left out. */
export function serializeRequest(request: ProvisionRequest): string {
  const wire: Record<string, string | boolean> = {};
  for (const field of REQUEST_FIELDS) {
    const value: unknown = request[field];
    if (typeof value === 'string') wire[field] = value;
  }
  if (request.gateway === true) wire.gateway = true;
  return JSON.stringify(wire);
}
