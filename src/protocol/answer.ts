/** Reads what ThingsBoard answers on each transport and turns it into a success or a ProvisionError. */

import { ProvisionError } from './errors';
import type { MqttBasicCredentialsValue, ProvisionAnswer, ProvisionRequest } from './types';
import { describeType, describeWord, isPlainObject, ownField, safeServerText } from './text';

export { maskSecret } from './text';

/** Answers are a few hundred bytes; anything this large is not a provisioning answer. */
export const MAX_ANSWER_BYTES = 1024 * 1024;

const NOT_UNDERSTOOD = "The server's answer could not be understood";

/** The values of a request that must never be repeated from a server's text. */
function secretsOf(sent: ProvisionRequest | undefined): string[] {
  if (!sent) return [];
  const { provisionDeviceKey, provisionDeviceSecret, token, clientId, username, password } = sent;
  return [provisionDeviceKey, provisionDeviceSecret, token, clientId, username, password].filter(
    (value): value is string => typeof value === 'string',
  );
}

function protocolError(
  message: string,
  options: { transient?: boolean; maybeDelivered?: boolean; serverMessage?: string } = {},
): ProvisionError {
  return new ProvisionError('PROTOCOL_ERROR', message, options);
}

/** A short description of a body that never quotes it: it may hold credentials. */
export function describeBody(body: Buffer | string): string {
  const bytes = typeof body === 'string' ? Buffer.byteLength(body, 'utf8') : body.length;
  if (bytes === 0) return 'an empty body';
  const text = typeof body === 'string' ? body : body.subarray(0, 512).toString('utf8');
  if (text.trimStart().startsWith('<')) {
    return `a ${bytes}-byte HTML or XML page`;
  }
  // U+FFFD marks bytes that were not UTF-8; C0 controls other than whitespace mark binary data.
  // eslint-disable-next-line no-control-regex -- finding control characters is the point
  if (/[\u0000-\u0008\u000e-\u001f\ufffd]/.test(text)) return `${bytes} bytes of binary data`;
  return `${bytes} bytes of text`;
}

function bodyText(body: Buffer | string): string {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function bodyBytes(body: Buffer | string): number {
  return typeof body === 'string' ? Buffer.byteLength(body, 'utf8') : body.length;
}

function tooLarge(body: Buffer | string): ProvisionError | undefined {
  const bytes = bodyBytes(body);
  return bytes > MAX_ANSWER_BYTES
    ? protocolError(
        `${NOT_UNDERSTOOD}: it is ${bytes} bytes, far larger than a provisioning answer ` +
          `(limit ${MAX_ANSWER_BYTES}). Check that host and port point at a ThingsBoard server.`,
        { maybeDelivered: true },
      )
    : undefined;
}

/** JSON.parse without ever attaching its error: Node's SyntaxError quotes part of the text. */
function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false };
  }
}

function notFound(serverMessage: string | undefined): ProvisionError {
  return new ProvisionError(
    'NOT_FOUND',
    `ThingsBoard answered NOT_FOUND${serverMessage ? ` ("${serverMessage}")` : ''}: no device ` +
      'profile accepts this provision device key and secret. Check the key and the secret on ' +
      'the ThingsBoard server config node, and that provisioning is enabled on the device profile ' +
      '("Allow to create new devices" or "Check for pre-provisioned devices").',
    { serverMessage },
  );
}

function failure(serverMessage: string | undefined): ProvisionError {
  return new ProvisionError(
    'FAILURE',
    `ThingsBoard refused to provision the device (FAILURE${
      serverMessage ? `: "${serverMessage}"` : ''
    }). Likely causes: a device with this name already exists - ThingsBoard never provisions a ` +
      'device twice, so use the credentials it got the first time, or delete the device in ' +
      'ThingsBoard and provision again; the device-chosen credentials are already used by another ' +
      'device or are invalid - choose others; or, with "Check for pre-provisioned devices", the ' +
      'device does not exist in this device profile or was already provisioned - create it there ' +
      'first or use its existing credentials.',
    { serverMessage },
  );
}

function invalidSuccess(what: string): ProvisionError {
  // The server said SUCCESS, so a device may now exist whose credentials we could not read.
  return protocolError(
    `${NOT_UNDERSTOOD}: it reported SUCCESS but ${what}. The device may have been created; ` +
      'check it in ThingsBoard.',
    { maybeDelivered: true },
  );
}

function parseMqttBasicValue(value: unknown): MqttBasicCredentialsValue {
  if (!isPlainObject(value)) {
    throw invalidSuccess(
      `its MQTT_BASIC credentialsValue is ${describeType(value)}, not an object`,
    );
  }
  const parsed: MqttBasicCredentialsValue = {};
  for (const key of ['clientId', 'userName', 'password'] as const) {
    const field = ownField(value, key);
    // The server writes absent fields as JSON null.
    if (field === undefined || field === null) continue;
    if (typeof field !== 'string') {
      throw invalidSuccess(`credentialsValue.${key} is ${describeType(field)}, not a string`);
    }
    parsed[key] = field;
  }
  if (!parsed.clientId && !parsed.userName) {
    throw invalidSuccess('its MQTT_BASIC credentialsValue has neither a clientId nor a userName');
  }
  return parsed;
}

