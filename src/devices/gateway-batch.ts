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

/** A device named by a publish: the type it is announced with, and its name as JSON text. */
export interface NamedDevice {
  readonly type: string;
  readonly json: string;
}

export function namedDevice(name: string, type: string): NamedDevice {
  return { type, json: JSON.stringify(name) };
}

interface DevicePart {
  device: NamedDevice;
  /** Its data: entries for telemetry, the object for attributes. */
  pieces: string[];
}

/**
 * The devices a publish names, announced right before it where needed. `allKnownAt`: the
 * announcer's epoch when every one of them was added already known (then none may need it).
 */
export type Announcer = (
  names: Iterable<string>,
  deviceOf: (name: string) => NamedDevice,
  allKnownAt: number | undefined,
) => Announcement[];

/** Bytes of `"name":[part]` (telemetry) or `"name":part` (attributes) as one more device's entry. */
export function devicePartBytes(kind: DeviceDataKind, nameJson: string, partBytes: number): number {
  return Buffer.byteLength(nameJson, 'utf8') + 1 + partBytes + (kind === 'telemetry' ? 2 : 0);
}

export class GatewayBatch implements ComposedPayload {
  /** Written (its text is fixed) or settled: nothing joins any more. */
  closed = false;
  private readonly parts = new Map<string, DevicePart>();
  private readonly resolvers: Array<() => void> = [];
  private readonly rejecters: Array<(err: DeviceError) => void> = [];
  /** The payload's size in bytes so far: its braces, the devices' entries and their commas. */
  private bytes = 2;
  private text: string | undefined;
  /** Every device was announced before it joined (known to the gateway). */
  private allKnown = true;
  private readonly deviceOf = (name: string): NamedDevice =>
    (this.parts.get(name) as DevicePart).device;

  constructor(
    readonly kind: DeviceDataKind,
    /** The session's deadline for this publish: that of the message that opened it. */
    readonly deadline: number,
    private readonly maxPayloadBytes: number,
    private readonly announce: Announcer,
    /** The announcer's epoch when the publish was opened. */
    private readonly epoch: number,
  ) {}

  get count(): number {
    return this.resolvers.length;
  }

  /**
   * Adds one device's message, checked and turned into text already; false when it cannot join
   * (written, full, or attributes of a device already in it), and the caller opens another.
   */
  add(
    name: string,
    device: NamedDevice,
    part: string,
    partBytes: number,
    resolve: () => void,
    reject: (err: DeviceError) => void,
    known: boolean,
  ): boolean {
    if (this.closed) return false;
    const joined = this.parts.get(name);
    if (joined !== undefined && this.kind === 'attributes') return false;
    const growth =
      joined !== undefined
        ? 1 + partBytes
        : (this.parts.size > 0 ? 1 : 0) + devicePartBytes(this.kind, device.json, partBytes);
    if (this.bytes + growth > this.maxPayloadBytes) return false;
    if (joined === undefined) this.parts.set(name, { device, pieces: [part] });
    else joined.pieces.push(part);
    this.bytes += growth;
    if (!known) this.allKnown = false;
    this.resolvers.push(resolve);
    this.rejecters.push(reject);
    return true;
  }

  /** The text, fixed at the first write; the announcements of devices new to this connection. */
  compose(): { text: string; before: readonly Announcement[] } {
    this.closed = true;
    this.text ??= this.build();
    const allKnownAt = this.allKnown ? this.epoch : undefined;
    return { text: this.text, before: this.announce(this.parts.keys(), this.deviceOf, allKnownAt) };
  }

  /** The session's verdict on the publish, for every message it carries. */
  settle(err?: DeviceError): void {
    this.closed = true;
    const resolvers = this.resolvers.splice(0);
    const rejecters = this.rejecters.splice(0);
    if (err === undefined) for (const resolve of resolvers) resolve();
    else rejecters.forEach((reject, index) => reject(index === 0 ? err : copyError(err)));
  }

  private build(): string {
    const open = this.kind === 'telemetry' ? '[' : '';
    const close = this.kind === 'telemetry' ? ']' : '';
    let text = '{';
    for (const part of this.parts.values()) {
      if (text.length > 1) text += ',';
      text += `${part.device.json}:${open}${part.pieces.join(',')}${close}`;
      // Only the devices are needed again, for announcements after a reconnect.
      part.pieces = [];
    }
    return `${text}}`;
  }
}
