import type { ProvisionAnswer, ProvisionRequest } from '../protocol/types';

export interface TransportTraits {
  /** ThingsBoard's default port. */
  defaultPort: number;
  /** Whether it can go over TLS (DTLS is not offered for CoAP). */
  tls: boolean;
  /** The usual port with TLS, where it can go over TLS. */
  defaultTlsPort?: number;
}

const TRANSPORT_TABLE = {
  mqtt: { defaultPort: 1883, tls: true, defaultTlsPort: 8883 },
  // HTTPS is 443 on ThingsBoard Cloud.
  http: { defaultPort: 8080, tls: true, defaultTlsPort: 443 },
  coap: { defaultPort: 5683, tls: false },
} satisfies Record<string, TransportTraits>;

export type TransportName = keyof typeof TRANSPORT_TABLE;

/** Every transport and its ports: the one list that protocol, provisioner, nodes and editor read. */
export const TRANSPORTS: Readonly<Record<TransportName, Readonly<TransportTraits>>> =
  TRANSPORT_TABLE;

export const TRANSPORT_NAMES = Object.keys(TRANSPORTS) as readonly TransportName[];

export function isTransportName(value: unknown): value is TransportName {
  return typeof value === 'string' && Object.hasOwn(TRANSPORTS, value);
}

/** TLS material as a core tls-config node supplies it. */
export interface TlsOptions {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  passphrase?: string;
  /** Verify the server certificate. Defaults to true. */
  rejectUnauthorized?: boolean;
  servername?: string;
  alpnProtocol?: string;
}

export interface TransportTarget {
  host: string;
  port: number;
  /** Present: MQTT over TLS / HTTPS. Not supported for CoAP. */
  tls?: TlsOptions;
}

export interface TransportOptions {
  /** Aborting ends the exchange at once and rejects with an AbortError-classified ProvisionError. */
  signal?: AbortSignal;
  /** Absolute time (Date.now() scale) after which the attempt fails with TIMEOUT. */
  deadline: number;
}

/**
 * One provisioning exchange over one transport. Resolves with a SUCCESS answer; rejects with a
 * ProvisionError for everything else (server NOT_FOUND/FAILURE, timeouts, connection and protocol
 * errors). No retries here; every socket, timer and agent is released before it settles.
 */
export type Transport = (
  target: TransportTarget,
  request: ProvisionRequest,
  options: TransportOptions,
) => Promise<ProvisionAnswer>;
