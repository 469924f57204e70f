/** TLS material from a tls-config node, turned into what node:tls takes. */

import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type { TlsOptions, TransportTarget } from './types';

function material(value: string | Buffer | undefined): string | Buffer | undefined {
  if (value === undefined) return undefined;
  return value.length === 0 ? undefined : value;
}

/**
 * Connection options for tls.connect / https.Agent; the server certificate is verified by default.
 * Without `host` (a shared agent), SNI is left to the agent unless the configuration names it.
 */
export function tlsConnectOptions(host: string | undefined, tls: TlsOptions): ConnectionOptions {
  const servername = tls.servername || (host === undefined || isIP(host) ? undefined : host);
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

/** A digest naming a TLS configuration without keeping its secrets as a map key. */
export function tlsIdentity(target: TransportTarget): string {
  const tls = target.tls;
  if (tls === undefined) return 'plain';
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
  return digest.digest('hex');
}
