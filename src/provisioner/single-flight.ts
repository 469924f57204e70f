/**
 * Single flight: one request to the server per device at a time, shared by every job that asks
 * for the device meanwhile. A flight holds its participants as plain records: a job waiting in a
 * long queue costs its promise, its record and its share of the flight, nothing more.
 */
import type { DeviceCredentials } from '../protocol/types';
import type { DeviceKey } from '../store/types';
import { ProvisionCancelledError } from './errors';
import { ignoredFields } from './ignored';
import { scrub, secretsOf } from './scrub';
import type { ProvisionJob, ProvisionResult } from './types';
import type { PreparedJob } from './validate';

/** One job's place in a flight. */
export interface Participant {
  resolve(result: ProvisionResult): void;
  reject(err: unknown): void;
  job: ProvisionJob;
  /** The job's own credentials from the message, to scrub from any error it gets. */
  supplied: DeviceCredentials | undefined;
  /** Only for a job with its own signal. */
  onAbort: (() => void) | undefined;
}

export interface Flight {
  readonly key: DeviceKey;
  /** The job that opened the flight: its device, transport and credentials are what is sent. */
  readonly prepared: PreparedJob;
  /** Only for a flight opened by a job with its own signal: it stops when every job has left. */
  readonly controller: AbortController | undefined;
  /** Aborts the flight: the controller's, or the provisioner's closing signal. */
  readonly signal: AbortSignal;
  participants: Participant[];
  /** Some participant wants the answer kept (read once the answer is in). */
  persist: boolean;
  /** In its slot: its request may be at the server, so closing lets it finish. */
  sent: boolean;
}

/** A participant content with credentials from the store rather than the server's answer. */
export function takesStored(participant: Participant): boolean {
  return participant.job.persist && participant.job.reprovision !== true;
}

export class SingleFlight {
  private readonly flights = new Map<DeviceKey, Flight>();

  /** `onAbandoned` stops a flight whose last participant left before its answer. */
  constructor(private readonly onAbandoned: (flight: Flight) => void) {}

  get(key: DeviceKey): Flight | undefined {
    return this.flights.get(key);
  }

  /** Registers a new flight for `key`; its steps are the caller's to start. */
  open(key: DeviceKey, prepared: PreparedJob, closing: AbortSignal): Flight {
    // Jobs without a signal leave only when the provisioner closes: its signal serves them.
    const controller = prepared.job.signal ? new AbortController() : undefined;
    const flight: Flight = {
      key,
      prepared,
      controller,
      signal: controller?.signal ?? closing,
      participants: [],
      persist: false,
      sent: false,
    };
    this.flights.set(key, flight);
    return flight;
  }

  /** The job's answer from `flight`; it leaves on its own abort, rejected as cancelled. */
  join(
    flight: Flight,
    job: ProvisionJob,
    supplied: DeviceCredentials | undefined,
  ): Promise<ProvisionResult> {
    flight.persist ||= job.persist;
    return new Promise<ProvisionResult>((resolve, reject) => {
      const participant: Participant = { resolve, reject, job, supplied, onAbort: undefined };
      const { signal } = job;
      if (signal) {
        participant.onAbort = () => this.leave(flight, participant);
        signal.addEventListener('abort', participant.onAbort, { once: true });
      }
      // Most flights have one participant: push() onto an empty array reserves room for 17.
      if (flight.participants.length === 0) flight.participants = [participant];
      else flight.participants.push(participant);
    });
  }

  /**
   * Gives every participant chosen by `which` (all by default) its own copy of `result` and lets
   * them go; the flight ends when none is left.
   */
  answer(
    flight: Flight,
    result: ProvisionResult,
    which: (participant: Participant) => boolean = () => true,
  ): void {
    const served = this.release(flight, which);
    served.forEach((participant, i) => {
      const own = i === served.length - 1 ? result : structuredClone(result);
      const ignored = ignoredFields(own, participant.supplied, participant.job.gateway);
      if (ignored.length > 0) own.ignored = ignored;
      participant.resolve(own);
    });
  }

  /** Rejects every participant chosen by `which` (all by default); a cancellation each its own. */
  fail(
    flight: Flight,
    err: unknown,
    which: (participant: Participant) => boolean = () => true,
  ): void {
    for (const participant of this.release(flight, which)) {
      participant.reject(
        err instanceof ProvisionCancelledError
          ? new ProvisionCancelledError()
          : scrub(err, secretsOfJob(participant)),
      );
    }
  }

  /** Cancels every participant of the flights chosen (all by default) and forgets them. */
  cancelAll(which: (flight: Flight) => boolean = () => true): Flight[] {
    const chosen = [...this.flights.values()].filter(which);
    for (const flight of chosen) {
      this.flights.delete(flight.key);
      this.fail(flight, new ProvisionCancelledError());
    }
    return chosen;
  }

  /** Takes the chosen participants out of the flight; ends the flight once it has none. */
  private release(flight: Flight, which: (participant: Participant) => boolean): Participant[] {
    const chosen: Participant[] = [];
    const staying: Participant[] = [];
    for (const participant of flight.participants) {
      if (!which(participant)) {
        staying.push(participant);
        continue;
      }
      chosen.push(participant);
      if (participant.onAbort) {
        participant.job.signal?.removeEventListener('abort', participant.onAbort);
      }
    }
    flight.participants = staying;
    if (staying.length === 0) this.end(flight);
    return chosen;
  }

  private leave(flight: Flight, participant: Participant): void {
    const index = flight.participants.indexOf(participant);
    if (index === -1) return;
    flight.participants.splice(index, 1);
    participant.reject(new ProvisionCancelledError());
    if (flight.participants.length > 0) return;
    this.end(flight);
    this.onAbandoned(flight);
  }

  private end(flight: Flight): void {
    if (this.flights.get(flight.key) === flight) this.flights.delete(flight.key);
  }
}

function secretsOfJob(participant: Participant): string[] {
  const secret = participant.job.provisionDeviceSecret;
  return [typeof secret === 'string' ? secret : '', ...secretsOf(participant.supplied)];
}
