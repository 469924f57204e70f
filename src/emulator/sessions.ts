/**
 * What the server keeps per device between its sessions (ThingsBoard's device actor): the one open
 * session, server-side RPC waiting for delivery and reply, and shared-attribute pushes.
 */

import type { JsonObject } from './payload';
import type { Recorder } from './records';
import type { Tenant } from './state';
import type { EmulatedDevice, SessionInfo } from './types';

export type DeviceErrorCode =
  'UNKNOWN_DEVICE' | 'NOT_DELIVERED' | 'TIMEOUT' | 'BAD_REPLY' | 'STOPPED';

/** The HTTP status ThingsBoard's RPC API answers for each failure (STOPPED: the emulator's own). */
const STATUS: Record<DeviceErrorCode, number> = {
  UNKNOWN_DEVICE: 404,
  NOT_DELIVERED: 409,
  TIMEOUT: 408,
  BAD_REPLY: 406,
  STOPPED: 503,
};

/** A library or control-route call about a device that could not be done. */
export class EmulatorDeviceError extends Error {
  readonly status: number;
  constructor(
    readonly code: DeviceErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'EmulatorDeviceError';
    this.status = STATUS[code];
  }
}

export interface ServerRpc {
  id: number;
  method: string;
  params: unknown;
}

/** A device's session as the registry drives it: an MQTT connection, or a device behind a gateway. */
export interface DeviceSessionPort {
  readonly deviceName: string;
  info(): SessionInfo;
  readonly receivesAttributes: boolean;
  readonly receivesRpc: boolean;
  /** `{k:v}` for changed shared attributes, `{"deleted":[..]}` for deleted ones. */
  pushAttributes(update: JsonObject): void;
  pushRpc(rpc: ServerRpc): void;
  /** A newer session of the same device opened: this one ends. */
  takenOver(): void;
  /** Closed on request of the library API or the control route. */
  kick(): void;
}

interface PendingRpc {
  rpc: ServerRpc;
  /** Pushed to a session at least once: a missing reply is then a timeout, not "not delivered". */
  sent: boolean;
  timer: NodeJS.Timeout;
  resolve(reply: unknown): void;
  reject(error: Error): void;
}

export class SessionRegistry {
  private readonly sessions = new Map<string, DeviceSessionPort>();
  private readonly pending = new Map<string, Map<number, PendingRpc>>();
  /** Per device, from 0, as the server numbers RPC requests. */
  private readonly rpcSequence = new Map<string, number>();
  private stopped = false;

  constructor(
    private readonly tenant: Tenant,
    private readonly recorder: Recorder,
    private readonly note: (text: string) => void,
  ) {}

  /** Registers a session; the device's older session ends (one session per device). */
  open(session: DeviceSessionPort): void {
    const older = this.sessions.get(session.deviceName);
    this.sessions.set(session.deviceName, session);
    if (older !== undefined && older !== session) older.takenOver();
    if (session.receivesRpc) this.flushRpc(session);
  }

  close(session: DeviceSessionPort): void {
    if (this.sessions.get(session.deviceName) === session) this.sessions.delete(session.deviceName);
  }

  session(deviceName: string): DeviceSessionPort | undefined {
    return this.sessions.get(deviceName);
  }

  list(): SessionInfo[] {
    return [...this.sessions.values()].map((session) => session.info());
  }

  /** The session now takes RPC: requests waiting for the device go to it. */
  subscribedToRpc(session: DeviceSessionPort): void {
    if (this.sessions.get(session.deviceName) === session) this.flushRpc(session);
  }

