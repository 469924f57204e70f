/**
 * Lost-answer recovery: an earlier attempt may have created the device and lost the answer, and
 * the server now says FAILURE. A token or MQTT basic credentials the node generated itself can be
 * checked: no other device can hold them, so if the device API takes them the device is ours and
 * the answer is what the server would have sent. Credentials from the flow are never checked: the
 * device API accepting them proves only that some device holds them (perhaps another one, whose
 * single MQTT session a login would also take over).
 */
import { ProvisionError } from '../protocol/errors';
import type { DeviceCredentials, ProvisionAnswer } from '../protocol/types';
import type { verifyDeviceCredentials } from '../transports';
import { ProvisionCancelledError } from './errors';
import type { CredentialsMode } from './types';
import type { PreparedJob } from './validate';

/**
 * Checks over a transport whether the device API accepts the credentials in an answer: true
 * accepted, false refused; throws when it cannot tell (unsupported, unreachable).
 */
export type VerifyCredentials = typeof verifyDeviceCredentials;

/** What the server answers for device-chosen credentials it accepted. */
export function answerFor(credentials: DeviceCredentials): ProvisionAnswer | undefined {
  switch (credentials.type) {
    case 'ACCESS_TOKEN':
      return {
        status: 'SUCCESS',
        credentialsType: 'ACCESS_TOKEN',
        credentialsValue: credentials.token,
      };
    case 'MQTT_BASIC': {
      const value: { clientId?: string; userName?: string; password?: string } = {};
      if (credentials.clientId !== undefined) value.clientId = credentials.clientId;
      if (credentials.username !== undefined) value.userName = credentials.username;
      if (credentials.password !== undefined) value.password = credentials.password;
      return { status: 'SUCCESS', credentialsType: 'MQTT_BASIC', credentialsValue: value };
    }
    case 'X509_CERTIFICATE':
      return undefined;
  }
}

/** FAILURE after a maybe-delivered attempt that cannot be proven ours: says how to recover. */
export function lostAnswerError(
  deviceName: string,
  mode: CredentialsMode,
  cause: ProvisionError,
  fromFlow = false,
): ProvisionError {
  const name = JSON.stringify(deviceName);
  const why = fromFlow
    ? 'The credentials came from msg.credentials, so the node does not check them with the ' +
      'server: that proves only that some device holds them, which may be another device.'
    : mode === 'server'
      ? 'ThingsBoard chose its credentials and never sends them twice.'
      : mode === 'X509_CERTIFICATE'
        ? 'This node chose a certificate, but cannot check a certificate against the server.'
        : 'This node chose its credentials, but could not check them against the server.';
  return new ProvisionError(
    'FAILURE',
    `An earlier attempt probably created device ${name}, but its answer was lost on the way ` +
      `back, and the server now refuses the device as already provisioned. ${why} To recover: ` +
      'delete the device in ThingsBoard and provision it again, or copy its credentials from ' +
      'the device in ThingsBoard. Access tokens the node generates (credentials type ' +
      'ACCESS_TOKEN without msg.credentials) avoid this: the node can then check them itself.',
    { serverMessage: cause.serverMessage, cause },
  );
}

/**
 * The answer the lost one was, or the error to report: `failure`, or how to recover by hand.
 * `credentials` are those sent; only ones the node generated (none supplied) are checked.
 */
export async function recoverLostAnswer(
  prepared: PreparedJob,
  credentials: DeviceCredentials | undefined,
  failure: ProvisionError,
  signal: AbortSignal,
  verify: VerifyCredentials,
): Promise<ProvisionAnswer> {
  const { job } = prepared;
  if (prepared.supplied !== undefined) {
    throw lostAnswerError(prepared.deviceName, prepared.mode, failure, true);
  }
  const expected = credentials ? answerFor(credentials) : undefined;
  if (expected) {
    let accepted: boolean | undefined;
    try {
      accepted = await verify(job.transport, job.target, expected, {
        signal,
        deadline: Date.now() + job.timeoutMs,
      });
    } catch {
      // Could not tell: the explanation below still applies.
    }
    if (signal.aborted) throw new ProvisionCancelledError();
    if (accepted === true) return expected;
    // Refused: the name was taken by a device with other credentials before we came.
    if (accepted === false) throw failure;
  }
  throw lostAnswerError(prepared.deviceName, prepared.mode, failure);
}
