/**
 * One provisioning job from message to stored credentials: validation, the stored answer, single
 * flight per device, the concurrency queue, retries with backoff, lost-answer recovery and the
 * durable store write. No Node-RED and no sockets here: transports do the talking.
 */
import { setMaxListeners } from 'node:events';
import { ProvisionError } from '../protocol/errors';
import {
  buildRequest,
  validateCredentials,
  validateDeviceName,
  validateProvisionKeys,
} from '../protocol/request';
import {
  CREDENTIALS_TYPES,
  type CredentialsType,
  type DeviceCredentials,
  type ProvisionAnswer,
  type ProvisionRequest,
} from '../protocol/types';
import { getTransport, verifyDeviceCredentials } from '../transports';
import type { Transport, TransportName } from '../transports/types';
import { generateAccessToken, generateCertificate, generateMqttBasic } from './credentials';
import { Fifo } from './fifo';
import type { CredentialStore } from './store';
import type {
  CredentialsMode,
  GeneratedMaterial,
  ProvisionJob,
  ProvisionResult,
  StoredEntry,
} from './types';

/**
 * Checks over a transport whether the device API accepts the credentials in an answer: true
 * accepted, false refused; throws when it cannot tell (unsupported, unreachable).
 */
export type VerifyCredentials = typeof verifyDeviceCredentials;

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
  onActivity?: (state: { inFlight: number; queued: number }) => void;
  /** Default 500 / 10 000 ms. */
  backoff?: { baseMs: number; maxMs: number };
  /** Jitter source, default Math.random. */
  random?: () => number;
  /** Default: real timers. Must settle promptly when `signal` aborts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export const DEFAULT_BACKOFF = { baseMs: 500, maxMs: 10_000 };

const TRANSPORT_NAMES: readonly TransportName[] = ['mqtt', 'http', 'coap'];

/** Rejection of a job that was aborted or whose provisioner closed. */
export class ProvisionCancelledError extends ProvisionError {
  constructor(cause?: unknown) {
    super('CONNECTION_ERROR', 'Provisioning was cancelled', { cause });
  }
}

export function isCancelledError(err: unknown): err is ProvisionCancelledError {
  return err instanceof ProvisionCancelledError;
}

/**
 * The server provisioned the device but the store could not keep its credentials. `result` holds
 * them so the caller can still hand them to the user: ThingsBoard will not send them again.
 */
export class CredentialsNotSavedError extends ProvisionError {
  readonly result: ProvisionResult;
  readonly storePath: string;

  constructor(result: ProvisionResult, storePath: string, cause: unknown) {
    super(
      'FAILURE',
      `Device ${JSON.stringify(result.deviceName)} was provisioned, but its credentials could ` +
        `not be saved to ${storePath}: ${reasonOf(cause)}. ThingsBoard will not send them ` +
        'again: copy them from this error before anything else, then fix the folder ' +
        '(permissions, free space).',
      { cause },
    );
    this.result = result;
    this.storePath = storePath;
  }
}

function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Full jitter: a uniformly random wait in [0, min(maxMs, baseMs * 2^retry)). */
export function backoffDelay(
  retry: number,
  backoff: { baseMs: number; maxMs: number },
  random: () => number,
): number {
  return Math.min(backoff.maxMs, backoff.baseMs * 2 ** retry) * random();
}

function realSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new ProvisionCancelledError());
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new ProvisionCancelledError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A job after validation: everything typed, nothing generated yet. */
interface PreparedJob {
  job: ProvisionJob;
  deviceName: string;
  provisionDeviceKey: string;
  provisionDeviceSecret: string;
  mode: CredentialsMode;
  /** From the message; absent: server-chosen, or generated when the flight starts. */
  supplied?: DeviceCredentials;
}

interface FlightOutcome {
  result: ProvisionResult;
  stored: boolean;
}

