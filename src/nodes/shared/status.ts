/** A node status as Node-RED takes it. */
export interface NodeStatus {
  fill?: 'red' | 'green' | 'yellow' | 'blue' | 'grey';
  shape?: 'ring' | 'dot';
  text?: string;
}

/** A status, or how to make it: the text is only translated when the status is actually shown. */
export type StatusSource = NodeStatus | (() => NodeStatus);

export interface Activity {
  inFlight: number;
  queued: number;
}

/** Coalesces status updates to one per `intervalMs`, ending on the latest: bursts stay cheap. */
export class StatusReporter {
  private activity: Activity = { inFlight: 0, queued: 0 };
  private lastResult: StatusSource = {};
  private shown?: NodeStatus;
  private timer?: NodeJS.Timeout;
  private lastShownAt = 0;
  private closed = false;

  constructor(
    private readonly show: (status: NodeStatus) => void,
    private readonly busyStatus: (activity: Activity) => NodeStatus,
    private readonly intervalMs = 100,
  ) {}

  setActivity(activity: Activity): void {
    this.activity = activity;
    this.schedule();
  }

  setResult(status: StatusSource): void {
    this.lastResult = status;
    this.schedule();
  }

  /** Shows nothing more: a closed node's late status would cover its successor's in the editor. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private current(): NodeStatus {
    const busy = this.activity.inFlight + this.activity.queued > 0;
    if (busy) return this.busyStatus(this.activity);
    return typeof this.lastResult === 'function' ? this.lastResult() : this.lastResult;
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    const wait = this.lastShownAt + this.intervalMs - Date.now();
    if (wait <= 0) {
      this.flush();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, wait);
  }

  private flush(): void {
    const next = this.current();
    this.lastShownAt = Date.now();
    const shown = this.shown;
    if (
      shown &&
      shown.fill === next.fill &&
      shown.shape === next.shape &&
      shown.text === next.text
    ) {
      return;
    }
    this.shown = next;
    this.show(next);
  }
}
