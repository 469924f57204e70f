/** Entries as a store keeps them, for the store suites. */
import type { StoredEntry } from '../../src/store';

export const ENTRY_HOST = 'tb.example';
export const ENTRY_PROFILE_KEY = 'profile-key';

/** A whole entry for a device of ENTRY_HOST and ENTRY_PROFILE_KEY. */
export function storedEntry(deviceName: string, token = `token-${deviceName}`): StoredEntry {
  return {
    host: ENTRY_HOST,
    provisionDeviceKey: ENTRY_PROFILE_KEY,
    deviceName,
    answer: { status: 'SUCCESS', credentialsType: 'ACCESS_TOKEN', credentialsValue: token },
    provisionedAt: '2026-01-02T03:04:05.000Z',
  };
}
