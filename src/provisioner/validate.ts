/** A job checked before anything is sent: every mistake is an INVALID_INPUT naming the fix. */
import {
  validateCredentials,
  validateDeviceName,
  validateProvisionKeys,
} from '../protocol/request';
import { orList } from '../protocol/text';
import { CREDENTIALS_MODES, isCredentialsMode, type DeviceCredentials } from '../protocol/types';
import { TRANSPORT_NAMES, isTransportName } from '../transports/types';
import { invalidJob } from './errors';
import type { CredentialsMode, ProvisionJob } from './types';

/** A job after validation: everything typed, nothing generated yet. */
export interface PreparedJob {
  job: ProvisionJob;
  deviceName: string;
  provisionDeviceKey: string;
  provisionDeviceSecret: string;
  mode: CredentialsMode;
  /** From the message; absent: server-chosen, or generated when the flight starts. */
  supplied?: DeviceCredentials;
}

export function validateJob(job: ProvisionJob): PreparedJob {
  if (!isTransportName(job.transport)) {
    throw invalidJob(
      `Unknown transport ${JSON.stringify(job.transport)}: use ${orList(TRANSPORT_NAMES)}.`,
    );
  }
  const target: unknown = job.target;
  if (
    typeof target !== 'object' ||
    target === null ||
    typeof job.target.host !== 'string' ||
    job.target.host.trim() === ''
  ) {
    throw invalidJob('The ThingsBoard host is missing: set it on the server config node.');
  }
  if (!Number.isInteger(job.target.port) || job.target.port < 1 || job.target.port > 65535) {
    throw invalidJob(`The ${job.transport} port must be a whole number from 1 to 65535.`);
  }
  if (!(job.timeoutMs > 0) || !Number.isFinite(job.timeoutMs)) {
    throw invalidJob('The timeout must be a positive number of seconds.');
  }
  if (!Number.isSafeInteger(job.retries) || job.retries < 0) {
    throw invalidJob('Retries must be a whole number, 0 or more.');
  }
  const mode = job.credentialsMode;
  if (!isCredentialsMode(mode)) {
    throw invalidJob(
      `Unknown credentials type ${JSON.stringify(mode)}: use ${orList(CREDENTIALS_MODES)}.`,
    );
  }
  const deviceName = validateDeviceName(job.deviceName);
  const keys = validateProvisionKeys(job.provisionDeviceKey, job.provisionDeviceSecret);
  // With server-chosen credentials msg.credentials has nothing to supply, so it is ignored.
  const supplied =
    mode !== 'server' && job.credentials !== undefined && job.credentials !== null
      ? validateCredentials(mode, job.credentials)
      : undefined;
  return { job, deviceName, ...keys, mode, supplied };
}
