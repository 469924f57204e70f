/**
 * The provisioning desk every transport hands its requests to: reads the request, applies the test
 * faults, decides the outcome, records it, and says what the transport must do on the wire.
 */

import { FAILURE_BODY, NOT_FOUND_BODY, mask, printable, successBody } from './format';
import { DEFAULT_RECORD_LIMIT, appendBounded } from './records';
import { readProvisionRequest, type ParsedProvisionRequest } from './request';
import type { Tenant, ProvisionOutcome } from './state';
import type { FaultSpec, RecordedRequest } from './types';

export type TransportName = RecordedRequest['transport'];
/** Where a log line comes from: a transport, or the library API and control route. */
export type LogSource = TransportName | 'api';

/** What the transport must do with a provisioning request. */
export type Verdict =
  /** Send this status and body (HTTP 200, CoAP 2.01/4.00, MQTT PUBACK + response). */
  | { kind: 'answer'; status: 'SUCCESS' | 'NOT_FOUND' | 'FAILURE'; body: string }
  /** The parser refused the payload (HTTP 500 JSON, CoAP 4.00 empty, MQTT PUBACK 0x83 + close). */
  | { kind: 'malformed'; reason: string }
  /** HTTP 500 empty, CoAP 5.00, MQTT PUBACK 0x83 + close. */
  | { kind: 'internal-error' }
  /** Close the connection without a word (CoAP: drop the request silently). */
  | { kind: 'drop' }
  /** Accept and never answer; the transport keeps the exchange open until the peer or stop() ends it. */
  | { kind: 'hold' };

/** Faults take turns in this order; each applies to the next N requests once the earlier are spent. */
const COUNTED_FAULTS = [
  'neverAnswerFirst',
  'closeWithoutAnswerFirst',
  'internalErrorFirst',
  'loseAnswerFirst',
] as const;
type CountedFault = (typeof COUNTED_FAULTS)[number];

const FAULT_OUTCOME: Record<CountedFault, string> = {
  neverAnswerFirst: 'never answered (fault)',
  closeWithoutAnswerFirst: 'closed without answer (fault)',
  internalErrorFirst: 'internal error (fault)',
  loseAnswerFirst: 'answer lost (fault)',
};

export class ProvisioningDesk {
  readonly requests: RecordedRequest[] = [];
  inFlight = 0;
  maxConcurrent = 0;
  private faults: FaultSpec = {};
  private faultCounts = new Map<CountedFault, number>();
  private readonly delays = new Set<NodeJS.Timeout>();
  private readonly holds = new Set<() => void>();
  private stopped = false;

  constructor(
    private readonly tenant: Tenant,
    private readonly log?: (line: string) => void,
    /** The server's own processing timeout (ThingsBoard: 10 s). */
    private readonly timeoutMs = 10_000,
    /** `requests` keeps this many, dropping the oldest. */
    private readonly recordLimit = DEFAULT_RECORD_LIMIT,
  ) {}

  get noSuback(): boolean {
    return this.faults.noSuback === true;
  }

  setFaults(faults: FaultSpec): void {
    this.faults = { ...faults };
    this.faultCounts = new Map();
  }

  resetStats(): void {
    this.requests.length = 0;
    this.maxConcurrent = this.inFlight;
  }

  /**
   * Handles one provisioning request. `peerGone` aborts when the client goes away; it only matters
   * for held requests, which stay in flight until then (or until stop()).
   */
  async receive(
    transport: TransportName,
    payload: Buffer,
    peerGone: AbortSignal,
  ): Promise<Verdict> {
    const record: RecordedRequest = {
      transport,
      body: undefined,
      outcome: 'pending',
      at: Date.now(),
    };
    appendBounded(this.requests, record, this.recordLimit);
    const reading = readProvisionRequest(payload);
    record.body = reading.body;
    if (!reading.ok) {
      record.outcome = `malformed: ${reading.reason}`;
      this.write(transport, `provision request refused: ${reading.reason}`);
      return { kind: 'malformed', reason: reading.reason };
    }
    const request = reading.request;
    const subject = `provision device ${describeName(request.deviceName)} (key ${mask(request.provisionDeviceKey)})`;
    this.enter();
    const fault = this.takeFault();
    if (fault === 'neverAnswerFirst') {
      record.outcome = FAULT_OUTCOME[fault];
      this.write(transport, `${subject} -> no answer (fault neverAnswerFirst)`);
      this.holdUntil(peerGone);
      return { kind: 'hold' };
    }
    try {
      const delayMs = this.faults.answerDelayMs ?? 0;
      if (fault === undefined && delayMs >= this.timeoutMs) {
        return await this.timeOut(transport, record, subject, request, delayMs);
      }
      await this.sleep(delayMs);
      if (fault === 'closeWithoutAnswerFirst' || fault === 'internalErrorFirst') {
        record.outcome = FAULT_OUTCOME[fault];
        this.write(transport, `${subject} -> ${FAULT_OUTCOME[fault]}`);
        return fault === 'internalErrorFirst' ? { kind: 'internal-error' } : { kind: 'drop' };
      }
      const outcome = this.provision(request);
      if (outcome === undefined) {
        record.outcome = 'internal error';
        this.write(transport, `${subject} -> internal error`);
        return { kind: 'internal-error' };
      }
      const verdict = answerFor(outcome);
      const result = describeOutcome(outcome);
      if (fault === 'loseAnswerFirst') {
        record.outcome = `${outcome.status}, ${FAULT_OUTCOME[fault]}`;
        this.write(transport, `${subject} -> ${result}, answer lost (fault loseAnswerFirst)`);
        return { kind: 'drop' };
      }
      record.outcome = outcome.status;
      this.write(transport, `${subject} -> ${result}`);
      return verdict;
    } finally {
      this.leave();
    }
  }

