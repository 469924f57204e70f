/** The vocabulary of the device connections a config node holds: what goes in, what comes out. */

import type { DeviceDataKind } from '../protocol/device-data';
import type { TlsOptions, TransportName } from '../transports/types';

/**
 * How a device logs in. Access tokens work on every transport; MQTT basic and X.509 over MQTT only
 * (X.509 needs the certificate's private key, which only a certificate this package made has).
 */
export type DeviceLogin =
  | { type: 'ACCESS_TOKEN'; token: string }
  | { type: 'MQTT_BASIC'; clientId?: string; username?: string; password?: string }
  | { type: 'X509_CERTIFICATE'; certificate: string; privateKey: string; passphrase?: string };

/** The ThingsBoard server of a config node. */
export interface DeviceServer {
  host: string;
  ports: Record<TransportName, number>;
  /** Present: MQTT over TLS and HTTPS (CoAP over DTLS is not offered). */
  tls?: TlsOptions;
}

/** One message a device sends. An RPC reply goes over MQTT, the way its request came. */
export type DeviceMessage =
  { kind: DeviceDataKind; payload: unknown } | { kind: 'rpc-reply'; id: unknown; payload: unknown };

export interface DeviceSend {
  deviceName: string;
  login: DeviceLogin;
  transport: TransportName;
  message: DeviceMessage;
  /** MQTT QoS: 1 (default) resolves on PUBACK, 0 once written to the connection. */
  qos?: 0 | 1;
  /** Milliseconds from the call for the server to accept the message; default 10 000. */
  timeoutMs?: number;
}

/** One message of a device behind a gateway, sent on the gateway's connection (always QoS 1). */
export interface GatewaySend {
  gatewayName: string;
  /** The gateway device's own credentials. */
  gatewayLogin: DeviceLogin;
  deviceName: string;
  /** The device profile ThingsBoard creates the device with when it does not exist; `default`. */
  deviceType?: string;
  message: DeviceMessage;
  /** Milliseconds from the call for the server to accept the message; default 10 000. */
  timeoutMs?: number;
}

/** A server-side RPC request pushed to a device. */
export interface InboundRpc {
  deviceName: string;
  id: number;
  method: string;
  params: unknown;
  /** For a device behind a gateway: the gateway's name. */
  gateway?: string;
}

/** Shared attributes ThingsBoard pushed: `{key: value}`, or `{deleted: [keys]}`. */
export interface SharedAttributesUpdate {
  deviceName: string;
  data: Record<string, unknown>;
  /** For a device behind a gateway: the gateway's name. */
  gateway?: string;
}

/**
 * Where one device's MQTT session stands. `reconnecting`: waiting to try again after a lost or
 * failed connection; `taken-over`: another client connected as the device and ThingsBoard closed
 * this session, so it waits longer; `unauthorized`: the credentials were refused, and nothing is
 * tried until new ones are handed over; `closed`: gone (idle, limit, disconnect, close).
 */
export type SessionState =
  'connecting' | 'connected' | 'reconnecting' | 'taken-over' | 'unauthorized' | 'closed';

export type SessionCloseReason = 'idle' | 'limit' | 'disconnect' | 'close';

export interface SessionChange {
  /** The device, or for a gateway's connection the gateway (then `gateway` is set too). */
  deviceName: string;
  gateway?: string;
  state: SessionState;
  /** Why, in words fit for a log line or a status (never a credential). */
  reason?: string;
  /** For reconnecting and taken-over: the wait before the next attempt. */
  retryInMs?: number;
  closedBecause?: SessionCloseReason;
}

/** Counts over every session, for a node's status. */
export interface ConnectionSummary {
  open: number;
  connected: number;
  reconnecting: number;
  takenOver: number;
  unauthorized: number;
  /** Messages waiting, not yet written, over every session. */
  queued: number;
}

export interface DeviceConnectionEvents {
  rpc: [request: InboundRpc];
  attributes: [update: SharedAttributesUpdate];
  session: [change: SessionChange];
  summary: [summary: ConnectionSummary];
}

export interface CloseReport {
  /** Messages still waiting when close() was called: rejected, never sent. */
  unsent: number;
}

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
}

export interface DeviceConnectionsOptions {
  server: DeviceServer;
  /** 4 (MQTT 3.1.1, default) or 5. */
  protocolVersion?: 4 | 5;
  keepaliveSeconds?: number;
  /** An MQTT session without traffic this long is closed; default 10 minutes. */
  idleMs?: number;
  /** Beyond this many open MQTT sessions the least recently used is closed; default 1 000. */
  maxSessions?: number;
  /** Messages waiting per device before QUEUE_FULL; default 1 000. */
  maxQueued?: number;
  /** Messages written per device and not yet acknowledged, at most; default 32. */
  window?: number;
  /** Shared publishes a gateway has written and not yet had acknowledged, at most; default 2. */
  gatewayWindow?: number;
  /** Milliseconds for a CONNACK; default 10 000. */
  connectTimeoutMs?: number;
  /** Waits between reconnection attempts (doubled each time, half of it random). */
  reconnect?: BackoffPolicy;
  /** Waits after another client took the session over, and what counts as a short session. */
  takeover?: BackoffPolicy & { shortSessionMs: number };
  /** Jitter source; default Math.random. */
  random?: () => number;
}