/** One request to the server for one device, shared by every job that asks meanwhile. */
interface Flight {
  key: string;
  prepared: PreparedJob;
  /** Only for a flight started by a job with its own signal: it stops when all such jobs left. */
  controller?: AbortController;
  /** Aborts the flight: the controller's, or the provisioner's closing signal. */
  signal: AbortSignal;
  participants: number;
  /** Participants not yet answered or gone. */
  waiting: number;
  /** Some participant wants the answer stored (read when the answer is in). */
  persist: boolean;
  promise: Promise<FlightOutcome>;
  /**
   * While the flight waits for a slot: how to settle its promise. It holds nothing else meanwhile
   * (the exchange's code starts only in a slot), so a long queue stays small.
   */
  queued?: { resolve(outcome: Promise<FlightOutcome>): void; reject(err: Error): void };
}

function invalidJob(message: string): ProvisionError {
  return new ProvisionError('INVALID_INPUT', message);
}

function flightKey(host: string, provisionDeviceKey: string, deviceName: string): string {
  return JSON.stringify([host.trim().toLowerCase(), provisionDeviceKey, deviceName]);
}

/** The certificate's base64 body, as ThingsBoard returns it. */
function certificateBody(pem: string): string {
  return pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
}

/** What the server answers for device-chosen credentials it accepted. */
function answerFor(credentials: DeviceCredentials): ProvisionAnswer | undefined {
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

function secretsOf(credentials: DeviceCredentials | undefined, generated?: GeneratedMaterial) {
  const secrets: string[] = [];
  if (credentials?.type === 'ACCESS_TOKEN') secrets.push(credentials.token);
  if (credentials?.type === 'MQTT_BASIC' && credentials.password) {
    secrets.push(credentials.password);
  }
  if (generated?.privateKey) secrets.push(generated.privateKey);
  return secrets;
}

/** Defence in depth: whatever a lower layer wrote, a secret never leaves in an error text. */
function scrub<T>(err: T, secrets: readonly string[]): T {
  if (!(err instanceof Error)) return err;
  const known = secrets.filter((s) => s.length >= 4);
  const clean = (text: string): string =>
    known.reduce((out, secret) => out.split(secret).join('***'), text);
  err.message = clean(err.message);
  if (err.stack) err.stack = clean(err.stack);
  if (err instanceof ProvisionError && err.serverMessage !== undefined) {
    (err as { serverMessage?: string }).serverMessage = clean(err.serverMessage);
  }
  return err;
}

function asProvisionError(err: unknown, transport: TransportName): ProvisionError {
  if (err instanceof ProvisionError) return err;
  return new ProvisionError(
    'PROTOCOL_ERROR',
    `The ${transport} transport failed unexpectedly: ${reasonOf(err)}`,
    { cause: err },
  );
}

/** FAILURE after a maybe-delivered attempt that cannot be proven ours: says how to recover. */
function lostAnswerError(
  deviceName: string,
  mode: CredentialsMode,
  cause: ProvisionError,
): ProvisionError {
  const name = JSON.stringify(deviceName);
  const why =
    mode === 'server'
      ? 'ThingsBoard chose its credentials and never sends them twice.'
      : mode === 'X509_CERTIFICATE'
        ? 'This node chose a certificate, but cannot check a certificate against the server.'
        : 'This node chose its credentials, but could not check them against the server.';
  return new ProvisionError(
    'FAILURE',
    `An earlier attempt probably created device ${name}, but its answer was lost on the way ` +
      `back, and the server now refuses the device as already provisioned. ${why} To recover: ` +
      'delete the device in ThingsBoard and provision it again, or copy its credentials from ' +
      'the device in ThingsBoard. Device-chosen access tokens (credentials type ACCESS_TOKEN) ' +
      'avoid this: the node can then check them itself.',
    { serverMessage: cause.serverMessage, cause },
  );
}

export class Provisioner {
  private concurrency: number;
  private readonly store?: CredentialStore;
  private readonly transports: Partial<Record<TransportName, Transport>>;
  private readonly verifyOverride?: VerifyCredentials;
  private readonly onActivity?: (state: { inFlight: number; queued: number }) => void;
  private readonly backoff: { baseMs: number; maxMs: number };
  private readonly random: () => number;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;

  private inFlightCount = 0;
  private readonly waiting = new Fifo<Flight>();
  private readonly flights = new Map<string, Flight>();
  /** Every job and flight promise not yet settled, for close(). */
  private readonly active = new Set<Promise<unknown>>();
  private readonly closing = new AbortController();
  /** How to cancel each waiting job on close(): a Set, since EventTarget's add walks every listener. */
  private readonly leaveOnClose = new Set<() => void>();
  /** Set once the store has loaded: later jobs skip waiting for it. */
  private storeLoaded = false;
  /**
   * The store's loading, cut short by close(): one wait shared by every job that comes before the
   * store is ready (a flow can send thousands at deploy; each listening on the close signal itself
   * cost time quadratic in their number).
   */
  private storeReady?: Promise<void>;
  private lastReported = { inFlight: 0, queued: 0 };

  constructor(options: ProvisionerOptions) {
    this.concurrency = Provisioner.checkConcurrency(options.concurrency);
    this.store = options.store;
    this.transports = { ...options.transports };
    this.verifyOverride = options.verifyCredentials;
    this.onActivity = options.onActivity;
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.random = options.random ?? Math.random;
    this.sleep = options.sleep ?? realSleep;
    // Every queued and running job listens on this one signal; thousands at once are expected.
    setMaxListeners(0, this.closing.signal);
  }

  get inFlight(): number {
    return this.inFlightCount;
  }

  get queued(): number {
    return this.waiting.length;
  }

  setConcurrency(n: number): void {
    this.concurrency = Provisioner.checkConcurrency(n);
    this.pump();
  }

  /** Resolves with the credentials; rejects with a ProvisionError (never with a secret in it). */
  provision(job: ProvisionJob): Promise<ProvisionResult> {
    const promise = this.run(job);
    this.track(promise);
    return promise;
  }

  /** Aborts queued and running jobs (they reject with ProvisionCancelledError) and waits for them. */
  async close(): Promise<void> {
    this.closing.abort();
    for (const leave of [...this.leaveOnClose]) leave();
    for (const flight of this.waiting.takeAll()) {
      flight.queued?.reject(new ProvisionCancelledError());
    }
    this.report();
    for (const flight of this.flights.values()) flight.controller?.abort();
    this.flights.clear();
    while (this.active.size > 0) await Promise.allSettled([...this.active]);
  }

  private static checkConcurrency(n: number): number {
    if (!Number.isSafeInteger(n) || n < 1) {
      throw new RangeError(`concurrency must be a whole number of at least 1, not ${n}`);
    }
    return n;
  }

  private track(promise: Promise<unknown>): void {
    this.active.add(promise);
    const forget = (): void => {
      this.active.delete(promise);
    };
    promise.then(forget, forget);
  }

  private async run(job: ProvisionJob): Promise<ProvisionResult> {
    const secrets = [
      typeof job.provisionDeviceSecret === 'string' ? job.provisionDeviceSecret : '',
    ];
    try {
      if (this.closing.signal.aborted || job.signal?.aborted) throw new ProvisionCancelledError();
      const prepared = this.prepare(job);
      secrets.push(...secretsOf(prepared.supplied));
      const store = job.persist ? this.requireStore() : undefined;
      const key = flightKey(job.target.host, prepared.provisionDeviceKey, prepared.deviceName);
      // A request already in flight for this device is joined before any wait for the store, so a
      // slow first load cannot let it finish unseen and cause a second request.
      const running = this.flights.get(key);
      if (running) {
        running.persist ||= job.persist;
        return await this.participate(running, job);
      }
      if (store && !this.storeLoaded) {
        await this.untilReady(store, job.signal);
        this.storeLoaded = true;
      }
      if (this.closing.signal.aborted || job.signal?.aborted) throw new ProvisionCancelledError();

      // From here to joining or starting a flight nothing awaits, so one device has one flight.
      let flight = this.flights.get(key);
      if (!flight && store && !job.reprovision) {
        const stored = store.get(job.target.host, prepared.provisionDeviceKey, prepared.deviceName);
        if (stored) return answerFromCache(stored);
      }
      if (flight) flight.persist ||= job.persist;
      else flight = this.startFlight(key, prepared);
      return await this.participate(flight, job);
    } catch (err) {
      throw scrub(err, secrets);
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

  private async untilReady(store: CredentialStore, signal?: AbortSignal): Promise<void> {
    this.storeReady ??= abortable(store.ready(), [this.closing.signal]);
    try {
      await (signal ? abortable(this.storeReady, [signal]) : this.storeReady);
    } catch (err) {
      // Each job gets its own error: the shared wait's would be one object for all of them.
      if (err instanceof ProvisionCancelledError) throw new ProvisionCancelledError(err);
      throw new ProvisionError(
        'FAILURE',
        `The credentials file ${store.filePath} could not be read: ${reasonOf(err)}. Nothing ` +
          'was sent to the server; fix the file or its folder and try again.',
        { cause: err },
      );
    }
  }

  /** Validation: throws INVALID_INPUT before anything is sent. */
  private prepare(job: ProvisionJob): PreparedJob {
    if (!TRANSPORT_NAMES.includes(job.transport)) {
      throw invalidJob(
        `Unknown transport ${JSON.stringify(job.transport)}: use mqtt, http or coap.`,
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
    if (mode !== 'server' && !(CREDENTIALS_TYPES as readonly string[]).includes(mode)) {
      throw invalidJob(
        `Unknown credentials type ${JSON.stringify(mode)}: use server, ACCESS_TOKEN, ` +
          'MQTT_BASIC or X509_CERTIFICATE.',
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

  private startFlight(key: string, prepared: PreparedJob): Flight {
    // Jobs without a signal leave only when the provisioner closes: its signal serves them.
    const controller = prepared.job.signal ? new AbortController() : undefined;
    const flight: Flight = {
      key,
      prepared,
      controller,
      signal: controller?.signal ?? this.closing.signal,
      participants: 0,
      waiting: 0,
      persist: prepared.job.persist,
      promise: undefined as unknown as Promise<FlightOutcome>,
      queued: undefined,
    };
    const promise = this.takeSlot(flight);
    flight.promise = promise;
    this.flights.set(key, flight);
    this.active.add(promise);
    // Participants handle the outcome; this also keeps a flight nobody waits for from going unhandled.
    const settled = (): void => {
      this.active.delete(promise);
      if (this.flights.get(key) === flight) this.flights.delete(key);
    };
    promise.then(settled, settled);
    return flight;
  }

  /** One job's share of a flight: leaves on its own abort; the flight stops when all have left. */
  private participate(flight: Flight, job: ProvisionJob): Promise<ProvisionResult> {
    flight.participants++;
    flight.waiting++;
    const { signal } = job;
    return new Promise<ProvisionResult>((resolve, reject) => {
      let left = false;
      const leave = (): boolean => {
        if (left) return false;
        left = true;
        flight.waiting--;
        signal?.removeEventListener('abort', onAbort);
        this.leaveOnClose.delete(onAbort);
        return true;
      };
      const onAbort = (): void => {
        if (!leave()) return;
        if (--flight.participants === 0) {
          if (this.flights.get(flight.key) === flight) this.flights.delete(flight.key);
          this.unqueue(flight);
          flight.controller?.abort();
        }
        reject(new ProvisionCancelledError());
      };
      if (signal?.aborted || this.closing.signal.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.leaveOnClose.add(onAbort);
      const answer = (outcome: FlightOutcome): void => {
        if (!leave()) return;
        // Each participant owns its result; the last one served takes the flight's own copy.
        resolve(flight.waiting === 0 ? outcome.result : structuredClone(outcome.result));
      };
      flight.promise.then(
        (outcome) => {
          // Joined after the flight's own store write: keep it here before answering.
          if (!job.persist || outcome.stored) answer(outcome);
          else
            this.keep(outcome.result, flight.prepared).then(
              () => answer(outcome),
              (err: unknown) => {
                if (leave()) reject(err);
              },
            );
        },
        (err: unknown) => {
          if (!leave()) return;
          reject(err instanceof ProvisionCancelledError ? new ProvisionCancelledError() : err);
        },
      );
    });
  }

  /**
   * The flight's exchange, in the slot takeSlot() gave it: the slot is freed when the exchange
   * ends, before the answer is stored.
   */
  private async fly(flight: Flight): Promise<FlightOutcome> {
    const { prepared } = flight;
    const { job } = prepared;
    const signal = flight.signal;
    let credentials = prepared.supplied;
    let generated: GeneratedMaterial | undefined;
    let outcome: { answer: ProvisionAnswer; recovered: boolean };
    try {
      if (!credentials && prepared.mode !== 'server') {
        // Made once per job: every retry sends the same, so a lost answer can be checked.
        ({ credentials, generated } = await this.generate(prepared.mode, prepared.deviceName));
        if (signal.aborted) throw new ProvisionCancelledError();
      }
      const request = buildRequest({
        provisionDeviceKey: prepared.provisionDeviceKey,
        provisionDeviceSecret: prepared.provisionDeviceSecret,
        deviceName: prepared.deviceName,
        credentials,
        gateway: job.gateway === true,
      });
      try {
        outcome = await this.attempts(prepared, request, credentials, signal);
      } catch (err) {
        throw scrub(err, secretsOf(credentials, generated));
      }
    } finally {
      this.releaseSlot();
    }
    const { answer, recovered } = outcome;
    // A pre-provisioned device answers with its own certificate: our new key would not fit it.
    const keepGenerated =
      generated?.certificate !== undefined &&
      answer.credentialsType === 'X509_CERTIFICATE' &&
      certificateBody(answer.credentialsValue) === certificateBody(generated.certificate);
    const result: ProvisionResult = {
      deviceName: prepared.deviceName,
      answer,
      cached: false,
      provisionedAt: new Date().toISOString(),
    };
    if (keepGenerated) result.generated = generated;
    if (recovered) result.recovered = true;
    // Read only now: jobs that joined while the request was out want it stored too.
    const stored = flight.persist;
    if (stored) await this.keep(result, prepared);
    return { result, stored };
  }

  private async keep(result: ProvisionResult, prepared: PreparedJob): Promise<void> {
    const store = this.requireStore();
    const entry: StoredEntry = {
      host: prepared.job.target.host,
      provisionDeviceKey: prepared.provisionDeviceKey,
      deviceName: result.deviceName,
      answer: result.answer,
      provisionedAt: result.provisionedAt,
    };
    if (result.generated) entry.generated = result.generated;
    try {
      await store.put(entry);
    } catch (err) {
      throw new CredentialsNotSavedError(result, store.filePath, err);
    }
  }

  private async generate(
    mode: CredentialsType,
    deviceName: string,
  ): Promise<{ credentials: DeviceCredentials; generated?: GeneratedMaterial }> {
    switch (mode) {
      case 'ACCESS_TOKEN':
        return { credentials: { type: 'ACCESS_TOKEN', token: generateAccessToken() } };
      case 'MQTT_BASIC':
        return { credentials: { type: 'MQTT_BASIC', ...generateMqttBasic(deviceName) } };
      case 'X509_CERTIFICATE': {
        let made;
        try {
          made = await generateCertificate(deviceName);
        } catch (err) {
          throw new ProvisionError(
            'PROTOCOL_ERROR',
            `Could not make a certificate for device ${JSON.stringify(deviceName)}: ` +
              `${reasonOf(err)}. Nothing was sent to the server.`,
            { cause: err },
          );
        }
        return {
          credentials: { type: 'X509_CERTIFICATE', certificate: made.certificate },
          generated: made,
        };
      }
    }
  }

  /** The first attempt and up to job.retries more after transient failures. */
  private async attempts(
    prepared: PreparedJob,
    request: ProvisionRequest,
    credentials: DeviceCredentials | undefined,
    signal: AbortSignal,
  ): Promise<{ answer: ProvisionAnswer; recovered: boolean }> {
    const { job } = prepared;
    const transport = this.transportFor(job.transport);
    let maybeDelivered = false;
    for (let attempt = 0; ; attempt++) {
      try {
        const answer = await transport(job.target, request, {
          signal,
          deadline: Date.now() + job.timeoutMs,
        });
        return { answer, recovered: false };
      } catch (raw) {
        if (signal.aborted) throw new ProvisionCancelledError(raw);
        const err = asProvisionError(raw, job.transport);
        if (err.transient && attempt < job.retries) {
          maybeDelivered ||= err.maybeDelivered;
          await this.sleep(backoffDelay(attempt, this.backoff, this.random), signal).catch(
            (cause: unknown) => {
              throw new ProvisionCancelledError(cause);
            },
          );
          if (signal.aborted) throw new ProvisionCancelledError();
          continue;
        }
        if (err.status === 'FAILURE' && maybeDelivered) {
          return {
            answer: await this.recoverLostAnswer(prepared, credentials, err, signal),
            recovered: true,
          };
        }
        throw err;
      }
    }
  }

  /**
   * An earlier attempt may have created the device and lost the answer; the server now says
   * FAILURE. Device-chosen token or MQTT basic credentials can be checked: if the device API takes
   * them, the device is ours and the answer is what the server would have sent.
   */
  private async recoverLostAnswer(
    prepared: PreparedJob,
    credentials: DeviceCredentials | undefined,
    failure: ProvisionError,
    signal: AbortSignal,
  ): Promise<ProvisionAnswer> {
    const { job } = prepared;
    const expected = credentials ? answerFor(credentials) : undefined;
    if (expected) {
      let accepted: boolean | undefined;
      try {
        accepted = await this.verifier()(job.transport, job.target, expected, {
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

  private transportFor(name: TransportName): Transport {
    let transport = this.transports[name];
    if (!transport) {
      transport = getTransport(name);
      this.transports[name] = transport;
    }
    return transport;
  }

  private verifier(): VerifyCredentials {
    return this.verifyOverride ?? verifyDeviceCredentials;
  }

  /** Flies `flight` in a free slot, or queues it for the next one in FIFO order. */
  private takeSlot(flight: Flight): Promise<FlightOutcome> {
    if (flight.signal.aborted) return Promise.reject(new ProvisionCancelledError());
    if (this.inFlightCount < this.concurrency && this.waiting.length === 0) {
      this.inFlightCount++;
      this.report();
      return this.fly(flight);
    }
    return new Promise<FlightOutcome>((resolve, reject) => {
      flight.queued = { resolve, reject };
      this.waiting.push(flight);
      this.report();
    });
  }

  /** A queued flight nobody waits for any more leaves the queue, cancelled. */
  private unqueue(flight: Flight): void {
    const queued = flight.queued;
    if (!queued || !this.waiting.remove(flight)) return;
    flight.queued = undefined;
    this.report();
    queued.reject(new ProvisionCancelledError());
  }

  private releaseSlot(): void {
    this.inFlightCount--;
    this.pump();
    this.report();
  }

  private pump(): void {
    while (this.inFlightCount < this.concurrency) {
      const flight = this.waiting.shift();
      if (!flight) break;
      this.inFlightCount++;
      const queued = flight.queued;
      flight.queued = undefined;
      queued?.resolve(this.fly(flight));
    }
    this.report();
  }

  private report(): void {
    const state = { inFlight: this.inFlightCount, queued: this.waiting.length };
    if (
      state.inFlight === this.lastReported.inFlight &&
      state.queued === this.lastReported.queued
    ) {
      return;
    }
    this.lastReported = state;
    this.onActivity?.({ ...state });
  }
}

function answerFromCache(entry: StoredEntry): ProvisionResult {
  const result: ProvisionResult = {
    deviceName: entry.deviceName,
    answer: structuredClone(entry.answer),
    cached: true,
    provisionedAt: entry.provisionedAt,
  };
  if (entry.generated) result.generated = structuredClone(entry.generated);
  return result;
}

/** `promise`, or a ProvisionCancelledError as soon as one of the signals aborts. */
function abortable<T>(promise: Promise<T>, signals: Array<AbortSignal | undefined>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      cleanup();
      reject(new ProvisionCancelledError());
    };
    const cleanup = (): void => {
      for (const signal of signals) signal?.removeEventListener('abort', onAbort);
    };
    for (const signal of signals) signal?.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        cleanup();
        resolve(value);
      },
      (err: unknown) => {
        cleanup();
        reject(err);
      },
    );
  });
}