  /** A provisioning request refused before parsing (HTTP's empty body): recorded and logged. */
  refuse(transport: TransportName, reason: string, result: string): void {
    appendBounded(
      this.requests,
      { transport, body: undefined, outcome: `malformed: ${reason}`, at: Date.now() },
      this.recordLimit,
    );
    this.write(transport, `provision request refused: ${reason} -> ${result}`);
  }

  /** Releases held requests and pending delays; nothing of the desk outlives this. */
  stop(): void {
    this.stopped = true;
    for (const timer of this.delays) clearTimeout(timer);
    this.delays.clear();
    for (const release of [...this.holds]) release();
  }

  /** A line about something other than provisioning (device API), same format. */
  note(source: LogSource, text: string): void {
    this.write(source, text);
  }

  /** Every line passes here: what a client sent can never control the terminal. */
  private write(source: LogSource, text: string): void {
    this.log?.(printable(`${source.padEnd(5)} ${text}`));
  }

  private takeFault(): CountedFault | undefined {
    for (const fault of COUNTED_FAULTS) {
      const limit = this.faults[fault] ?? 0;
      const used = this.faultCounts.get(fault) ?? 0;
      if (used < limit) {
        this.faultCounts.set(fault, used + 1);
        return fault;
      }
    }
    return undefined;
  }

  /**
   * The server gives up waiting after its timeout and answers an internal error, but the request
   * goes on: the device may be created afterwards, unknown to the client.
   */
  private async timeOut(
    transport: TransportName,
    record: RecordedRequest,
    subject: string,
    request: ParsedProvisionRequest,
    delayMs: number,
  ): Promise<Verdict> {
    await this.sleep(this.timeoutMs);
    record.outcome = 'internal error (server timeout)';
    this.write(
      transport,
      `${subject} -> internal error (server timeout after ${this.timeoutMs} ms)`,
    );
    void this.sleep(delayMs - this.timeoutMs).then(() => {
      const outcome = this.provision(request);
      if (outcome === undefined) return;
      record.outcome = `internal error (server timeout), then ${outcome.status}`;
      this.write(transport, `${subject} -> ${describeOutcome(outcome)} after the server timeout`);
    });
    return { kind: 'internal-error' };
  }

  private provision(request: ParsedProvisionRequest): ProvisionOutcome | undefined {
    try {
      return this.tenant.provision(request);
    } catch {
      return undefined;
    }
  }

  private sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    // A stopped desk never resolves: the transports are closed, so nobody waits for it.
    return new Promise((resolve) => {
      if (this.stopped) return;
      const timer = setTimeout(() => {
        this.delays.delete(timer);
        resolve();
      }, ms);
      this.delays.add(timer);
    });
  }

  private enter(): void {
    this.inFlight++;
    if (this.inFlight > this.maxConcurrent) this.maxConcurrent = this.inFlight;
  }

  private leave(): void {
    this.inFlight--;
  }

  private holdUntil(peerGone: AbortSignal): void {
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.holds.delete(release);
      peerGone.removeEventListener('abort', release);
      this.leave();
    };
    this.holds.add(release);
    if (peerGone.aborted || this.stopped) release();
    else peerGone.addEventListener('abort', release);
  }
}

function answerFor(outcome: ProvisionOutcome): Verdict {
  switch (outcome.status) {
    case 'SUCCESS':
      return { kind: 'answer', status: 'SUCCESS', body: successBody(outcome.credentials) };
    case 'NOT_FOUND':
      return { kind: 'answer', status: 'NOT_FOUND', body: NOT_FOUND_BODY };
    case 'FAILURE':
      return { kind: 'answer', status: 'FAILURE', body: FAILURE_BODY };
  }
}

function describeName(name: string): string {
  return name === '' ? '(no name)' : JSON.stringify(name);
}

function describeOutcome(outcome: ProvisionOutcome): string {
  if (outcome.status !== 'SUCCESS') return `${outcome.status} (${outcome.reason})`;
  const named = outcome.generatedName
    ? `, name generated: ${JSON.stringify(outcome.device.name)}`
    : '';
  return `SUCCESS ${outcome.credentials.credentialsType}${named}`;
}
