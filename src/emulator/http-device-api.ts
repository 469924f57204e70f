/** The HTTP device API (DeviceApiController): telemetry and attributes by access token. */

import type * as http from 'node:http';
import type { ProvisioningDesk } from './desk';
import { ERROR_CODE_BAD_REQUEST_PARAMS, mask, restErrorBody } from './format';
import {
  JSON_CONTENT_TYPE,
  readBody,
  refusedBySize,
  reply,
  replyMethodNotAllowed,
} from './http-body';
import { answerAttributes, keyList, type AttributeQuery } from './payload';
import type { Recorder } from './records';
import type { Tenant } from './state';

export const DEVICE_API_PATH = /^\/api\/v1\/([^/]+)\/(telemetry|attributes)$/;

export interface HttpDeviceApiContext {
  tenant: Tenant;
  desk: ProvisioningDesk;
  recorder: Recorder;
}

/** 413 by size, 400 empty, 401 unknown token, 500 for a payload the server cannot read, else 200. */
export async function serveDeviceApi(
  context: HttpDeviceApiContext,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
  token: string,
  call: 'telemetry' | 'attributes',
): Promise<void> {
  const allowed = call === 'telemetry' ? ['POST'] : ['GET', 'POST'];
  if (!allowed.includes(req.method ?? '')) {
    return replyMethodNotAllowed(req, res, allowed.join(', '));
  }
  if (refusedBySize(req, res)) return;
  const body = await readBody(req);
  if (body === undefined) return reply(res, 413);
  if (req.method === 'POST' && body.length === 0) {
    const message = 'Required request body is missing';
    return reply(
      res,
      400,
      JSON_CONTENT_TYPE,
      restErrorBody(400, message, ERROR_CODE_BAD_REQUEST_PARAMS),
    );
  }
  const device = context.tenant.deviceByAccessToken(token);
  if (device === undefined) {
    context.desk.note('http', `${call} refused: unknown token ${mask(token)} -> 401`);
    return reply(res, 401);
  }
  const subject = `${call} from ${JSON.stringify(device.name)}`;
  if (req.method === 'GET') {
    const answer = answerAttributes(device, attributeQuery(url));
    context.desk.note('http', `attributes read by ${JSON.stringify(device.name)}`);
    return reply(res, 200, JSON_CONTENT_TYPE, JSON.stringify(answer));
  }
  const taken = context.recorder.accept(device, call, body);
  if (!taken.ok) {
    context.desk.note('http', `${subject}: ${taken.reason} -> 500`);
    // The server answers a payload it cannot convert as an internal error.
    return reply(res, 500);
  }
  context.desk.note('http', subject);
  reply(res, 200);
}

/** `?clientKeys=a,b&sharedKeys=c`: an empty or absent list leaves its scope out, none at all = all. */
function attributeQuery(url: URL): AttributeQuery {
  const client = keyList(url.searchParams.get('clientKeys') ?? '');
  const shared = keyList(url.searchParams.get('sharedKeys') ?? '');
  if (client.length === 0 && shared.length === 0) return { client: [], shared: [] };
  return {
    client: client.length > 0 ? client : undefined,
    shared: shared.length > 0 ? shared : undefined,
  };
}
