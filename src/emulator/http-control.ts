/**
 * The emulator's own control route under /emulator/ on its HTTP port, for people and scripts: send
 * an RPC or a shared-attribute update to a device, list sessions, read what a device sent.
 * Answered to loopback peers only.
 */

import type * as http from 'node:http';
import { JSON_CONTENT_TYPE, readBody, refusedBySize, reply } from './http-body';
import { isJsonObject, parseJson, type JsonObject } from './payload';
import { EmulatorDeviceError } from './sessions';
import type { EmulatedDevice, SendRpcOptions, SessionInfo } from './types';

export const CONTROL_PREFIX = '/emulator/';

/** What the route asks of the emulator (its library API). */
export interface EmulatorControl {
  sendRpc(
    device: string,
    method: string,
    params: unknown,
    options: SendRpcOptions,
  ): Promise<unknown>;
  updateSharedAttributes(device: string, values: Record<string, unknown>): number;
  sessions(): SessionInfo[];
  closeSession(device: string): boolean;
  device(name: string): EmulatedDevice | undefined;
}

class ControlError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export async function serveControl(
  control: EmulatorControl,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  path: string,
): Promise<void> {
  try {
    if (!isLoopback(req.socket.remoteAddress)) {
      throw new ControlError(403, 'FORBIDDEN', 'The control route answers loopback clients only');
    }
    const [what, ...rest] = path.slice(CONTROL_PREFIX.length).split('/');
    const device = rest.length === 1 ? decodeName(rest[0]) : undefined;
    const route = `${req.method ?? ''} ${what}${device === undefined ? '' : '/…'}`;
    switch (route) {
      case 'POST rpc/…': {
        const body = await jsonBody(req, res);
        if (body === undefined) return;
        const reply = await control.sendRpc(device as string, rpcMethod(body), body.params ?? {}, {
          timeoutMs: timeoutOf(body.timeoutMs),
        });
        return answer(res, 200, reply ?? null);
      }
      case 'POST attributes/…': {
        const body = await jsonBody(req, res);
        if (body === undefined) return;
        return answer(res, 200, {
          sessions: control.updateSharedAttributes(device as string, body),
        });
      }
      case 'GET sessions':
        return answer(res, 200, control.sessions());
      case 'DELETE sessions/…':
        if (!control.closeSession(device as string)) {
          throw new ControlError(404, 'NO_SESSION', 'This device has no open session');
        }
        return answer(res, 200, { closed: true });
      case 'GET devices/…': {
        const found = control.device(device as string);
        if (found === undefined) throw new ControlError(404, 'UNKNOWN_DEVICE', 'No such device');
        // Credentials stay out: answers of this route end up in terminals.
        return answer(
          res,
          200,
          Object.fromEntries(Object.entries(found).filter(([key]) => key !== 'credentials')),
        );
      }
      default:
        throw new ControlError(404, 'NOT_FOUND', 'No such control route');
    }
  } catch (error) {
    if (res.headersSent) return;
    if (error instanceof ControlError || error instanceof EmulatorDeviceError) {
      return answer(res, error.status, { error: error.code, message: error.message });
    }
    throw error;
  }
}

/** The JSON object body of a POST, or undefined when an answer (413) was already sent. */
async function jsonBody(
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<JsonObject | undefined> {
  // A browser page cannot send application/json across origins without a preflight we never allow.
  if (!(req.headers['content-type'] ?? '').startsWith(JSON_CONTENT_TYPE)) {
    throw new ControlError(415, 'UNSUPPORTED_MEDIA_TYPE', 'Send the body as application/json');
  }
  if (refusedBySize(req, res)) return undefined;
  const body = await readBody(req);
  if (body === undefined) throw new ControlError(413, 'TOO_LARGE', 'The body is too large');
  const json = parseJson(body);
  if (!json.ok || !isJsonObject(json.value)) {
    throw new ControlError(400, 'BAD_REQUEST', 'The body must be a JSON object');
  }
  return json.value;
}

function rpcMethod(body: JsonObject): string {
  if (typeof body.method !== 'string' || body.method === '') {
    throw new ControlError(400, 'BAD_REQUEST', '"method" must be a non-empty string');
  }
  return body.method;
}

function timeoutOf(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !(value > 0) || value > 2_147_483_647) {
    throw new ControlError(400, 'BAD_REQUEST', '"timeoutMs" must be a positive number');
  }
  return value;
}

function decodeName(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new ControlError(400, 'BAD_REQUEST', 'The device name is not valid URL encoding');
  }
}

function answer(res: http.ServerResponse, status: number, body: unknown): void {
  reply(res, status, JSON_CONTENT_TYPE, JSON.stringify(body));
}

export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address;
  return v4.startsWith('127.') || address === '::1';
}
