/**
 * The emulated tenant: device profiles, devices and their credentials, and the provisioning rules
 * of ThingsBoard's DeviceProvisionServiceImpl. Pure logic, no I/O.
 */

import { createHash, randomInt } from 'node:crypto';
import type { ParsedProvisionRequest } from './request';
import type { DeviceSpec, EmulatedCredentials, EmulatedDevice, ProfileSpec } from './types';

export type ProvisionOutcome =
  | {
      status: 'SUCCESS';
      device: EmulatedDevice;
      credentials: EmulatedCredentials;
      /** True when the server invented the name (the device is never told). */
      generatedName: boolean;
    }
  | {
      status: 'NOT_FOUND' | 'FAILURE';
      /** Trimmed name as the server saw it ("" when none). */
      deviceName: string;
      /** Why, for the log only: the device always gets the one generic message. */
      reason: string;
    };

/** Device names are limited to 255 characters (the entity's @Length rule). */
const MAX_NAME_LENGTH = 255;
const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** RandomStringUtils.randomAlphanumeric(20): how the server makes names and access tokens. */
export function randomAlphanumeric(length = 20): string {
  let out = '';
  for (let i = 0; i < length; i++) out += ALPHANUMERIC[randomInt(ALPHANUMERIC.length)];
  return out;
}

/** Java's String.trim(): strips characters up to U+0020 only, unlike String.prototype.trim. */
export function javaTrim(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && value.charCodeAt(start) <= 0x20) start++;
  while (end > start && value.charCodeAt(end - 1) <= 0x20) end--;
  return value.slice(start, end);
}

/** EncryptionUtil.certTrimNewLines: the certificate body the server stores and answers. */
export function certificateBody(pemOrBody: string): string {
  return pemOrBody
    .replace(/-----BEGIN CERTIFICATE-----/g, '')
    .replace(/-----END CERTIFICATE-----/g, '')
    .replace(/[\r\n]/g, '');
}

function sha3(value: string): string {
  return createHash('sha3-256').update(value, 'utf8').digest('hex');
}

class InvalidCredentials extends Error {}

/**
 * The credentials id the server indexes (and keeps unique across all devices): the token itself,
 * the MQTT user name alone, or a SHA3 hash of the client id (and user name) or of the certificate.
 */
function credentialsId(credentials: EmulatedCredentials): string {
  switch (credentials.credentialsType) {
    case 'ACCESS_TOKEN':
      if (credentials.token === '') throw new InvalidCredentials('empty access token');
      return credentials.token;
    case 'MQTT_BASIC': {
      const clientId = credentials.clientId ?? '';
      const userName = credentials.userName ?? '';
      const password = credentials.password ?? '';
      if (clientId === '' && userName === '') {
        throw new InvalidCredentials('MQTT basic credentials need a clientId or a username');
      }
      if (clientId !== '' && password !== '' && userName === '') {
        throw new InvalidCredentials('MQTT basic password given with a clientId but no username');
      }
      if (clientId === '') return userName;
      if (userName === '') return sha3(clientId);
      return sha3(`${clientId}|${userName}`);
    }
    case 'X509_CERTIFICATE':
      if (credentials.certificate === '') throw new InvalidCredentials('empty certificate');
      return sha3(credentials.certificate);
  }
}

function normaliseCredentials(credentials: EmulatedCredentials): EmulatedCredentials {
  if (credentials.credentialsType !== 'X509_CERTIFICATE') return { ...credentials };
  return {
    credentialsType: 'X509_CERTIFICATE',
    certificate: certificateBody(credentials.certificate),
  };
}

export interface MqttLogin {
  clientId: string;
  username?: string;
  password?: string;
}

export class Tenant {
  private readonly profilesByName = new Map<string, ProfileSpec>();
  private readonly profilesByKey = new Map<string, ProfileSpec>();
  readonly devices = new Map<string, EmulatedDevice>();
  /** credentials id → device name. */
  private readonly credentialsIndex = new Map<string, string>();

  addProfile(profile: ProfileSpec): void {
    if (this.profilesByName.has(profile.name)) {
      throw new Error(`A profile named "${profile.name}" already exists`);
    }
    if (this.profilesByKey.has(profile.provisionDeviceKey)) {
      throw new Error(`Another profile already uses this provision key`);
    }
    const copy = { ...profile };
    this.profilesByName.set(copy.name, copy);
    this.profilesByKey.set(copy.provisionDeviceKey, copy);
  }

