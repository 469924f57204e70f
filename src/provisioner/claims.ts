/**
 * Single flight across processes, with a store that offers claim(): a flight that keeps its answer
 * holds its device in the store while in its slot, from a lookup under the hold until the answer
 * is kept, so one process asks the server and the others take its answer from the store. A hold
 * outlives a dead process long enough for its request to end; the next holder sends the
 * credentials the dead one was sending, so a device it created can be recovered through the device
 * API.
 */
import { ProvisionError, errorText } from '../protocol/errors';
import type { DeviceCredentials } from '../protocol/types';
import type {
  CredentialStore,
  DeviceClaim,
  GeneratedMaterial,
  SentCredentials,
} from '../store/types';
import type { Backoff } from './backoff';
import type { Flight } from './single-flight';
import type { ProvisionJob } from './types';
import type { PreparedJob } from './validate';

/** Beyond the exchange: the store's own round trips before and after it. */
const HOLD_MARGIN_MS = 2000;

/** Every attempt, the waits between them, and the recovery's check of the credentials. */
export function holdTime(job: ProvisionJob, backoff: Backoff): number {
  let waits = 0;
  for (let retry = 0; retry < job.retries; retry++) {
    waits += Math.min(backoff.maxMs, backoff.baseMs * 2 ** retry);
  }
  return job.timeoutMs * (job.retries + 2) + waits + HOLD_MARGIN_MS;
}

/** Lets go of the flight's hold, if it has one; the store never rejects a release. */
export function releaseClaim(flight: Flight): void {
  const { claim } = flight;
  flight.claim = undefined;
  void claim?.release();
}

/**
 * The credentials an earlier holder generated and sent without keeping an answer, when this
 * flight would generate the same kind: sending them again lets a lost answer be recovered.
 */
export function unansweredCredentials(
  claim: DeviceClaim | undefined,
  prepared: PreparedJob,
): SentCredentials | undefined {
  const sent = claim?.unanswered;
  if (!sent || prepared.supplied || sent.credentials.type !== prepared.mode) return undefined;
  // A certificate is of use only with its private key.
  if (sent.credentials.type === 'X509_CERTIFICATE' && !sent.generated?.privateKey) return undefined;
  return sent;
}

/**
 * Records credentials the node generated (never the flow's) before they leave, so that a process
 * taking over can recover the answer; when that fails, nothing is sent.
 */
export async function recordSending(
  claim: DeviceClaim,
  prepared: PreparedJob,
  credentials: DeviceCredentials | undefined,
  generated: GeneratedMaterial | undefined,
  store: CredentialStore,
): Promise<void> {
  if (!credentials || prepared.supplied) return;
  try {
    await claim.sending(generated ? { credentials, generated } : { credentials });
  } catch (err) {
    const name = store.describe();
    throw new ProvisionError(
      'FAILURE',
      `${name.charAt(0).toUpperCase()}${name.slice(1)} could not record the credentials ` +
        `about to be sent: ${errorText(err)}. Nothing was sent to the server; ` +
        `${store.remedy?.('read') ?? 'try again'}.`,
      { cause: err },
    );
  }
}
