/**
 * One provisioning job from message to kept credentials, step by step: validate, join the
 * device's flight, look in the store, make sure the store can keep an answer, wait for a slot,
 * exchange (with retries and lost-answer recovery), keep the answer, answer every job of the
 * flight. No Node-RED and no sockets here.
 */
import { setMaxListeners } from 'node:events';
import { ProvisionError, errorText } from '../protocol/errors';
import { buildRequest } from '../protocol/request';
import type { DeviceCredentials, ProvisionAnswer, ProvisionRequest } from '../protocol/types';
import { deviceKey } from '../store/entry';
import { isStoreUnavailable } from '../store/errors';
import type { CredentialStore, StoredEntry } from '../store/types';
import { getTransport, verifyDeviceCredentials } from '../transports';
import type { Transport, TransportName } from '../transports/types';
import { DEFAULT_BACKOFF, sleep, type Backoff, type Sleep } from './backoff';
import { generateCredentials } from './credentials';
import {
  CredentialsNotSavedError,
  ProvisionCancelledError,
  asProvisionError,
  refuseForStore,
  storeRefusal,
} from './errors';
import { recoverLostAnswer, type VerifyCredentials } from './recovery';
import { answerFromStore, entryOf, resultOf } from './results';
import { withRetries } from './retry';
import { scrub, secretsOf } from './scrub';
import { SingleFlight, takesStored, type Flight } from './single-flight';
import { Slots, type Activity } from './slots';
import type { GeneratedMaterial, ProvisionJob, ProvisionResult } from './types';
import { validateJob, type PreparedJob } from './validate';

export interface ProvisionerOptions {
  /** Jobs talking to a server at once; further jobs wait in FIFO order. */
  concurrency: number;
  /** Used by jobs with `persist`. */
  store?: CredentialStore;
  /** Default: getTransport(name) from the transports layer. */
  transports?: Partial<Record<TransportName, Transport>>;
  /** Default: verifyDeviceCredentials from the transports layer. */
  verifyCredentials?: VerifyCredentials;
  /** Called on every change of the counts. */
  onActivity?: (state: Activity) => void;
  /** Default 500 / 10 000 ms. */
  backoff?: Backoff;
  /** Jitter source, default Math.random. */
  random?: () => number;
  /** Default: real timers. Must settle promptly when `signal` aborts. */
  sleep?: Sleep;
}

export class Provisioner {
  private readonly store?: CredentialStore;
  private readonly transports: Partial<Record<TransportName, Transport>>;
  private readonly verify: VerifyCredentials;
  private readonly backoff: Backoff;
  private readonly random: () => number;
  private readonly sleep: Sleep;
  private readonly slots: Slots<Flight>;
  private readonly flights: SingleFlight;
  /** Aborts every exchange at once. */
  private readonly closing = new AbortController();
  /** Closing has begun: no new job, no further attempt; requests already sent may finish. */
  private readonly draining = new AbortController();
  /** Flights from their slot to their answer, for close() to wait on. */
  private readonly flying = new Map<Promise<void>, Flight>();
  /** The store's loading, cut short by close(): one wait shared by every flight. */
  private storeReady?: Promise<void>;
  private storeLoaded = false;

  constructor(options: ProvisionerOptions) {
    this.slots = new Slots(options.concurrency, (flight) => this.fly(flight), options.onActivity);
    this.flights = new SingleFlight((flight) => this.abandon(flight));
    this.store = options.store;
    this.transports = { ...options.transports };
    this.verify = options.verifyCredentials ?? verifyDeviceCredentials;
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.random = options.random ?? Math.random;
    this.sleep = options.sleep ?? sleep;
    // Every running exchange listens on these signals; many at once are expected.
    setMaxListeners(0, this.closing.signal);
    setMaxListeners(0, this.draining.signal);
  }

  get inFlight(): number {
    return this.slots.inFlight;
  }

  get queued(): number {
    return this.slots.queued;
  }

  setConcurrency(n: number): void {
    this.slots.setConcurrency(n);
  }

