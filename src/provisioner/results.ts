/** An answer as a job's result, from the server or from the store, and as a store entry. */
import type { ProvisionAnswer } from '../protocol/types';
import type { StoredEntry } from '../store/types';
import { certificateBody } from './ignored';
import type { GeneratedMaterial, ProvisionResult } from './types';
import type { PreparedJob } from './validate';

export function resultOf(
  prepared: PreparedJob,
  answer: ProvisionAnswer,
  generated: GeneratedMaterial | undefined,
  recovered: boolean,
): ProvisionResult {
  const result: ProvisionResult = {
    deviceName: prepared.deviceName,
    answer,
    cached: false,
    provisionedAt: new Date().toISOString(),
    gateway: prepared.job.gateway === true,
  };
  // A pre-provisioned device answers with its own certificate: our new key would not fit it.
  if (
    generated?.certificate !== undefined &&
    answer.credentialsType === 'X509_CERTIFICATE' &&
    certificateBody(answer.credentialsValue) === certificateBody(generated.certificate)
  ) {
    result.generated = generated;
  }
  if (recovered) result.recovered = true;
  return result;
}

export function answerFromStore(entry: StoredEntry): ProvisionResult {
  const result: ProvisionResult = {
    deviceName: entry.deviceName,
    answer: entry.answer,
    cached: true,
    provisionedAt: entry.provisionedAt,
  };
  if (entry.generated) result.generated = entry.generated;
  if (entry.gateway !== undefined) result.gateway = entry.gateway;
  return result;
}

export function entryOf(result: ProvisionResult, prepared: PreparedJob): StoredEntry {
  const entry: StoredEntry = {
    host: prepared.job.target.host,
    provisionDeviceKey: prepared.provisionDeviceKey,
    deviceName: result.deviceName,
    answer: result.answer,
    provisionedAt: result.provisionedAt,
    gateway: result.gateway === true,
  };
  if (result.generated) entry.generated = result.generated;
  return entry;
}
