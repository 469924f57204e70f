/**
 * One session's messages in order: those waiting to be written, then those written and not yet
 * acknowledged. Every message settles exactly once: acknowledged, refused, or expired at its
 * deadline, which one timer per queue watches.
 *
 *   waiting: [ taken… | m5 m6 m7 … ]  ← add()        written: [ m2 m3 m4 ]  (write order)
 *                       ↑ head: next()  →  markWritten()  →  acknowledge() / expiry
 *   a lost connection puts written back in front of waiting, in order: requeueWritten()
 */

import type { DeviceError } from '../protocol/device-errors';

/** One PUBLISH's text, written first on this connection: a gateway's announcement of a device. */
export interface Announcement {
  topic: string;
  text: string;
  /** The server answered it with a PUBACK (any reason code). */
  acknowledged?(): void;
}

/**
 * A publish whose text is made when it is written, so that messages can join it until then (a
 * gateway's shared publish). compose() runs at every write, the first one fixing the text.
 */
export interface ComposedPayload {
  /** The messages it carries, for the count of those never sent. */
  readonly count: number;
  compose(): { text: string; before: readonly Announcement[] };
}

export interface Outgoing {
  topic: string;
  body: string | ComposedPayload;
  qos: 0 | 1;
  /** Absolute time (Date.now() scale) by which the server must have accepted it. */
  deadline: number;
  timeoutMs: number;
  resolve(): void;
  reject(err: DeviceError): void;
  settled: boolean;
  /** The connection it was last written on, and its packet id there (QoS 1). */
  connection: object | undefined;
  messageId: number;
}

export class OutgoingQueue {
  private waiting: Outgoing[] = [];
  private head = 0;
  private liveWaiting = 0;
  private written: Outgoing[] = [];
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private emptied: Array<() => void> = [];

  /** `expire` builds the error of a message whose deadline passed, written or not. */
  constructor(private readonly expire: (entry: Outgoing, written: boolean) => DeviceError) {}

  /** Messages not yet written. */
  get waitingCount(): number {
    return this.liveWaiting;
  }

  /** Messages written and not yet acknowledged. */
  get writtenCount(): number {
    return this.written.length;
  }

  get empty(): boolean {
    return this.liveWaiting === 0 && this.written.length === 0;
  }

  add(entry: Outgoing): void {
    this.waiting.push(entry);
    this.liveWaiting++;
    this.watch(entry.deadline);
  }

  /** The oldest message still waiting, taken out of the waiting list. */
  next(): Outgoing | undefined {
    while (this.head < this.waiting.length) {
      const entry = this.waiting[this.head++];
      if (entry.settled) continue;
      this.liveWaiting--;
      this.compact();
      return entry;
    }
    this.compact();
    return undefined;
  }

  markWritten(entry: Outgoing, connection: object, messageId: number): void {
    entry.connection = connection;
    entry.messageId = messageId;
    this.written.push(entry);
  }

  /** Settles a written message: resolved, or rejected with `err`. False if already settled. */
  acknowledge(entry: Outgoing, err?: DeviceError): boolean {
    if (entry.settled) return false;
    const index = this.written.indexOf(entry);
    if (index !== -1) this.written.splice(index, 1);
    this.settle(entry, err);
    return true;
  }

  /** After a lost connection: what was written goes out again first, in its order. */
  requeueWritten(): void {
    if (this.written.length === 0) return;
    const again = this.written.filter((entry) => !entry.settled);
    for (const entry of again) {
      entry.connection = undefined;
      entry.messageId = 0;
    }
    this.written = [];
    this.waiting = [...again, ...this.waiting.slice(this.head)];
    this.head = 0;
    this.liveWaiting += again.length;
  }

  /** Rejects every waiting message with `err(entry)`; returns how many messages they carried. */
  rejectWaiting(err: (entry: Outgoing) => DeviceError): number {
    let count = 0;
    for (let entry = this.next(); entry !== undefined; entry = this.next()) {
      count += typeof entry.body === 'string' ? 1 : entry.body.count;
      this.settle(entry, err(entry));
    }
    return count;
  }

  /** Rejects every message, written or waiting. */
  rejectAll(err: (entry: Outgoing) => DeviceError): void {
    for (const entry of this.written.splice(0)) this.settle(entry, err(entry));
    this.rejectWaiting(err);
  }

  /** Resolves once no message is left, acknowledged, refused or expired. */
  whenEmpty(): Promise<void> {
    if (this.empty) return Promise.resolve();
    return new Promise<void>((resolve) => this.emptied.push(resolve));
  }

  /** Stops the deadline timer; the queue must be empty or abandoned. */
  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private settle(entry: Outgoing, err: DeviceError | undefined): void {
    entry.settled = true;
    if (err === undefined) entry.resolve();
    else entry.reject(err);
    if (this.empty) {
      this.dispose();
      for (const resolve of this.emptied.splice(0)) resolve();
    }
  }

  private compact(): void {
    if (this.head === this.waiting.length) {
      this.waiting = [];
      this.head = 0;
    } else if (this.head >= 256 && this.head * 2 >= this.waiting.length) {
      this.waiting = this.waiting.slice(this.head);
      this.head = 0;
    }
  }

  private watch(deadline: number): void {
    if (deadline >= this.timerAt) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = deadline;
    this.timer = setTimeout(() => this.onDeadline(), Math.max(1, deadline - Date.now()));
  }

  private onDeadline(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = Date.now();
    let next = Infinity;
    for (const entry of [...this.written]) {
      if (entry.settled) continue;
      if (entry.deadline <= now) this.acknowledge(entry, this.expire(entry, true));
      else next = Math.min(next, entry.deadline);
    }
    for (let i = this.head; i < this.waiting.length; i++) {
      const entry = this.waiting[i];
      if (entry.settled) continue;
      if (entry.deadline <= now) {
        this.liveWaiting--;
        this.settle(entry, this.expire(entry, false));
      } else next = Math.min(next, entry.deadline);
    }
    // An expiry's rejection may have failed the rest (a gateway the server ignores).
    if (next !== Infinity && !this.empty) this.watch(next);
  }
}
