/**
 * One shared publish of a gateway on v1/gateway/telemetry or v1/gateway/attributes: messages for
 * many devices join it while it waits in the session's queue, until it is written or would grow
 * beyond the packet limit. Its PUBACK settles every message it carries.
 *
 *   telemetry   {"pump-1":[{..},{..}],"pump-2":[{"ts":..,"values":{..}}]}
 *   attributes  {"pump-1":{..},"pump-2":{..}}      (one message per device per publish)
 */

import type { DeviceError } from '../protocol/device-errors';
import type { DeviceDataKind } from '../protocol/device-data';
import type { Announcement, ComposedPayload } from './outgoing-queue';
import { copyError } from './session-errors';

export interface MessageWaiter {
  resolve(): void;
  reject(err: DeviceError): void;
}

/** A device named by a publish, and the type it is announced with. */
export interface NamedDevice {
  readonly type: string;
}

interface DevicePart extends NamedDevice {
  /** The device's name as JSON text, and its data: entries for telemetry, the object for attributes. */
  json: string;
  pieces: string[];
}

/** The devices a publish names, by name, announced right before it where needed. */
export type Announcer = (devices: ReadonlyMap<string, NamedDevice>) => Announcement[];

/** Bytes of `"name":[part]` (telemetry) or `"name":part` (attributes) as one more device's entry. */
export function devicePartBytes(kind: DeviceDataKind, nameJson: string, partBytes: number): number {
  return Buffer.byteLength(nameJson, 'utf8') + 1 + partBytes + (kind === 'telemetry' ? 2 : 0);
}

export class GatewayBatch implements ComposedPayload {
  /** Written (its text is fixed) or settled: nothing joins any more. */
  closed = false;
  private readonly devices = new Map<string, DevicePart>();
  private readonly waiters: MessageWaiter[] = [];
  /** The payload's size in bytes so far: its braces, the devices' entries and their commas. */
  private bytes = 2;
  private text: string | undefined;

  constructor(
    readonly kind: DeviceDataKind,
    /** The session's deadline for this publish: that of the message that opened it. */
    readonly deadline: number,
    private readonly maxPayloadBytes: number,
    private readonly announce: Announcer,
  ) {}

  get count(): number {
    return this.waiters.length;
  }

  /**
   * Adds one device's message, checked and turned into text already; false when it cannot join
   * (written, full, or attributes of a device already in it), and the caller opens another.
   */
  add(name: string, type: string, part: string, partBytes: number, waiter: MessageWaiter): boolean {
    if (this.closed) return false;
    const device = this.devices.get(name);
    if (device !== undefined && this.kind === 'attributes') return false;
    const json = device === undefined ? JSON.stringify(name) : '';
    const growth =
      device !== undefined
        ? 1 + partBytes
        : (this.devices.size > 0 ? 1 : 0) + devicePartBytes(this.kind, json, partBytes);
    if (this.bytes + growth > this.maxPayloadBytes) return false;
    if (device === undefined) this.devices.set(name, { type, json, pieces: [part] });
    else device.pieces.push(part);
    this.bytes += growth;
    this.waiters.push(waiter);
    return true;
  }

  /** The text, fixed at the first write; the announcements of devices new to this connection. */
  compose(): { text: string; before: readonly Announcement[] } {
    this.closed = true;
    this.text ??= this.build();
    return { text: this.text, before: this.announce(this.devices) };
  }

  /** The session's verdict on the publish, for every message it carries. */
  settle(err?: DeviceError): void {
    this.closed = true;
    const waiters = this.waiters.splice(0);
    for (const [index, waiter] of waiters.entries()) {
      if (err === undefined) waiter.resolve();
      else waiter.reject(index === 0 ? err : copyError(err));
    }
  }

  private build(): string {
    const open = this.kind === 'telemetry' ? '[' : '';
    const close = this.kind === 'telemetry' ? ']' : '';
    let text = '{';
    for (const device of this.devices.values()) {
      if (text.length > 1) text += ',';
      text += `${device.json}:${open}${device.pieces.join(',')}${close}`;
      // Only the names and types are needed again, for announcements after a reconnect.
      device.pieces = [];
    }
    return `${text}}`;
  }
}
