/**
 * What a job asked for that its answer does not reflect: it got stored credentials, or joined a
 * flight opened by another message for the same device, and its own msg.credentials or gateway
 * flag were not the ones the device was provisioned with. The output says so rather than hide it.
 */
import type { DeviceCredentials, ProvisionAnswer } from '../protocol/types';
import type { IgnoredField, ProvisionResult } from './types';

/** The certificate's base64 body, as ThingsBoard returns it. */
export function certificateBody(pem: string): string {
  return pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
}

/** Whether `answer` holds exactly these device-chosen credentials. */
export function answerHolds(answer: ProvisionAnswer, credentials: DeviceCredentials): boolean {
  switch (credentials.type) {
    case 'ACCESS_TOKEN':
      return (
        answer.credentialsType === 'ACCESS_TOKEN' && answer.credentialsValue === credentials.token
      );
    case 'MQTT_BASIC': {
      if (answer.credentialsType !== 'MQTT_BASIC') return false;
      const value = answer.credentialsValue;
      return (
        value.clientId === credentials.clientId &&
        value.userName === credentials.username &&
        value.password === credentials.password
      );
    }
    case 'X509_CERTIFICATE':
      return (
        answer.credentialsType === 'X509_CERTIFICATE' &&
        certificateBody(answer.credentialsValue) === certificateBody(credentials.certificate)
      );
  }
}

/** The fields of a job that its answer does not reflect; empty for the job that was sent. */
export function ignoredFields(
  result: ProvisionResult,
  supplied: DeviceCredentials | undefined,
  gateway: boolean | undefined,
): IgnoredField[] {
  const ignored: IgnoredField[] = [];
  if (supplied !== undefined && !answerHolds(result.answer, supplied)) ignored.push('credentials');
  // Unknown for entries stored before the flag was kept: then nothing is claimed.
  if (result.gateway !== undefined && (gateway === true) !== result.gateway) {
    ignored.push('gateway');
  }
  return ignored;
}
