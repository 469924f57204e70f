/** The CoAP device API (CoapTransportResource): telemetry and attributes by access token. */

import type * as coap from 'coap';
import type { ProvisioningDesk } from './desk';
import { mask } from './format';
import { answerAttributes, keyList, type AttributeQuery } from './payload';
import type { Recorder } from './records';
import type { Tenant } from './state';

/** Any /api/v1/{token}/{feature}: a feature the server does not know is a bad request. */
export const DEVICE_API_PATH = /^\/api\/v1\/([^/]+)\/([^/]+)$/;

export interface CoapDeviceApiContext {
  tenant: Tenant;
  desk: ProvisioningDesk;
  recorder: Recorder;
}

export type CoapRespond = (code: string, body?: string, contentFormat?: string) => void;

/** POST 2.01 / 4.01 / 4.00; GET attributes 2.05 with what was found, 4.04 when nothing was. */
export function serveDeviceApi(
  context: CoapDeviceApiContext,
  req: coap.IncomingMessage,
  token: string,
  feature: string,
  respond: CoapRespond,
): void {
  if (req.method !== 'GET' && req.method !== 'POST') return respond('4.05');
  const known =
    req.method === 'POST'
      ? feature === 'telemetry' || feature === 'attributes'
      : feature === 'attributes';
  if (!known) return respond('4.00');
  const device = context.tenant.deviceByAccessToken(token);
  if (device === undefined) {
    context.desk.note('coap', `${feature} refused: unknown token ${mask(token)} -> 4.01`);
    return respond('4.01');
  }
  const subject = `${feature} from ${JSON.stringify(device.name)}`;
  if (req.method === 'GET') {
    const answer = answerAttributes(device, attributeQuery(req.url));
    context.desk.note('coap', `attributes read by ${JSON.stringify(device.name)}`);
    // A device with no attributes yet, as every new device: "not found", not an empty object.
    if (answer.client === undefined && answer.shared === undefined) return respond('4.04');
    const requested = req.headers['Content-Format'];
    const format = typeof requested === 'string' ? requested : 'application/json';
    return respond('2.05', JSON.stringify(answer), format);
  }
  const taken = context.recorder.accept(
    device,
    feature as 'telemetry' | 'attributes',
    req.payload ?? Buffer.alloc(0),
  );
  if (!taken.ok) {
    context.desk.note('coap', `${subject}: ${taken.reason} -> 4.00`);
    return respond('4.00');
  }
  context.desk.note('coap', subject);
  respond('2.01');
}

/** `?clientKeys=a,b&sharedKeys=c`, read as the HTTP API reads it. */
function attributeQuery(url: string): AttributeQuery {
  const query = new URLSearchParams(url.includes('?') ? url.slice(url.indexOf('?') + 1) : '');
  const client = keyList(query.get('clientKeys') ?? '');
  const shared = keyList(query.get('sharedKeys') ?? '');
  if (client.length === 0 && shared.length === 0) return { client: [], shared: [] };
  return {
    client: client.length > 0 ? client : undefined,
    shared: shared.length > 0 ? shared : undefined,
  };
}
