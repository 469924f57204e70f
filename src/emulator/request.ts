/**
 * Reads a provisioning request the way ThingsBoard's JsonConverter does: a JSON object whose known
 * fields are read as strings, missing optional fields becoming "".
 */

export const REQUEST_CREDENTIALS_TYPES = [
  'ACCESS_TOKEN',
  'MQTT_BASIC',
  'X509_CERTIFICATE',
  // The server's enum knows it, so the parser accepts it; device-chosen ones then fail to save.
  'LWM2M_CREDENTIALS',
] as const;
export type RequestCredentialsType = (typeof REQUEST_CREDENTIALS_TYPES)[number];

/** A request the parser accepted. Absent string fields are "" (as in the server's messages). */
export interface ParsedProvisionRequest {
  provisionDeviceKey: string;
  provisionDeviceSecret: string;
  /** Not trimmed yet: trimming is part of the provisioning rules. */
  deviceName: string;
  credentialsType: RequestCredentialsType;
  token: string;
  clientId: string;
  username: string;
  password: string;
  hash: string;
  gateway: boolean;
}

export type RequestReading =
  | { ok: true; body: Record<string, unknown>; request: ParsedProvisionRequest }
  /** body: the parsed JSON, or undefined when the payload was not JSON. */
  | { ok: false; body: unknown; reason: string };

class MalformedRequest extends Error {}

export function readProvisionRequest(payload: Buffer | string): RequestReading {
  const text = typeof payload === 'string' ? payload : payload.toString('utf8');
  if (text.trim() === '') return { ok: false, body: undefined, reason: 'empty payload' };
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return { ok: false, body: undefined, reason: 'payload is not JSON' };
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return { ok: false, body, reason: 'payload is not a JSON object' };
  }
  const object = body as Record<string, unknown>;
  try {
    const nullPath = findNull(object, '');
    if (nullPath !== undefined) throw new MalformedRequest(`field ${nullPath} is null`);
    const hasType = Object.prototype.hasOwnProperty.call(object, 'credentialsType');
    const credentialsType = hasType ? field(object, 'credentialsType', true) : 'ACCESS_TOKEN';
    if (!(REQUEST_CREDENTIALS_TYPES as readonly string[]).includes(credentialsType)) {
      throw new MalformedRequest('unknown credentialsType');
    }
    const request: ParsedProvisionRequest = {
      provisionDeviceKey: field(object, 'provisionDeviceKey', true),
      provisionDeviceSecret: field(object, 'provisionDeviceSecret', true),
      deviceName: field(object, 'deviceName', false),
      credentialsType: credentialsType as RequestCredentialsType,
      token: field(object, 'token', false),
      clientId: field(object, 'clientId', false),
      username: field(object, 'username', false),
      password: field(object, 'password', false),
      hash: field(object, 'hash', false),
      gateway: readGateway(object.gateway),
    };
    return { ok: true, body: object, request };
  } catch (error) {
    if (error instanceof MalformedRequest) return { ok: false, body, reason: error.message };
    throw error;
  }
}

/** Gson's getAsString: strings as they are, numbers and booleans as their text, the rest throws. */
function field(object: Record<string, unknown>, name: string, required: boolean): string {
  if (!Object.prototype.hasOwnProperty.call(object, name)) {
    if (required) throw new MalformedRequest(`field ${name} is missing`);
    return '';
  }
  const value = object[name];
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new MalformedRequest(`field ${name} is not a string`);
}

function readGateway(value: unknown): boolean {
  if (typeof value === 'boolean') return value;
  return typeof value === 'string' && value.toLowerCase() === 'true';
}

/** The server throws on null in the fields it reads; the emulator refuses null anywhere. */
function findNull(value: unknown, path: string): string | undefined {
  if (value === null) return path || '(root)';
  if (typeof value !== 'object') return undefined;
  for (const [key, inner] of Object.entries(value as Record<string, unknown>)) {
    const found = findNull(inner, path ? `${path}.${key}` : key);
    if (found !== undefined) return found;
  }
  return undefined;
}
