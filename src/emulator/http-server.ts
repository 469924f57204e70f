/**
 * HTTP listener reproducing ThingsBoard's DeviceApiController (provisioning and the device API),
 * plus the emulator's own control route.
 */

import * as http from 'node:http';
import * as https from 'node:https';
import type { ProvisioningDesk } from './desk';
import { ERROR_CODE_BAD_REQUEST_PARAMS, ERROR_CODE_GENERAL, restErrorBody } from './format';
import {
  ANSWER_CONTENT_TYPE,
  JSON_CONTENT_TYPE,
  drain,
  readBody,
  refusedBySize,
  reply,
  replyMethodNotAllowed,
} from './http-body';
import { CONTROL_PREFIX, serveControl, type EmulatorControl } from './http-control';
import { DEVICE_API_PATH, serveDeviceApi } from './http-device-api';
import { listenOn } from './listen';
import type { Recorder } from './records';
import type { Tenant } from './state';
import type { EmulatorTlsOptions } from './types';

export const PROVISION_PATH = '/api/v1/provision';

export interface HttpServerContext {
  tenant: Tenant;
  desk: ProvisioningDesk;
  recorder: Recorder;
  control: EmulatorControl;
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
    const url = new URL(req.url ?? '/', 'http://emulator');
    const path = url.pathname;
    if (path === PROVISION_PATH) {
      if (req.method !== 'POST') return replyMethodNotAllowed(req, res, 'POST');
      return this.provision(req, res);
    }
    const deviceCall = DEVICE_API_PATH.exec(path);
    if (deviceCall !== null) {
      const token = decodeURIComponent(deviceCall[1]);
      const call = deviceCall[2] as 'telemetry' | 'attributes';
      return serveDeviceApi(this.context, req, res, url, token, call);
    }
    if (path.startsWith(CONTROL_PREFIX)) return serveControl(this.context.control, req, res, path);
    await drain(req);
    reply(res, 404, JSON_CONTENT_TYPE, restErrorBody(404, 'Not Found', 32));
  }

  private async provision(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (refusedBySize(req, res)) return;
    const body = await readBody(req);
    if (body === undefined) return reply(res, 413);
    if (body.length === 0) {
      const message = 'Required request body is missing';
      this.context.desk.refuse('http', 'empty body', '400');
      return reply(
        res,
        400,
        JSON_CONTENT_TYPE,
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
          JSON_CONTENT_TYPE,
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
}