function parseSuccess(answer: Record<string, unknown>): ProvisionAnswer {
  const credentialsType = ownField(answer, 'credentialsType');
  const credentialsValue = ownField(answer, 'credentialsValue');
  switch (credentialsType) {
    case 'ACCESS_TOKEN':
    case 'X509_CERTIFICATE':
      if (typeof credentialsValue !== 'string' || credentialsValue.length === 0) {
        throw invalidSuccess(
          `its ${credentialsType} credentialsValue is ${
            credentialsValue === '' ? 'empty' : describeType(credentialsValue)
          }, not a non-empty string`,
        );
      }
      return { status: 'SUCCESS', credentialsType, credentialsValue };
    case 'MQTT_BASIC':
      return {
        status: 'SUCCESS',
        credentialsType,
        credentialsValue: parseMqttBasicValue(credentialsValue),
      };
    default:
      throw invalidSuccess(
        credentialsType === undefined
          ? 'it has no credentialsType'
          : `its credentialsType is ${describeWord(credentialsType)}, not ACCESS_TOKEN, ` +
              'MQTT_BASIC or X509_CERTIFICATE',
      );
  }
}

/**
 * Reads a provisioning answer body: SUCCESS is returned, NOT_FOUND and FAILURE are thrown as
 * themselves, anything else is a PROTOCOL_ERROR that describes the body without quoting it.
 */
export function parseAnswerBody(body: Buffer | string, sent?: ProvisionRequest): ProvisionAnswer {
  const oversized = tooLarge(body);
  if (oversized) throw oversized;
  const parsed = parseJson(bodyText(body));
  if (!parsed.ok) {
    throw protocolError(
      `${NOT_UNDERSTOOD}: it is ${describeBody(body)}, not JSON. Check that host and port point ` +
        'at a ThingsBoard server.',
      { maybeDelivered: true },
    );
  }
  const answer = parsed.value;
  if (!isPlainObject(answer)) {
    throw protocolError(`${NOT_UNDERSTOOD}: it is ${describeType(answer)}, not a JSON object.`, {
      maybeDelivered: true,
    });
  }
  const status = ownField(answer, 'status');
  if (status === undefined && ownField(answer, 'provisionDeviceStatus') !== undefined) {
    // The public guide still shows this shape; real servers have not sent it since 3.2.
    throw protocolError(
      `${NOT_UNDERSTOOD}: it uses the outdated provisionDeviceStatus format from old ThingsBoard ` +
        'documentation, which ThingsBoard 3.2 and later never send. Check that host and port ' +
        'point at a real ThingsBoard server.',
      { maybeDelivered: true },
    );
  }
  switch (status) {
    case 'SUCCESS':
      return parseSuccess(answer);
    case 'NOT_FOUND':
      throw notFound(safeServerText(ownField(answer, 'errorMsg'), secretsOf(sent)));
    case 'FAILURE':
      throw failure(safeServerText(ownField(answer, 'errorMsg'), secretsOf(sent)));
    default:
      throw protocolError(
        `${NOT_UNDERSTOOD}: ${
          status === undefined
            ? 'it has no status'
            : `its status is ${describeWord(status)}, not SUCCESS, NOT_FOUND or FAILURE`
        }.`,
        { maybeDelivered: true },
      );
  }
}

/** ThingsBoard's REST error object, e.g. {"status":500,"message":"...","errorCode":2}. */
function restErrorMessage(
  body: Buffer,
  sent: ProvisionRequest | undefined,
): { message?: string } | undefined {
  if (body.length === 0 || body.length > MAX_ANSWER_BYTES) return undefined;
  const parsed = parseJson(bodyText(body));
  if (!parsed.ok || !isPlainObject(parsed.value)) return undefined;
  const error = parsed.value;
  const looksLikeError =
    typeof ownField(error, 'errorCode') === 'number' ||
    (typeof ownField(error, 'status') === 'number' && ownField(error, 'message') !== undefined);
  return looksLikeError
    ? { message: safeServerText(ownField(error, 'message'), secretsOf(sent)) }
    : undefined;
}

function isBlank(body: Buffer): boolean {
  return body.length === 0 || body.toString('utf8').trim().length === 0;
}