  sendRpc(
    deviceName: string,
    method: string,
    params: unknown,
    timeoutMs: number,
  ): Promise<unknown> {
    if (this.stopped) {
      return Promise.reject(new EmulatorDeviceError('STOPPED', 'The emulator is stopped'));
    }
    if (!this.tenant.devices.has(deviceName)) {
      return Promise.reject(
        new EmulatorDeviceError('UNKNOWN_DEVICE', `No device named ${JSON.stringify(deviceName)}`),
      );
    }
    const id = this.rpcSequence.get(deviceName) ?? 0;
    this.rpcSequence.set(deviceName, id + 1);
    return new Promise((resolve, reject) => {
      const entry: PendingRpc = {
        rpc: { id, method, params },
        sent: false,
        timer: setTimeout(() => this.expire(deviceName, id), timeoutMs),
        resolve,
        reject,
      };
      let waiting = this.pending.get(deviceName);
      if (waiting === undefined) this.pending.set(deviceName, (waiting = new Map()));
      waiting.set(id, entry);
      const session = this.sessions.get(deviceName);
      if (session?.receivesRpc === true) this.push(session, entry);
      else this.note(`rpc ${method} (id ${id}) for ${quote(deviceName)} waits for a session`);
    });
  }

  /** A device's reply: recorded, and it settles the request it names if that still waits. */
  reply(device: EmulatedDevice, id: number, payload: string): void {
    const waiting = this.pending.get(device.name);
    const entry = waiting?.get(id);
    this.recorder.rpcReply(
      device,
      entry === undefined
        ? { id, payload, at: Date.now() }
        : { id, method: entry.rpc.method, payload, at: Date.now() },
    );
    if (entry === undefined) {
      this.note(`rpc reply from ${quote(device.name)} for id ${id}: no such request waits`);
      return;
    }
    waiting?.delete(id);
    clearTimeout(entry.timer);
    let reply: unknown;
    try {
      reply = JSON.parse(payload);
    } catch {
      this.note(`rpc ${entry.rpc.method} (id ${id}) from ${quote(device.name)}: reply not JSON`);
      entry.reject(
        new EmulatorDeviceError('BAD_REPLY', `The reply of ${quote(device.name)} is not JSON`),
      );
      return;
    }
    this.note(`rpc ${entry.rpc.method} (id ${id}) answered by ${quote(device.name)}`);
    entry.resolve(reply);
  }

  /** Pushes to the device's session if it takes attribute updates; returns how many got it. */
  pushAttributes(deviceName: string, update: JsonObject): number {
    const session = this.sessions.get(deviceName);
    if (session?.receivesAttributes !== true) return 0;
    session.pushAttributes(update);
    return 1;
  }

  /** Every waiting request fails with STOPPED; nothing of the registry outlives this. */
  stop(): void {
    this.stopped = true;
    for (const waiting of this.pending.values()) {
      for (const entry of waiting.values()) {
        clearTimeout(entry.timer);
        entry.reject(new EmulatorDeviceError('STOPPED', 'The emulator stopped'));
      }
    }
    this.pending.clear();
  }

  /** Requests still waiting (sent or not) go to a session that starts taking RPC, oldest first. */
  private flushRpc(session: DeviceSessionPort): void {
    for (const entry of this.pending.get(session.deviceName)?.values() ?? []) {
      this.push(session, entry);
    }
  }

  private push(session: DeviceSessionPort, entry: PendingRpc): void {
    entry.sent = true;
    session.pushRpc(entry.rpc);
    this.note(`rpc ${entry.rpc.method} (id ${entry.rpc.id}) sent to ${quote(session.deviceName)}`);
  }

  private expire(deviceName: string, id: number): void {
    const waiting = this.pending.get(deviceName);
    const entry = waiting?.get(id);
    if (entry === undefined) return;
    waiting?.delete(id);
    const what = entry.sent
      ? new EmulatorDeviceError('TIMEOUT', `${quote(deviceName)} did not reply in time`)
      : new EmulatorDeviceError(
          'NOT_DELIVERED',
          `${quote(deviceName)} had no session taking RPC before the request expired`,
        );
    this.note(`rpc ${entry.rpc.method} (id ${id}) for ${quote(deviceName)}: ${what.code}`);
    entry.reject(what);
  }
}

function quote(name: string): string {
  return JSON.stringify(name);
}

/** The RPC body a session pushes: `{"method":m,"params":p}`. */
export function rpcBody(rpc: ServerRpc): JsonObject {
  return { method: rpc.method, params: rpc.params };
}
