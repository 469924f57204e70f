/** Byte-exact bodies as ThingsBoard writes them, and masking for log lines. */

import type { EmulatedCredentials } from './types';

export const NOT_FOUND_BODY = '{"errorMsg":"Provision data was not found!","status":"NOT_FOUND"}';
export const FAILURE_BODY = '{"errorMsg":"Failed to provision device!","status":"FAILURE"}';

/** A JSON string literal as Gson writes it (it also escapes U+2028/U+2029, JSON.stringify does not). */
export function jsonString(value: string): string {
  return JSON.stringify(value)
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** The stored MQTT basic credentials as the server renders them: present fields, in this order. */
export function mqttBasicValue(credentials: {
  clientId?: string;
  userName?: string;
  password?: string;
}): string {
  const fields: string[] = [];
  if (credentials.clientId !== undefined)
    fields.push(`"clientId":${jsonString(credentials.clientId)}`);
  if (credentials.userName !== undefined)
    fields.push(`"userName":${jsonString(credentials.userName)}`);
  if (credentials.password !== undefined)
    fields.push(`"password":${jsonString(credentials.password)}`);
  return `{${fields.join(',')}}`;
}

export function successBody(credentials: EmulatedCredentials): string {
  let value: string;
  switch (credentials.credentialsType) {
    case 'ACCESS_TOKEN':
      value = jsonString(credentials.token);
      break;
    case 'MQTT_BASIC':
      value = mqttBasicValue(credentials);
      break;
    case 'X509_CERTIFICATE':
      value = jsonString(credentials.certificate);
      break;
  }
  return `{"credentialsValue":${value},"credentialsType":"${credentials.credentialsType}","status":"SUCCESS"}`;
}

/** ThingsBoard's REST error object (ThingsboardErrorResponse): status, message, errorCode, timestamp. */
export function restErrorBody(status: number, message: string, errorCode: number, at = Date.now()) {
  return `{"status":${status},"message":${jsonString(message)},"errorCode":${errorCode},"timestamp":${at}}`;
}

/** ThingsboardErrorCode values the emulator uses. */
export const ERROR_CODE_GENERAL = 2;
export const ERROR_CODE_BAD_REQUEST_PARAMS = 31;

/** First two characters and an ellipsis: enough to tell values apart, never enough to use one. */
export function mask(secret: string): string {
  return `${[...secret].slice(0, 2).join('')}…`;
}

/**
 * A log line safe for a terminal: control characters (C0, DEL, C1), line and paragraph separators
 * and bidirectional overrides become \u escapes, so a device name cannot forge or hide log lines.
 */
export function printable(line: string): string {
  return line.replace(
    /[\p{Cc}\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu,
    (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
