/**
 * The UDP side of CoAP: one connected socket per server address, shared by the exchanges in flight
 * and routing each datagram to the exchange it answers, and the coap-packet codec, loaded on first
 * use so that loading the transports stays cheap.
 */

import * as dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { ParsedPacket } from 'coap-packet';
import { randomToken } from './coap-ids';

type CoapPacketModule = typeof import('coap-packet');
let coapPacket: CoapPacketModule | undefined;

/** Loaded on first use so that loading the transports stays cheap. */
export function codec(): CoapPacketModule {
  coapPacket ??= require('coap-packet') as CoapPacketModule;
  return coapPacket;
}

export async function resolveAddress(host: string): Promise<{ address: string; family: 4 | 6 }> {
  const literal = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const family = isIP(literal);
  if (family !== 0) return { address: literal, family: family === 6 ? 6 : 4 };
  const found = await lookup(literal);
  return { address: found.address, family: found.family === 6 ? 6 : 4 };
}

/** An exchange using a link: told about socket errors and the datagrams meant for it. */
export interface LinkUser {
  fail(err: unknown): void;
  /** The empty ACK or the RST of its request's message id. */
  onEmpty(packet: ParsedPacket): void;
  /** An answer with its token, piggy-backed or apart; `size` is the datagram's length. */
  onAnswer(packet: ParsedPacket, size: number): void;
}

/**
 * One connected UDP socket per server address, shared by the exchanges in flight and closed when
 * the last of them ends. Connected, the kernel reports an ICMP "port unreachable" as ECONNREFUSED
 * at once instead of leaving us to wait for the deadline, and drops datagrams from any other
 * address.
 */
export interface CoapLink {
  key: string;
  socket: dgram.Socket;
  /** Exchanges by the hex of their token. */
  byToken: Map<string, LinkUser>;
  /** Exchanges by the message id of their confirmable request not yet acknowledged. */
  byMessageId: Map<number, LinkUser>;
  users: Set<LinkUser>;
  connected: Promise<void>;
  open: boolean;
  /** Set while the link waits, unused, for the next exchange. */
  idle?: NodeJS.Timeout;
  closing?: Promise<void>;
}

/**
 * How long an unused link waits for the next exchange before its socket closes. Meanwhile socket
 * and timer are unref'd, like a pooled HTTP connection: they never keep the process alive.
 */
const LINK_IDLE_MS = 1000;

export const links = new Map<string, CoapLink>();

/** A random token no exchange in flight on this link uses. */
export function nextToken(link: CoapLink): Buffer {
  for (;;) {
    const token = randomToken();
    if (!link.byToken.has(token.toString('hex'))) return token;
  }
}

export function openLink(key: string, address: string, family: 4 | 6, port: number): CoapLink {
  const socket = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
  const link: CoapLink = {
    key,
    socket,
    byToken: new Map(),
    byMessageId: new Map(),
    users: new Set(),
    connected: new Promise<void>((resolve) => socket.connect(port, address, () => resolve())),
    open: true,
  };
  socket.once('close', () => {
    link.open = false;
  });
  socket.on('error', (err) => {
    if (links.get(key) === link) links.delete(key);
    for (const user of [...link.users]) user.fail(err);
  });
  socket.on('message', (message: Buffer) => {
    let packet: ParsedPacket;
    try {
      packet = codec().parse(message);
    } catch {
      return; // Not CoAP: nothing to answer.
    }
    // A confirmable message from the server (an answer sent apart) is acknowledged whoever it was
    // for, so the server stops sending it again.
    if (packet.confirmable) {
      socket.send(codec().generate({ messageId: packet.messageId, code: '0.00', ack: true }));
    }
    if (packet.code === '0.00') {
      if (packet.ack || packet.reset) link.byMessageId.get(packet.messageId)?.onEmpty(packet);
      return;
    }
    link.byToken.get(packet.token.toString('hex'))?.onAnswer(packet, message.length);
  });
  links.set(key, link);
  return link;
}

export function closeLink(link: CoapLink): Promise<void> {
  if (link.idle !== undefined) clearTimeout(link.idle);
  link.idle = undefined;
  if (links.get(link.key) === link) links.delete(link.key);
  link.closing ??= (async () => {
    // Let the ACK of a separate answer leave before the socket closes.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (link.open) await new Promise<void>((resolve) => link.socket.close(() => resolve()));
  })();
  return link.closing;
}

export function joinLink(link: CoapLink, user: LinkUser): void {
  if (link.idle !== undefined) {
    clearTimeout(link.idle);
    link.idle = undefined;
    link.socket.ref();
  }
  link.users.add(user);
}

/**
 * Leaves a link. The last user of a link still handed out leaves it idle for the next exchange;
 * of a link taken out of service (no answer, socket error, closeCoapLinks) it closes the socket
 * and waits for that.
 */
export function leaveLink(link: CoapLink, user: LinkUser): Promise<void> | undefined {
  link.users.delete(user);
  if (link.users.size > 0) return undefined;
  if (links.get(link.key) !== link) return closeLink(link);
  link.socket.unref();
  link.idle = setTimeout(() => void closeLink(link), LINK_IDLE_MS);
  link.idle.unref();
  return undefined;
}

/** Closes the idle links and takes the busy ones out of service; the node calls it on close. */
export function closeCoapLinks(): Promise<void> {
  const closing: Array<Promise<void>> = [];
  for (const link of [...links.values()]) {
    links.delete(link.key);
    if (link.users.size === 0) closing.push(closeLink(link));
  }
  return Promise.all(closing).then(() => undefined);
}