  /** Resolves with the credentials; rejects with a ProvisionError (never with a secret in it). */
  provision(job: ProvisionJob): Promise<ProvisionResult> {
    if (this.draining.signal.aborted || job.signal?.aborted) {
      return Promise.reject(new ProvisionCancelledError());
    }
    let prepared: PreparedJob;
    try {
      prepared = validateJob(job);
      if (job.persist) this.requireStore();
    } catch (err) {
      const secret = typeof job.provisionDeviceSecret === 'string' ? job.provisionDeviceSecret : '';
      return Promise.reject(scrub(err, [secret]));
    }
    const key = deviceKey(job.target.host, prepared.provisionDeviceKey, prepared.deviceName);
    const running = this.flights.get(key);
    if (running) return this.flights.join(running, job, prepared.supplied);
    // Registered before any wait: a later job for this device joins it, however slow the store.
    const flight = this.flights.open(key, prepared, this.closing.signal);
    const answer = this.flights.join(flight, job, prepared.supplied);
    if (flight.persist) this.lookUp(flight);
    else this.slots.enter(flight);
    return answer;
  }

  /**
   * Takes no new job; jobs whose request was not sent yet reject with ProvisionCancelledError.
   * Requests already sent finish within their deadline, with no further attempt, and their
   * answers are kept; after `graceMs` those still running are aborted too. Resolves when all
   * have settled.
   */
  async close(graceMs = 0): Promise<void> {
    this.draining.abort();
    this.slots.takeAll();
    for (const flight of this.flights.cancelAll((f) => !f.sent)) flight.controller?.abort();
    const abortRest = (): void => {
      this.closing.abort();
      for (const flight of this.flying.values()) flight.controller?.abort();
    };
    const timer = graceMs > 0 ? setTimeout(abortRest, graceMs) : undefined;
    if (timer === undefined) abortRest();
    try {
      while (this.flying.size > 0) await Promise.allSettled([...this.flying.keys()]);
    } finally {
      clearTimeout(timer);
      abortRest();
    }
  }

  /** The store's entry for a flight whose first job keeps credentials; a slot when it has none. */
  private lookUp(flight: Flight): void {
    const store = this.requireStore();
    if (!this.storeLoaded) {
      this.untilReady(store).then(
        () => this.lookUp(flight),
        (err: unknown) => this.unreadable(flight, store, err),
      );
      return;
    }
    if (flight.participants.length === 0) return;
    if (!flight.participants.some(takesStored)) {
      this.whenWritable(flight, store);
      return;
    }
    store.get(flight.key).then(
      (entry) => (entry ? this.lookedUp(flight, entry) : this.whenWritable(flight, store, true)),
      (err: unknown) => this.unreadable(flight, store, err),
    );
  }

  /**
   * A slot once the store can keep the answer. A write that failed earlier is retried first; it
   * may have been this device's, so a job that takes stored credentials looks again after it.
   */
  private whenWritable(flight: Flight, store: CredentialStore, lookAgain = false): void {
    store
      .writable()
      .then((wrote) => (wrote && lookAgain ? store.get(flight.key) : undefined))
      .then(
        (entry) => this.lookedUp(flight, entry),
        (err: unknown) => this.unreadable(flight, store, err),
      );
  }

  private lookedUp(flight: Flight, entry: StoredEntry | undefined): void {
    if (flight.participants.length === 0) return;
    if (entry) {
      this.flights.answer(flight, answerFromStore(entry), takesStored);
      if (flight.participants.length === 0) return;
      // Left: jobs that asked for the server's answer (reprovision, or not kept).
      flight.persist = flight.participants.some((p) => p.job.persist);
    }
    this.slots.enter(flight);
  }

  /** Jobs that keep credentials fail before anything is sent; the others go on. */
  private unreadable(flight: Flight, store: CredentialStore, err: unknown): void {
    if (err instanceof ProvisionCancelledError) {
      this.flights.fail(flight, err);
      return;
    }
    const name = store.describe();
    const failure = isStoreUnavailable(err)
      ? storeRefusal(err)
      : new ProvisionError(
          'FAILURE',
          `${name.charAt(0).toUpperCase()}${name.slice(1)} could not be read: ${errorText(err)}. ` +
            'Nothing was sent to the server; fix the file or its folder and try again.',
          { cause: err },
        );
    this.flights.fail(flight, failure, (p) => p.job.persist);
    if (flight.participants.length === 0) return;
    flight.persist = false;
    this.slots.enter(flight);
  }

  private untilReady(store: CredentialStore): Promise<void> {
    this.storeReady ??= new Promise<void>((resolve, reject) => {
      const { signal } = this.closing;
      const onAbort = (): void => reject(new ProvisionCancelledError());
      signal.addEventListener('abort', onAbort, { once: true });
      store.ready().then(
        () => {
          signal.removeEventListener('abort', onAbort);
          this.storeLoaded = true;
          resolve();
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          // The next job asks again: a lock let go, or a file replaced, may let it load.
          this.storeReady = undefined;
          reject(err);
        },
      );
    });
    return this.storeReady;
  }

