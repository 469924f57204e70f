/** CoAP listener reproducing ThingsBoard's CoapTransportResource: provisioning and the device API. */

import * as coap from 'coap';
import * as dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { DEVICE_API_PATH, serveDeviceApi } from './coap-device-api';
import type { ProvisioningDesk, Verdict } from './desk';
import type { Recorder } from './records';
import type { Tenant } from './state';

type CoapRequest = coap.IncomingMessage;
type CoapResponse = coap.OutgoingMessage;

const PROVISION_PATH = '/api/v1/provision';
/** Answers slower than this get an empty ACK first and a separate response (as Californium). */
const PIGGYBACK_REPLY_MS = 500;
/** RFC 7252 EXCHANGE_LIFETIME: how long a message id is remembered for deduplication. */
const EXCHANGE_LIFETIME_MS = 247_000;
/** The library sends answers of this size or more block-wise (RFC 7959 Block2). */
const BLOCKWISE_FROM_BYTES = 1024;

export interface CoapServerContext {
  tenant: Tenant;
  desk: ProvisioningDesk;
  recorder: Recorder;
}

export class CoapServer {
  private readonly server: coap.Server;
  /** Responses not yet sent, so stop() can cancel their pending empty ACK. */
  private readonly open = new Set<CoapResponse>();
  /** Requests already taken, by peer and message id: retransmissions must not provision twice. */
  private readonly seen = new Map<string, number>();
  private readonly peersGone = new Set<AbortController>();
  /** Block-wise answers by peer and token, for the client's requests for the next blocks. */
  private readonly blockAnswers = new Map<string, { code: string; body: Buffer; at: number }>();

