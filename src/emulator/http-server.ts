/**
 * HTTP listener reproducing ThingsBoard's DeviceApiController for provisioning, plus the device API
 * calls used to check a token (telemetry, attributes).
 */

import * as http from 'node:http';
import * as https from 'node:https';
import type { ProvisioningDesk } from './desk';
import { ERROR_CODE_BAD_REQUEST_PARAMS, ERROR_CODE_GENERAL, mask, restErrorBody } from './format';
import { listenOn } from './listen';
import type { Tenant } from './state';
import type { EmulatorTlsOptions } from './types';

export const PROVISION_PATH = '/api/v1/provision';
const DEVICE_API_PATH = /^\/api\/v1\/([^/]+)\/(telemetry|attributes)$/;
const MAX_BODY_BYTES = 1024 * 1024;

/** Not reliably application/json on the real server: clients must parse the body regardless. */
const ANSWER_CONTENT_TYPE = 'text/plain;charset=UTF-8';
const ERROR_CONTENT_TYPE = 'application/json';

export interface HttpServerContext {
  tenant: Tenant;
  desk: ProvisioningDesk;
}

export class HttpServer {
  private readonly server: http.Server;

  constructor(
    private readonly context: HttpServerContext,
    tlsOptions?: EmulatorTlsOptions,
  ) {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.route(req, res).catch(() => {
        if (!res.headersSent) reply(res, 500);
        else res.destroy();
      });
    };
    this.server =
      tlsOptions === undefined
        ? http.createServer(handler)
        : https.createServer(
            {
              key: tlsOptions.key,
              cert: tlsOptions.cert,
              ca: tlsOptions.ca,
              requestCert: tlsOptions.requestCert === true,
              rejectUnauthorized: false,
            },
            handler,
          );
  }

  listen(port: number, host: string): Promise<number> {
    return listenOn(this.server, port, host);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // Idle keep-alive sockets and held requests alike.
    this.server.closeAllConnections();
    await closed;
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://emulator').pathname;
    if (path === PROVISION_PATH) {
      if (req.method !== 'POST') return replyMethodNotAllowed(req, res, 'POST');
      return this.provision(req, res);
    }
    const deviceCall = DEVICE_API_PATH.exec(path);
    if (deviceCall !== null) {
      return this.deviceApi(req, res, decodeURIComponent(deviceCall[1]), deviceCall[2]);
    }
    await drain(req);
    reply(res, 404, ERROR_CONTENT_TYPE, restErrorBody(404, 'Not Found', 32));
  }

  private async provision(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readBody(req);
    if (body === undefined) return reply(res, 413);
    if (body.length === 0) {
      const message = 'Required request body is missing';
      this.context.desk.refuse('http', 'empty body', '400');
      return reply(
        res,
        400,
        ERROR_CONTENT_TYPE,
        restErrorBody(400, message, ERROR_CODE_BAD_REQUEST_PARAMS),
      );
    }
    const peerGone = new AbortController();
    res.once('close', () => peerGone.abort());
    const verdict = await this.context.desk.receive('http', body, peerGone.signal);
    if (res.destroyed || res.writableEnded) return;
    switch (verdict.kind) {
      case 'answer':
        // 200 for SUCCESS, NOT_FOUND and FAILURE alike: the status is in the body only.
        return reply(res, 200, ANSWER_CONTENT_TYPE, verdict.body);
      case 'malformed':
        return reply(
          res,
          500,
          ERROR_CONTENT_TYPE,
          restErrorBody(500, `Invalid provision request: ${verdict.reason}`, ERROR_CODE_GENERAL),
        );
      case 'internal-error':
        return reply(res, 500);
      case 'drop':
        req.socket.destroy();
        return;
      case 'hold':
        return;
    }
  }

  private async deviceApi(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    token: string,
    call: string,
  ): Promise<void> {
    const allowed = call === 'telemetry' ? ['POST'] : ['GET', 'POST'];
    if (!allowed.includes(req.method ?? ''))
      return replyMethodNotAllowed(req, res, allowed.join(', '));
    const body = await readBody(req);
    if (body === undefined) return reply(res, 413);
    const device = this.context.tenant.deviceByAccessToken(token);
    if (device === undefined) {
      this.context.desk.note('http', `${call} refused: unknown token ${mask(token)} -> 401`);
      return reply(res, 401);
    }
    if (req.method === 'GET') {
      const attributes =
        Object.keys(device.attributes).length > 0
          ? JSON.stringify({ client: device.attributes })
          : '{}';
      return reply(res, 200, ERROR_CONTENT_TYPE, attributes);
    }
    let data: unknown;
    try {
      data = JSON.parse(body.toString('utf8'));
    } catch {
      return reply(
        res,
        400,
        ERROR_CONTENT_TYPE,
        restErrorBody(400, 'Invalid JSON', ERROR_CODE_BAD_REQUEST_PARAMS),
      );
    }
    if (call === 'telemetry') {
      device.telemetry.push(data);
    } else if (typeof data === 'object' && data !== null && !Array.isArray(data)) {
      Object.assign(device.attributes, data);
    }
    this.context.desk.note('http', `${call} from ${JSON.stringify(device.name)}`);
    reply(res, 200);
  }
}

function reply(
  res: http.ServerResponse,
  status: number,
  contentType?: string,
  body?: string,
): void {
  if (body === undefined) {
    res.writeHead(status, { 'Content-Length': 0 });
    res.end();
    return;
  }
  const bytes = Buffer.from(body, 'utf8');
  res.writeHead(status, {
    'Content-Type': contentType ?? ANSWER_CONTENT_TYPE,
    'Content-Length': bytes.length,
  });
  res.end(bytes);
}

async function replyMethodNotAllowed(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  allow: string,
): Promise<void> {
  await drain(req);
  res.setHeader('Allow', allow);
  reply(
    res,
    405,
    ERROR_CONTENT_TYPE,
    restErrorBody(405, `Request method '${req.method}' is not supported`, 2),
  );
}

/** The whole body, or undefined when it is larger than the emulator accepts. */
function readBody(req: http.IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(chunk);
    });
    req.once('end', () => resolve(tooLarge ? undefined : Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

async function drain(req: http.IncomingMessage): Promise<void> {
  await readBody(req);
}
