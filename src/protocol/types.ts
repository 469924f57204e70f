/** The vocabulary shared by every layer: what a device asks for and what ThingsBoard answers. */

export const CREDENTIALS_TYPES = ['ACCESS_TOKEN', 'MQTT_BASIC', 'X509_CERTIFICATE'] as const;
export type CredentialsType = (typeof CREDENTIALS_TYPES)[number];

export function isCredentialsType(value: unknown): value is CredentialsType {
  return (CREDENTIALS_TYPES as readonly unknown[]).includes(value);
}

/** How a device's credentials are chosen: by the server, or by the device (the node) as one type. */
export const CREDENTIALS_MODES = ['server', ...CREDENTIALS_TYPES] as const;
export type CredentialsMode = (typeof CREDENTIALS_MODES)[number];

export function isCredentialsMode(value: unknown): value is CredentialsMode {
  return (CREDENTIALS_MODES as readonly unknown[]).includes(value);
}

/** The statuses a flow can see: the server's three plus the client's own. */
export type ProvisionStatus =
  | 'SUCCESS'
  | 'NOT_FOUND'
  | 'FAILURE'
  | 'TIMEOUT'
  | 'CONNECTION_ERROR'
  | 'PROTOCOL_ERROR'
  | 'INVALID_INPUT';

export type ErrorStatus = Exclude<ProvisionStatus, 'SUCCESS'>;

export interface MqttBasicCredentials {
  clientId?: string;
  username?: string;
  password?: string;
}

/** Device-chosen credentials, as a flow supplies them in msg.credentials. */
export type DeviceCredentials =
  | { type: 'ACCESS_TOKEN'; token: string }
  | ({ type: 'MQTT_BASIC' } & MqttBasicCredentials)
  | { type: 'X509_CERTIFICATE'; certificate: string };

/** What the caller wants provisioned, before it becomes wire JSON. */
export interface ProvisionInput {
  provisionDeviceKey: string;
  provisionDeviceSecret: string;
  deviceName: string;
  /** Absent: the server generates an access token. */
  credentials?: DeviceCredentials;
  gateway?: boolean;
}

/** The JSON object sent on every transport. Fields are omitted, never null. */
export interface ProvisionRequest {
  provisionDeviceKey: string;
  provisionDeviceSecret: string;
  deviceName: string;
  credentialsType?: CredentialsType;
  token?: string;
  clientId?: string;
  username?: string;
  password?: string;
  /** The device certificate itself (PEM), despite the field's name. */
  hash?: string;
  gateway?: boolean;
}

/** Response credentialsValue for MQTT_BASIC: note `userName`, not `username`. */
export interface MqttBasicCredentialsValue {
  clientId?: string;
  userName?: string;
  password?: string;
}

export type ProvisionAnswer =
  | { status: 'SUCCESS'; credentialsType: 'ACCESS_TOKEN'; credentialsValue: string }
  | {
      status: 'SUCCESS';
      credentialsType: 'MQTT_BASIC';
      credentialsValue: MqttBasicCredentialsValue;
    }
  | { status: 'SUCCESS'; credentialsType: 'X509_CERTIFICATE'; credentialsValue: string };

export type ProvisionSuccess = ProvisionAnswer;
