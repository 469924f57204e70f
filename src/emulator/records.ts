/** What devices sent, kept in bounded lists so a long-running emulator does not grow forever. */

import { parseJson, readAttributes, readTelemetry, type Reading } from './payload';
import type { EmulatedDevice, RecordedRpcReply, TelemetryPoint } from './types';

export const DEFAULT_RECORD_LIMIT = 10_000;

/** Appends, then drops the oldest entries beyond `limit`. */
export function appendBounded<T>(list: T[], item: T, limit: number): void {
  list.push(item);
  // shift(), not splice(): V8 trims the front of the array in place instead of moving it all.
  while (list.length > limit) list.shift();
}

export class Recorder {
  constructor(readonly limit = DEFAULT_RECORD_LIMIT) {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError('recordLimit must be a whole number of at least 1');
    }
  }

  /** A device's own telemetry or attributes message: recorded if the server takes it, else why not. */
  accept(device: EmulatedDevice, kind: 'telemetry' | 'attributes', payload: Buffer): Reading<void> {
    const json = parseJson(payload);
    if (!json.ok) return json;
    if (kind === 'telemetry') {
      const points = readTelemetry(json.value, Date.now());
      if (!points.ok) return points;
      this.telemetry(device, json.value, points.value);
    } else {
      const values = readAttributes(json.value);
      if (!values.ok) return values;
      this.attributes(device, values.value);
    }
    return { ok: true, value: undefined };
  }

  telemetry(device: EmulatedDevice, payload: unknown, points: TelemetryPoint[]): void {
    appendBounded(device.telemetry, payload, this.limit);
    for (const point of points) appendBounded(device.timeseries, point, this.limit);
  }

  /** Client attributes: merged, latest wins; null means nothing to the server. */
  attributes(device: EmulatedDevice, values: Record<string, unknown>): void {
    for (const [key, value] of Object.entries(values)) {
      if (value !== null) device.attributes[key] = value;
    }
  }

  rpcReply(device: EmulatedDevice, reply: RecordedRpcReply): void {
    appendBounded(device.rpcReplies, reply, this.limit);
  }

  gatewayMessage(gateway: EmulatedDevice, topic: string, payload: unknown): void {
    appendBounded(gateway.gatewayMessages, { topic, payload }, this.limit);
  }
}