  /** A pre-provisioned device, as an administrator would create it. */
  addDevice(spec: DeviceSpec): EmulatedDevice {
    if (!this.profilesByName.has(spec.profile))
      throw new Error(`No profile named "${spec.profile}"`);
    if (this.devices.has(spec.name))
      throw new Error(`A device named "${spec.name}" already exists`);
    const credentials = normaliseCredentials(spec.credentials);
    let id: string;
    try {
      id = credentialsId(credentials);
    } catch (error) {
      throw new Error(
        `Invalid credentials for device "${spec.name}": ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    if (this.credentialsIndex.has(id)) {
      throw new Error(
        `Device "${spec.name}": these credentials are already used by another device`,
      );
    }
    return this.store(spec.name, spec.profile, credentials, id, spec.gateway === true);
  }

  provision(request: ParsedProvisionRequest): ProvisionOutcome {
    let deviceName = request.deviceName;
    if (deviceName !== '') {
      deviceName = javaTrim(deviceName);
      if (deviceName === '') return failure('', 'device name is blank');
    }
    const key = request.provisionDeviceKey;
    const secret = request.provisionDeviceSecret;
    if (key === '' || secret === '') return notFound(deviceName, 'empty provision key or secret');
    const profile = this.profilesByKey.get(key);
    if (profile === undefined) return notFound(deviceName, 'unknown provision key');
    if (profile.strategy === 'disabled') return notFound(deviceName, 'provisioning disabled');
    if (profile.provisionDeviceSecret !== secret) return notFound(deviceName, 'wrong secret');
    const existing = deviceName === '' ? undefined : this.devices.get(deviceName);
    switch (profile.strategy) {
      case 'allow-create':
        if (existing !== undefined) return failure(deviceName, 'device name already exists');
        return this.create(deviceName, profile, request);
      case 'check-pre-provisioned':
      case 'check-pre-provisioned-legacy':
        if (existing === undefined) return failure(deviceName, 'no pre-provisioned device');
        if (existing.profile !== profile.name) {
          return failure(deviceName, 'device belongs to another profile');
        }
        if (existing.provisioned && profile.strategy === 'check-pre-provisioned') {
          return failure(deviceName, 'device already provisioned');
        }
        existing.provisioned = true;
        return {
          status: 'SUCCESS',
          device: existing,
          credentials: existing.credentials,
          generatedName: false,
        };
    }
  }

  /** The device an access token logs in (HTTP and CoAP device API, MQTT user name). */
  deviceByAccessToken(token: string): EmulatedDevice | undefined {
    const device = this.deviceByCredentialsId(token);
    return device?.credentials.credentialsType === 'ACCESS_TOKEN' ? device : undefined;
  }

  deviceByCertificate(body: string): EmulatedDevice | undefined {
    const device = this.deviceByCredentialsId(sha3(certificateBody(body)));
    return device?.credentials.credentialsType === 'X509_CERTIFICATE' ? device : undefined;
  }

  /** MQTT CONNECT as the server validates it (DefaultTransportApiService.validateCredentials). */
  authenticateMqtt(login: MqttLogin): EmulatedDevice | undefined {
    const username = login.username ?? '';
    if (username === '') {
      const device = this.deviceByCredentialsId(sha3(login.clientId));
      return device !== undefined && basicMatch(device, login) === 'valid' ? device : undefined;
    }
    const paired = this.deviceByCredentialsId(sha3(`${login.clientId}|${username}`));
    if (paired?.credentials.credentialsType === 'MQTT_BASIC') {
      const match = basicMatch(paired, login);
      if (match === 'valid') return paired;
      if (match === 'password-mismatch') return undefined;
    }
    const byUserName = this.deviceByCredentialsId(username);
    if (byUserName === undefined) return undefined;
    if (byUserName.credentials.credentialsType === 'ACCESS_TOKEN') return byUserName;
    if (byUserName.credentials.credentialsType === 'MQTT_BASIC') {
      return basicMatch(byUserName, login) === 'valid' ? byUserName : undefined;
    }
    return undefined;
  }

  /**
   * The device a gateway names (TransportApiService.findOrCreateDevice): an existing device of any
   * profile is adopted as it is; otherwise one is created with an access token, `type` as profile.
   */
  findOrCreateForGateway(name: string, type: string, gateway: string): EmulatedDevice {
    const existing = this.devices.get(name);
    if (existing !== undefined) return existing;
    const token = this.freshToken();
    const device = this.store(name, type, { credentialsType: 'ACCESS_TOKEN', token }, token, false);
    device.createdByGateway = gateway;
    return device;
  }

  private deviceByCredentialsId(id: string): EmulatedDevice | undefined {
    const name = this.credentialsIndex.get(id);
    return name === undefined ? undefined : this.devices.get(name);
  }

  private create(
    requestedName: string,
    profile: ProfileSpec,
    request: ParsedProvisionRequest,
  ): ProvisionOutcome {
    const generatedName = requestedName === '';
    const name = generatedName ? this.freshName() : requestedName;
    if ([...name].length > MAX_NAME_LENGTH) return failure(name, 'device name too long');
    const chosen =
      request.token !== '' ||
      request.clientId !== '' ||
      request.username !== '' ||
      request.password !== '' ||
      request.hash !== '';
    let credentials: EmulatedCredentials;
    if (!chosen) {
      credentials = { credentialsType: 'ACCESS_TOKEN', token: this.freshToken() };
    } else {
      switch (request.credentialsType) {
        case 'ACCESS_TOKEN':
          credentials = { credentialsType: 'ACCESS_TOKEN', token: request.token };
          break;
        case 'MQTT_BASIC':
          // Absent fields arrive as "" and are stored, hence rendered, as "".
          credentials = {
            credentialsType: 'MQTT_BASIC',
            clientId: request.clientId,
            userName: request.username,
            password: request.password,
          };
          break;
        case 'X509_CERTIFICATE':
          credentials = {
            credentialsType: 'X509_CERTIFICATE',
            certificate: certificateBody(request.hash),
          };
          break;
        case 'LWM2M_CREDENTIALS':
          return failure(name, 'LwM2M credentials cannot be provisioned');
      }
    }
    let id: string;
    try {
      id = credentialsId(credentials);
    } catch (error) {
      return failure(name, (error as Error).message);
    }
    if (this.credentialsIndex.has(id)) {
      return failure(name, 'credentials already used by another device');
    }
    const device = this.store(name, profile.name, credentials, id, request.gateway);
    device.provisioned = true;
    return { status: 'SUCCESS', device, credentials, generatedName };
  }

  private store(
    name: string,
    profile: string,
    credentials: EmulatedCredentials,
    id: string,
    gateway: boolean,
  ): EmulatedDevice {
    const device: EmulatedDevice = {
      name,
      profile,
      credentials,
      gateway,
      provisioned: false,
      telemetry: [],
      timeseries: [],
      attributes: {},
      sharedAttributes: {},
      rpcReplies: [],
      gatewayMessages: [],
    };
    this.devices.set(name, device);
    this.credentialsIndex.set(id, name);
    return device;
  }

  private freshName(): string {
    let name = randomAlphanumeric();
    while (this.devices.has(name)) name = randomAlphanumeric();
    return name;
  }

  private freshToken(): string {
    let token = randomAlphanumeric();
    while (this.credentialsIndex.has(token)) token = randomAlphanumeric();
    return token;
  }
}

function notFound(deviceName: string, reason: string): ProvisionOutcome {
  return { status: 'NOT_FOUND', deviceName, reason };
}

function failure(deviceName: string, reason: string): ProvisionOutcome {
  return { status: 'FAILURE', deviceName, reason };
}

/** validateMqttCredentials: each stored non-empty field must match; a stored password must too. */
function basicMatch(
  device: EmulatedDevice,
  login: MqttLogin,
): 'valid' | 'mismatch' | 'password-mismatch' {
  const stored = device.credentials;
  if (stored.credentialsType !== 'MQTT_BASIC') return 'mismatch';
  if (stored.clientId && stored.clientId !== login.clientId) return 'mismatch';
  if (stored.userName && stored.userName !== (login.username ?? '')) return 'mismatch';
  if (stored.password) return stored.password === login.password ? 'valid' : 'password-mismatch';
  return 'valid';
}