/** Classifies one HTTP answer to POST /api/v1/provision. */
export function classifyHttpResponse(
  statusCode: number,
  body: Buffer,
  sent?: ProvisionRequest,
): ProvisionAnswer {
  const payload = Buffer.isBuffer(body) ? body : Buffer.from(String(body ?? ''), 'utf8');
  // HTTP 200 carries SUCCESS, NOT_FOUND and FAILURE alike, and not always as application/json.
  if (statusCode === 200) return parseAnswerBody(payload, sent);
  const code = `HTTP ${statusCode}`;
  if (statusCode === 500) {
    const restError = restErrorMessage(payload, sent);
    if (restError) {
      throw protocolError(
        `The server rejected the provisioning request as malformed (${code}${
          restError.message ? `: "${restError.message}"` : ''
        }). This is a client fault; please report it.`,
        { serverMessage: restError.message },
      );
    }
  }
  if (statusCode >= 500 && statusCode <= 599) {
    throw protocolError(
      `The server had an internal error or timed out (${code}${
        isBlank(payload) ? '' : `, ${describeBody(payload)}`
      }); another attempt may succeed.`,
      { transient: true, maybeDelivered: true },
    );
  }
  if (statusCode === 429 || statusCode === 408) {
    throw protocolError(
      `The server asked to try again later (${code}: ${
        statusCode === 429 ? 'too many requests' : 'request timeout'
      }); another attempt may succeed.`,
      { transient: true },
    );
  }
  if (statusCode === 400) {
    throw protocolError(
      `The server rejected the provisioning request as bad (${code}). This is a client fault; ` +
        'please report it.',
    );
  }
  if (statusCode === 401 || statusCode === 403 || statusCode === 404 || statusCode === 405) {
    throw protocolError(
      `The server has no provisioning endpoint at /api/v1/provision (${code}): wrong port or ` +
        'path, probably not a ThingsBoard HTTP transport. Check the HTTP port on the config ' +
        'node (ThingsBoard default 8080; ThingsBoard Cloud: HTTPS on 443).',
    );
  }
  if (statusCode >= 300 && statusCode <= 399) {
    throw protocolError(
      `The server redirected the provisioning request (${code}): it probably wants HTTPS; ` +
        'enable TLS on the config node, or point host and port at the address it redirects to.',
    );
  }
  throw protocolError(
    `${NOT_UNDERSTOOD}: unexpected ${code} with ${describeBody(payload)} (ThingsBoard answers ` +
      'provisioning with HTTP 200).',
    { maybeDelivered: statusCode >= 200 && statusCode <= 299 },
  );
}

/** Classifies one CoAP answer; `code` is the dotted form the coap package reports, e.g. '2.01'. */
export function classifyCoapResponse(
  code: string,
  payload: Buffer,
  sent?: ProvisionRequest,
): ProvisionAnswer {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(String(payload ?? ''), 'utf8');
  const match = /^([0-7])\.(\d\d)$/.exec(String(code));
  const label = `CoAP ${match ? String(code) : 'response with an unrecognised code'}`;
  if (!match) throw protocolError(`${NOT_UNDERSTOOD}: ${label}.`, { maybeDelivered: true });
  // Replies carry Content-Format text/plain (0), not JSON (50): the payload is read as JSON anyway.
  if (code === '2.01' || code === '2.04' || code === '2.05') return parseAnswerBody(body, sent);
  if (code === '4.00') {
    if (isBlank(body)) {
      throw protocolError(
        `The server could not decode the provisioning request (${label}, empty payload). This is ` +
          'a client fault; please report it.',
      );
    }
    // NOT_FOUND and FAILURE come back as 4.00 with the same JSON as on the other transports.
    const answer = parseAnswerBody(body, sent);
    throw protocolError(
      `${NOT_UNDERSTOOD}: ${label} (Bad Request) but a ${answer.status} payload. Check the ` +
        'device in ThingsBoard.',
      { maybeDelivered: true },
    );
  }
  if (match[1] === '5') {
    throw protocolError(
      `The server had an internal error or timed out (${label}); another attempt may succeed.`,
      {
        transient: true,
        maybeDelivered: true,
      },
    );
  }
  if (code === '4.04' || code === '4.05' || code === '4.01' || code === '4.03') {
    throw protocolError(
      `The server has no provisioning resource at /api/v1/provision (${label}): wrong port, or ` +
        'not a ThingsBoard CoAP transport. Check the CoAP port on the config node (default 5683) ' +
        'and that the CoAP transport is enabled on the server.',
    );
  }
  if (code === '4.29') {
    throw protocolError(`The server asked to try again later (${label}: too many requests).`, {
      transient: true,
    });
  }
  throw protocolError(
    `${NOT_UNDERSTOOD}: unexpected ${label} with ${describeBody(body)} (ThingsBoard answers ` +
      'provisioning with 2.01 or 4.00).',
    { maybeDelivered: match[1] === '2' },
  );
}

/** Classifies the JSON published on /provision/response. */
export function classifyMqttResponse(payload: Buffer, sent?: ProvisionRequest): ProvisionAnswer {
  return parseAnswerBody(Buffer.isBuffer(payload) ? payload : String(payload ?? ''), sent);
}

/** Whether another attempt may succeed: only ProvisionErrors marked transient. */
export function isTransient(err: unknown): boolean {
  return err instanceof ProvisionError && err.transient;
}
