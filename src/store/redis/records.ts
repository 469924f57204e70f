/**
 * The Redis backend's keys and values. Under the prefix, per device (its deviceKey() text):
 *   device:<key>   the stored entry: {"format","version","entry"}; no expiry
 *   claim:<key>    the random token of the process that holds the device; expires (PX)
 *   sending:<key>  credentials the node generated, recorded before their request left, until the
 *                  answer is kept: {"format","version","credentials","generated"}; expires
 *   wanted:<key>   set while another process waits for the holder to let go; expires
 *   released       the channel a released device's key is published on, when it is wanted
 */
import { isCredentialsType, type DeviceCredentials } from '../../protocol/types';
import { isRecord, isStoredEntry } from '../entry';
import type { DeviceKey, GeneratedMaterial, SentCredentials, StoredEntry } from '../types';

export const ENTRY_FORMAT = 'thingsboard-provision-entry';
export const SENDING_FORMAT = 'thingsboard-provision-sending';
export const RECORD_VERSION = 1;

export interface DeviceKeys {
  entry: string;
  claim: string;
  sending: string;
  wanted: string;
}

export function deviceKeys(prefix: string, key: DeviceKey): DeviceKeys {
  return {
    entry: `${prefix}device:${key}`,
    claim: `${prefix}claim:${key}`,
    sending: `${prefix}sending:${key}`,
    wanted: `${prefix}wanted:${key}`,
  };
}

export function releasedChannel(prefix: string): string {
  return `${prefix}released`;
}

/** A SCAN pattern matching every stored entry under the prefix, and nothing else. */
export function entryPattern(prefix: string): string {
  return `${prefix.replace(/[*?[\]\\]/g, '\\$&')}device:*`;
}

export function serializeEntry(entry: StoredEntry): string {
  return JSON.stringify({ format: ENTRY_FORMAT, version: RECORD_VERSION, entry });
}

/** A value that is not what this version wrote: reported, never overwritten by a lookup. */
export class DamagedRecordError extends Error {
  override readonly name = 'DamagedRecordError';
}

function versionProblem(parsed: unknown, format: string): string | undefined {
  if (!isRecord(parsed) || parsed.format !== format) return 'not written by this package';
  if (typeof parsed.version !== 'number') return 'no format version';
  if (parsed.version > RECORD_VERSION) {
    return `format version ${parsed.version} was written by a newer version of this package`;
  }
  if (parsed.version !== RECORD_VERSION) return `unknown format version ${parsed.version}`;
  return undefined;
}

function parse(text: string, format: string, redisKey: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const problem = parsed === undefined ? 'not valid JSON' : versionProblem(parsed, format);
  if (problem !== undefined) {
    throw new DamagedRecordError(`the Redis key ${redisKey} is ${problem}; it was left as it is`);
  }
  return parsed as Record<string, unknown>;
}

export function parseEntry(text: string, redisKey: string): StoredEntry {
  const { entry } = parse(text, ENTRY_FORMAT, redisKey);
  if (!isStoredEntry(entry)) {
    throw new DamagedRecordError(
      `the Redis key ${redisKey} holds an entry of the wrong shape; it was left as it is`,
    );
  }
  return entry;
}

export function serializeSending(sent: SentCredentials): string {
  const record: Record<string, unknown> = {
    format: SENDING_FORMAT,
    version: RECORD_VERSION,
    credentials: sent.credentials,
  };
  if (sent.generated) record.generated = sent.generated;
  return JSON.stringify(record);
}

function isOptionalString(value: unknown): boolean {
  return value === undefined || typeof value === 'string';
}

function isDeviceCredentials(value: unknown): value is DeviceCredentials {
  if (!isRecord(value) || !isCredentialsType(value.type)) return false;
  switch (value.type) {
    case 'ACCESS_TOKEN':
      return typeof value.token === 'string';
    case 'MQTT_BASIC':
      return (
        isOptionalString(value.clientId) &&
        isOptionalString(value.username) &&
        isOptionalString(value.password)
      );
    case 'X509_CERTIFICATE':
      return typeof value.certificate === 'string';
  }
}

function isGenerated(value: unknown): value is GeneratedMaterial | undefined {
  return (
    value === undefined ||
    (isRecord(value) && isOptionalString(value.certificate) && isOptionalString(value.privateKey))
  );
}

/** A damaged record of credentials in flight is dropped: it can only serve a recovery. */
export function parseSending(text: string, redisKey: string): SentCredentials | undefined {
  let record: Record<string, unknown>;
  try {
    record = parse(text, SENDING_FORMAT, redisKey);
  } catch {
    return undefined;
  }
  const { credentials, generated } = record;
  if (!isDeviceCredentials(credentials) || !isGenerated(generated)) return undefined;
  return generated === undefined ? { credentials } : { credentials, generated };
}
