/** What every backend needs to know about an entry: its device's key and whether it is whole. */
import { isCredentialsType } from '../protocol/types';
import type { DeviceKey, StoredEntry } from './types';

/** Host compared case-insensitively: DNS names are. The profile key and device name are exact. */
export function deviceKey(host: string, provisionDeviceKey: string, deviceName: string): DeviceKey {
  return JSON.stringify([host.trim().toLowerCase(), provisionDeviceKey, deviceName]) as DeviceKey;
}

export function keyOf(entry: StoredEntry): DeviceKey {
  return deviceKey(entry.host, entry.provisionDeviceKey, entry.deviceName);
}

function isString(value: unknown): value is string {
  return typeof value === 'string';
}

function isOptionalString(value: unknown): boolean {
  return value === undefined || typeof value === 'string';
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function isStoredEntry(value: unknown): value is StoredEntry {
  if (!isRecord(value)) return false;
  const { host, provisionDeviceKey, deviceName, answer, generated, provisionedAt, gateway } = value;
  if (!isString(host) || !isString(provisionDeviceKey) || !isString(deviceName)) return false;
  if (!isString(provisionedAt)) return false;
  if (gateway !== undefined && typeof gateway !== 'boolean') return false;
  if (generated !== undefined) {
    if (!isRecord(generated)) return false;
    if (!isOptionalString(generated.certificate) || !isOptionalString(generated.privateKey)) {
      return false;
    }
  }
  if (!isRecord(answer) || answer.status !== 'SUCCESS') return false;
  const type = answer.credentialsType;
  if (!isCredentialsType(type)) return false;
  if (type !== 'MQTT_BASIC') return isString(answer.credentialsValue);
  const basic = answer.credentialsValue;
  return (
    isRecord(basic) &&
    isOptionalString(basic.clientId) &&
    isOptionalString(basic.userName) &&
    isOptionalString(basic.password)
  );
}