  constructor(private readonly context: CoapServerContext) {
    this.server = coap.createServer({
      piggybackReplyMs: PIGGYBACK_REPLY_MS,
      // Without this a second emulator could bind the same port and the first would never know.
      reuseAddr: false,
    });
    this.server.on('request', (req: CoapRequest, res: CoapResponse) => this.route(req, res));
  }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.server.once('error', onError);
      this.server.listen(port, host, (error?: Error) => {
        this.server.off('error', onError);
        if (error !== undefined) return reject(error);
        const socket = this.server._sock as { address(): AddressInfo };
        // Later socket errors (ICMP noise) must not crash the process.
        this.server.on('error', () => undefined);
        resolve(socket.address().port);
      });
    });
  }

  close(): Promise<void> {
    for (const res of this.open) cancelPiggyback(res);
    this.open.clear();
    for (const peerGone of this.peersGone) peerGone.abort();
    this.peersGone.clear();
    const socket = this.server._sock;
    // The library closes its socket without waiting; stop() must return only once it is gone.
    const socketClosed =
      socket instanceof dgram.Socket
        ? new Promise<void>((resolve) => socket.once('close', () => resolve()))
        : Promise.resolve();
    this.server.close();
    return socketClosed;
  }

  private route(req: CoapRequest, res: CoapResponse): void {
    const path = req.url.split('?')[0];
    if (path === PROVISION_PATH) {
      if (req.method !== 'POST') return this.reply(res, '4.05');
      if (requestedBlock(req) > 0) return this.nextBlock(req, res);
      void this.provision(req, res);
      return;
    }
    const deviceCall = DEVICE_API_PATH.exec(path);
    if (deviceCall !== null) {
      return serveDeviceApi(this.context, req, deviceCall[1], deviceCall[2], (code, body, format) =>
        this.reply(res, code, body, undefined, format),
      );
    }
    this.reply(res, '4.04');
  }

  private async provision(req: CoapRequest, res: CoapResponse): Promise<void> {
    if (this.isRetransmission(req)) {
      // The library answers retransmissions it has a reply for; this one is still being worked on.
      this.forget(res);
      return;
    }
    this.open.add(res);
    const peerGone = new AbortController();
    this.peersGone.add(peerGone);
    let verdict: Verdict;
    try {
      verdict = await this.context.desk.receive(
        'coap',
        req.payload ?? Buffer.alloc(0),
        peerGone.signal,
      );
    } catch {
      verdict = { kind: 'internal-error' };
    }
    switch (verdict.kind) {
      case 'answer':
        // 2.01 for SUCCESS, 4.00 with the same JSON for NOT_FOUND and FAILURE; text/plain, not JSON.
        this.reply(res, verdict.status === 'SUCCESS' ? '2.01' : '4.00', verdict.body, req);
        break;
      case 'malformed':
        this.reply(res, '4.00');
        break;
      case 'internal-error':
        this.reply(res, '5.00');
        break;
      case 'drop':
        this.forget(res);
        break;
      case 'hold':
        // The empty ACK still goes after 500 ms: accepted, never answered.
        return;
    }
    this.peersGone.delete(peerGone);
  }

  private reply(
    res: CoapResponse,
    code: string,
    body?: string,
    req?: CoapRequest,
    contentFormat = 'text/plain',
  ): void {
    this.open.delete(res);
    res.code = code;
    if (body === undefined) {
      res.end();
      return;
    }
    const bytes = Buffer.from(body, 'utf8');
    res.setOption('Content-Format', contentFormat);
    res.end(bytes);
    if (req !== undefined && bytes.length >= BLOCKWISE_FROM_BYTES)
      this.keepBlocks(req, code, bytes);
  }

  /**
   * The library replays later blocks from its own cache with code 2.05; Californium keeps the
   * answer's code on every block, so the emulator serves them itself.
   */
  private keepBlocks(req: CoapRequest, code: string, body: Buffer): void {
    const now = Date.now();
    for (const [key, entry] of this.blockAnswers) {
      if (now - entry.at < EXCHANGE_LIFETIME_MS) break;
      this.blockAnswers.delete(key);
    }
    this.blockAnswers.set(blockKey(req), { code, body, at: now });
    const libraryKey = this.server._toCacheKey(req, req._packet);
    if (libraryKey !== null) this.server._block2Cache.remove(libraryKey);
  }

  private nextBlock(req: CoapRequest, res: CoapResponse): void {
    const answer = this.blockAnswers.get(blockKey(req));
    if (answer === undefined) return this.reply(res, '4.08');
    res.code = answer.code;
    res.setOption('Content-Format', 'text/plain');
    // The library cuts the requested block out of the whole body.
    res.end(answer.body);
    const libraryKey = this.server._toCacheKey(req, req._packet);
    if (libraryKey !== null) this.server._block2Cache.remove(libraryKey);
  }

  /** Never answer this exchange, not even with an empty ACK. */
  private forget(res: CoapResponse): void {
    this.open.delete(res);
    cancelPiggyback(res);
  }

  private isRetransmission(req: CoapRequest): boolean {
    const now = Date.now();
    for (const [key, at] of this.seen) {
      if (now - at < EXCHANGE_LIFETIME_MS) break;
      this.seen.delete(key);
    }
    const key = `${req.rsinfo.address}:${req.rsinfo.port}/${req._packet.messageId}`;
    if (this.seen.has(key)) return true;
    this.seen.set(key, now);
    return false;
  }
}

function blockKey(req: CoapRequest): string {
  return `${req.rsinfo.address}:${req.rsinfo.port}/${req._packet.token?.toString('hex') ?? ''}`;
}

/** The block number a request asks for (0 without a Block2 option). */
function requestedBlock(req: CoapRequest): number {
  const option = req._packet.options?.find((candidate) => candidate.name === 'Block2');
  if (option === undefined || !Buffer.isBuffer(option.value) || option.value.length === 0) return 0;
  return option.value.readUIntBE(0, option.value.length) >> 4;
}

/** The library's pending empty-ACK timer would otherwise fire later, even on a closed socket. */
function cancelPiggyback(res: CoapResponse): void {
  if (res._ackTimer != null) clearTimeout(res._ackTimer);
  res._ackTimer = null;
}
