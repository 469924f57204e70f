/** Reading request bodies and writing answers, shared by the HTTP routes. */

import type * as http from 'node:http';
import { restErrorBody } from './format';

/** The server's limit for /api/v1/** bodies, checked on Content-Length before reading. */
export const MAX_BODY_BYTES = 50 * 1024 * 1024;

/** Not reliably application/json on the real server: clients must parse the body regardless. */
export const ANSWER_CONTENT_TYPE = 'text/plain;charset=UTF-8';
export const JSON_CONTENT_TYPE = 'application/json';

export function reply(
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

/** 413 when the announced body is over the limit: answered unread, then the connection closes. */
export function refusedBySize(req: http.IncomingMessage, res: http.ServerResponse): boolean {
  const announced = Number(req.headers['content-length'] ?? 0);
  if (!(announced > MAX_BODY_BYTES)) return false;
  res.setHeader('Connection', 'close');
  reply(res, 413);
  return true;
}

/** The whole body, or undefined when it grew larger than the limit (the rest is read and dropped). */
export function readBody(req: http.IncomingMessage): Promise<Buffer | undefined> {
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

export async function drain(req: http.IncomingMessage): Promise<void> {
  await readBody(req);
}

export async function replyMethodNotAllowed(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  allow: string,
): Promise<void> {
  await drain(req);
  res.setHeader('Allow', allow);
  reply(
    res,
    405,
    JSON_CONTENT_TYPE,
    restErrorBody(405, `Request method '${req.method}' is not supported`, 2),
  );
}
