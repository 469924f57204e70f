/**
 * Slots: at most `concurrency` flights talk to servers at once; the others wait in FIFO order. A
 * waiting flight is only an entry in the queue: its exchange's code starts when a slot is free.
 */
import { Fifo } from './fifo';

export interface Activity {
  inFlight: number;
  queued: number;
}

export class Slots<T> {
  private concurrency: number;
  private running = 0;
  private readonly waiting = new Fifo<T>();
  private lastReported: Activity = { inFlight: 0, queued: 0 };

  /** `start` runs an item in its slot, which stays taken until release(). */
  constructor(
    concurrency: number,
    private readonly start: (item: T) => void,
    private readonly onActivity?: (activity: Activity) => void,
  ) {
    this.concurrency = checkConcurrency(concurrency);
  }

  get inFlight(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  setConcurrency(n: number): void {
    this.concurrency = checkConcurrency(n);
    this.pump();
  }

  /** Starts `item` in a free slot, or queues it behind those already waiting. */
  enter(item: T): void {
    if (this.running < this.concurrency && this.waiting.length === 0) {
      this.running++;
      this.report();
      this.start(item);
      return;
    }
    this.waiting.push(item);
    this.report();
  }

  /** Takes a waiting item out of the queue; false when it is not queued. */
  leave(item: T): boolean {
    if (!this.waiting.remove(item)) return false;
    this.report();
    return true;
  }

  /** A started item is done with its slot: the next one waiting takes it. */
  release(): void {
    this.running--;
    this.pump();
  }

  /** Empties the queue, returning what waited, oldest first. */
  takeAll(): T[] {
    const all = this.waiting.takeAll();
    this.report();
    return all;
  }

  private pump(): void {
    while (this.running < this.concurrency) {
      const item = this.waiting.shift();
      if (item === undefined) break;
      this.running++;
      this.start(item);
    }
    this.report();
  }

  private report(): void {
    const state = { inFlight: this.running, queued: this.waiting.length };
    const last = this.lastReported;
    if (state.inFlight === last.inFlight && state.queued === last.queued) return;
    this.lastReported = state;
    this.onActivity?.({ ...state });
  }
}

function checkConcurrency(n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new RangeError(`concurrency must be a whole number of at least 1, not ${n}`);
  }
  return n;
}