  /** In its slot: the exchange, then keeping the answer, then answering every job. */
  private fly(flight: Flight): void {
    flight.sent = true;
    const landed = this.exchangeAndKeep(flight).then(
      (result) => this.flights.answer(flight, result),
      (err: unknown) => this.flights.fail(flight, err),
    );
    this.flying.set(landed, flight);
    void landed.then(() => this.flying.delete(landed));
  }

  private async exchangeAndKeep(flight: Flight): Promise<ProvisionResult> {
    let result: ProvisionResult;
    try {
      // Queued while a write failed: still nothing is sent until the store can keep the answer.
      if (flight.persist) await this.requireStore().writable().catch(refuseForStore);
      result = await this.exchange(flight);
    } finally {
      // The slot is freed when the exchange ends, before the answer is stored.
      this.slots.release();
    }
    // Read only now: jobs that joined while the request was out want it kept too.
    if (flight.persist) await this.keep(result, flight.prepared);
    return result;
  }

  /** Nobody waits for the flight any more: out of the queue, or its exchange stopped. */
  private abandon(flight: Flight): void {
    this.slots.leave(flight);
    flight.controller?.abort();
  }

  private async exchange(flight: Flight): Promise<ProvisionResult> {
    const { prepared, signal } = flight;
    let credentials = prepared.supplied;
    let generated: GeneratedMaterial | undefined;
    if (!credentials && prepared.mode !== 'server') {
      // Made once per flight: every retry sends the same, so a lost answer can be checked.
      ({ credentials, generated } = await generateCredentials(prepared.mode, prepared.deviceName));
      if (signal.aborted) throw new ProvisionCancelledError();
    }
    const request = buildRequest({
      provisionDeviceKey: prepared.provisionDeviceKey,
      provisionDeviceSecret: prepared.provisionDeviceSecret,
      deviceName: prepared.deviceName,
      credentials,
      gateway: prepared.job.gateway === true,
    });
    // Closing began while this flight checked the store or made its key: not sent, so dropped.
    if (this.draining.signal.aborted) throw new ProvisionCancelledError();
    try {
      const { answer, recovered } = await this.send(prepared, request, credentials, signal);
      return resultOf(prepared, answer, generated, recovered);
    } catch (err) {
      throw scrub(err, secretsOf(credentials, generated));
    }
  }

  /** The first attempt and up to job.retries more; a FAILURE after a lost answer is recovered. */
  private async send(
    prepared: PreparedJob,
    request: ProvisionRequest,
    credentials: DeviceCredentials | undefined,
    signal: AbortSignal,
  ): Promise<{ answer: ProvisionAnswer; recovered: boolean }> {
    const { job } = prepared;
    const transport = this.transportFor(job.transport);
    let maybeDelivered = false;
    const attempt = async (): Promise<ProvisionAnswer> => {
      try {
        return await transport(job.target, request, {
          signal,
          deadline: Date.now() + job.timeoutMs,
        });
      } catch (err) {
        throw asProvisionError(err, job.transport);
      }
    };
    try {
      const answer = await withRetries(attempt, {
        retries: job.retries,
        backoff: this.backoff,
        random: this.random,
        sleep: this.sleep,
        signal,
        stop: this.draining.signal,
        onRetry: (err) => {
          maybeDelivered ||= err.maybeDelivered;
        },
      });
      return { answer, recovered: false };
    } catch (err) {
      const lost = err instanceof ProvisionError && err.status === 'FAILURE' && maybeDelivered;
      if (!lost || err instanceof ProvisionCancelledError) throw err;
      // Closing: a check would be one more request.
      if (this.draining.signal.aborted) throw new ProvisionCancelledError(err);
      const answer = await recoverLostAnswer(prepared, credentials, err, signal, this.verify);
      return { answer, recovered: true };
    }
  }

  private async keep(result: ProvisionResult, prepared: PreparedJob): Promise<void> {
    const store = this.requireStore();
    try {
      await store.put(entryOf(result, prepared));
    } catch (err) {
      throw new CredentialsNotSavedError(result, store.describe(), err);
    }
  }

  private requireStore(): CredentialStore {
    if (!this.store) {
      throw new ProvisionError(
        'FAILURE',
        'Keeping credentials was asked for, but no credential store is configured.',
      );
    }
    return this.store;
  }

  private transportFor(name: TransportName): Transport {
    let transport = this.transports[name];
    if (!transport) {
      transport = getTransport(name);
      this.transports[name] = transport;
    }
    return transport;
  }
}
