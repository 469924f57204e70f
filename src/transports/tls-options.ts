/** TLS material from a tls-config node, turned into what node:tls takes. */

import { createHash } from 'node:crypto';
import { connect as connectTcp, isIP } from 'node:net';
import type { Socket } from 'node:net';
import { connect, createSecureContext } from 'node:tls';
import type { ConnectionOptions, SecureContext, TLSSocket } from 'node:tls';
import type { TlsOptions, TransportTarget } from './types';

function material(value: string | Buffer | undefined): string | Buffer | undefined {
  if (value === undefined) return undefined;
  return value.length === 0 ? undefined : value;
}

/** Connection options for tls.connect; the server certificate is verified by default. */
export function tlsConnectOptions(host: string, tls: TlsOptions): ConnectionOptions {
  const servername = tls.servername || (isIP(host) ? undefined : host);
  const options: ConnectionOptions = {
    rejectUnauthorized: tls.rejectUnauthorized ?? true,
  };
  const ca = material(tls.ca);
  const cert = material(tls.cert);
  const key = material(tls.key);
  if (ca !== undefined) options.ca = ca;
  if (cert !== undefined) options.cert = cert;
  if (key !== undefined) options.key = key;
  if (tls.passphrase) options.passphrase = tls.passphrase;
  // SNI takes a host name only: Node warns about an IP address there.
  if (servername && isIP(servername) === 0) options.servername = servername;
  if (tls.alpnProtocol) options.ALPNProtocols = [tls.alpnProtocol];
  return options;
}

/** The identity of each TLS configuration object seen: hashing its PEMs per connection costs. */
const identities = new WeakMap<TlsOptions, string>();

/** A digest naming a TLS configuration without keeping its secrets as a map key. */
export function tlsIdentity(target: TransportTarget): string {
  const tls = target.tls;
  if (tls === undefined) return 'plain';
  const known = identities.get(tls);
  if (known !== undefined) return known;
  const digest = createHash('sha256');
  for (const part of [
    tls.ca,
    tls.cert,
    tls.key,
    tls.passphrase,
    tls.servername,
    tls.alpnProtocol,
  ]) {
    const bytes = part === undefined ? '' : Buffer.isBuffer(part) ? part : Buffer.from(part);
    digest.update(String(bytes.length)).update(':').update(bytes).update('|');
  }
  digest.update(String(tls.rejectUnauthorized ?? true));
  const identity = digest.digest('hex');
  identities.set(tls, identity);
  return identity;
}

/** What connections with one TLS configuration share. */
interface TlsReuse {
  /** The CA, certificate and key, parsed (and the key decrypted) once. */
  context: SecureContext;
  /** The latest session each server (host|port) gave, offered for resumption. */
  sessions: Map<string, Buffer>;
}

const MAX_TLS_CONFIGURATIONS = 16;
const MAX_SESSIONS_PER_CONFIGURATION = 64;
const reuse = new Map<string, TlsReuse>();

/** Drops every kept context and session: the next connection parses its PEMs and shakes hands anew. */
export function forgetTlsSessions(): void {
  reuse.clear();
}

function keepAtMost<K, V>(map: Map<K, V>, limit: number): void {
  for (const key of map.keys()) {
    if (map.size <= limit) return;
    map.delete(key);
  }
}

function reuseFor(target: TransportTarget, options: TlsOptions): TlsReuse {
  const identity = tlsIdentity(target);
  let entry = reuse.get(identity);
  if (entry === undefined) {
    const { ca, cert, key, passphrase } = tlsConnectOptions(target.host, options);
    // Throws for a bad key or passphrase; nothing is kept then.
    entry = {
      context: createSecureContext({ ca, cert, key, passphrase }),
      sessions: new Map(),
    };
    reuse.set(identity, entry);
    keepAtMost(reuse, MAX_TLS_CONFIGURATIONS);
  }
  return entry;
}

/**
 * Opens a TLS connection: an MQTT exchange's, or one of an HTTPS pool's. Connections with the
 * same TLS configuration share its parsed material, and offer the session the same server gave
 * last, so that a device after the first needs neither the PEMs parsed again nor, where the
 * server resumes sessions, a full handshake.
 * A resumed session still carries the server's certificate and the result of its verification,
 * which Node checks again, host name included; a server that does not resume gets a full handshake.
 */
export function connectTls(target: TransportTarget, options: TlsOptions): TLSSocket {
  const entry = reuseFor(target, options);
  const peer = `${target.host}|${target.port}`;
  const offered = entry.sessions.get(peer);
  const { rejectUnauthorized, servername, ALPNProtocols } = tlsConnectOptions(target.host, options);
  const connection: ConnectionOptions = {
    host: target.host,
    port: target.port,
    secureContext: entry.context,
    rejectUnauthorized,
  };
  if (servername !== undefined) connection.servername = servername;
  if (ALPNProtocols !== undefined) connection.ALPNProtocols = ALPNProtocols;
  if (offered !== undefined) connection.session = offered;
  const socket = connect(connection);
  socket.on('session', (session: Buffer) => {
    entry.sessions.delete(peer);
    entry.sessions.set(peer, session);
    keepAtMost(entry.sessions, MAX_SESSIONS_PER_CONFIGURATION);
  });
  return socket;
}

/**
 * Opens the TCP connection of one exchange (MQTT) or pool (HTTP): through TLS when the target has
 * it. Requests leave as soon as they are written (no Nagle): MQTT sends SUBSCRIBE and PUBLISH back
 * to back, and a delayed ACK would hold the second.
 */
export function connectTo(target: TransportTarget): Socket {
  const socket = target.tls
    ? connectTls(target, target.tls)
    : connectTcp({ host: target.host, port: target.port });
  socket.setNoDelay(true);
  return socket;
}
