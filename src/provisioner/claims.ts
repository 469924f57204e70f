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
  HeldElsewhere,
  SentCredentials,
} from '../store/types';
import type { Backoff } from './backoff';
import { answerFromStore } from './results';
import { takesStored, type Flight, type SingleFlight } from './single-flight';
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

/**
 * In the flight's slot: holds its device in the shared store, reading the entry under the hold;
 * the jobs content with a stored answer get it from that entry. Resolves with whether an exchange
 * is left to make, or with the other process's hold to wait for (outside any slot).
 */
export async function holdDevice(
  flight: Flight,
  store: CredentialStore,
  backoff: Backoff,
  flights: SingleFlight,
): Promise<boolean | HeldElsewhere> {
  if (!store.claim) return true;
  const claim = await store.claim(flight.key, { holdMs: holdTime(flight.prepared.job, backoff) });
  if (!claim.held) return claim;
  flight.claim = claim;
  if (claim.entry && flight.participants.some(takesStored)) {
    flights.answer(flight, answerFromStore(claim.entry), takesStored);
    flight.persist = flight.participants.some((p) => p.job.persist);
  }
  return flight.participants.length > 0;
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
