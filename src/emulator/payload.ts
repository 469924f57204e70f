/**
 * Device API payloads read the way ThingsBoard's JsonConverter reads them (telemetry in its three
 * shapes, attributes, value conversion), with strict JSON instead of Gson's lenient parser.
 */

import type { TelemetryPoint } from './types';

export type Reading<T> = { ok: true; value: T } | { ok: false; reason: string };

export type JsonObject = Record<string, unknown>;

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The payload as JSON; an empty payload is an error, as on the server. */
export function parseJson(payload: Buffer | string): Reading<unknown> {
  const text = typeof payload === 'string' ? payload : payload.toString('utf8');
  if (text.trim() === '') return { ok: false, reason: 'empty payload' };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false, reason: 'payload is not JSON' };
  }
}

/**
 * `{k:v}` (server time), `{"ts":ms,"values":{..}}` (both keys; other keys ignored), or an array of
 * those. Anything else is a parse error.
 */
export function readTelemetry(json: unknown, now: number): Reading<TelemetryPoint[]> {
  const entries = Array.isArray(json) ? json : [json];
  if (!Array.isArray(json) && !isJsonObject(json)) {
    return { ok: false, reason: 'telemetry must be a JSON object or an array of objects' };
  }
  const points: TelemetryPoint[] = [];
  for (const entry of entries) {
    if (!isJsonObject(entry)) {
      return { ok: false, reason: 'a telemetry array may hold JSON objects only' };
    }
    const point = readTelemetryEntry(entry, now);
    if (!point.ok) return point;
    points.push(point.value);
  }
  return { ok: true, value: points };
}

function readTelemetryEntry(entry: JsonObject, now: number): Reading<TelemetryPoint> {
  if (!('ts' in entry && 'values' in entry)) {
    return { ok: true, value: { ts: now, values: convertValues(entry) } };
  }
  const ts = readTimestamp(entry.ts);
  if (ts === undefined) return { ok: false, reason: '"ts" is not a number' };
  if (!isJsonObject(entry.values)) return { ok: false, reason: '"values" is not a JSON object' };
  return { ok: true, value: { ts, values: convertValues(entry.values) } };
}

/** Gson's getAsLong: a number (fraction cut off) or a string of digits; never checked for range. */
function readTimestamp(value: unknown): number | undefined {
  if (typeof value === 'number') return Math.trunc(value);
  if (typeof value === 'string' && /^[-+]?\d+$/.test(value)) return Number(value);
  return undefined;
}

/** Attributes: a JSON object only. */
export function readAttributes(json: unknown): Reading<JsonObject> {
  if (!isJsonObject(json)) return { ok: false, reason: 'attributes must be a JSON object' };
  return { ok: true, value: json };
}

/** Every value converted as the server stores it; null values are dropped. */
export function convertValues(values: JsonObject): JsonObject {
  const converted: JsonObject = {};
  for (const [key, value] of Object.entries(values)) {
    if (value === null) continue;
    converted[key] = convertValue(value);
  }
  return converted;
}

/** Strings that parse as decimal numbers become numbers (JSON_TYPE_CAST_ENABLED); "1e5" does not. */
export function convertValue(value: unknown): unknown {
  if (typeof value === 'string' && /^-?(\d+(\.\d*)?|\.\d+)$/.test(value)) return Number(value);
  return value;
}

/** A comma-separated key list as the server splits it: trimmed, empty names dropped. */
export function keyList(text: string): string[] {
  return text
    .split(',')
    .map((key) => key.trim())
    .filter((key) => key !== '');
}

/** Which attributes a request asks for, per scope: absent = that scope not asked, [] = all of it. */
export interface AttributeQuery {
  client?: string[];
  shared?: string[];
}

/** The server's answer `{"client":{..},"shared":{..}}`, scopes with nothing found left out. */
export function answerAttributes(
  stored: { attributes: JsonObject; sharedAttributes: JsonObject },
  query: AttributeQuery,
): { client?: JsonObject; shared?: JsonObject } {
  const answer: { client?: JsonObject; shared?: JsonObject } = {};
  const client = pick(stored.attributes, query.client);
  if (client !== undefined) answer.client = client;
  const shared = pick(stored.sharedAttributes, query.shared);
  if (shared !== undefined) answer.shared = shared;
  return answer;
}

function pick(values: JsonObject, keys: string[] | undefined): JsonObject | undefined {
  if (keys === undefined) return undefined;
  const found: JsonObject = {};
  for (const key of keys.length === 0 ? Object.keys(values) : keys) {
    if (Object.prototype.hasOwnProperty.call(values, key)) found[key] = values[key];
  }
  return Object.keys(found).length > 0 ? found : undefined;
}
