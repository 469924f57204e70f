/** The emulator's programmatic face, used by the tests, the demo and the command line. */

export type ProvisionStrategy =
  /** "Allow to create new devices". */
  | 'allow-create'
  /** "Check for pre-provisioned devices", 4.2.1.1 and later: a second provisioning fails. */
  | 'check-pre-provisioned'
  /** "Check for pre-provisioned devices" on servers before 4.2.1.1: answers SUCCESS again. */
  | 'check-pre-provisioned-legacy'
  /** Provisioning disabled on the profile. */
  | 'disabled';

export interface ProfileSpec {
  name: string;
  provisionDeviceKey: string;
  provisionDeviceSecret: string;
  strategy: ProvisionStrategy;
}

export type EmulatedCredentials =
  | { credentialsType: 'ACCESS_TOKEN'; token: string }
  | { credentialsType: 'MQTT_BASIC'; clientId?: string; userName?: string; password?: string }
  /** The certificate body: PEM without BEGIN/END lines or newlines. */
  | { credentialsType: 'X509_CERTIFICATE'; certificate: string };

/**
 * A device of the tenant and what it sent. Plain data (it crosses process boundaries in tests); the
 * lists keep the newest `recordLimit` entries.
 */
export interface EmulatedDevice {
  name: string;
  /** Profile name (the device type). */
  profile: string;
  credentials: EmulatedCredentials;
  gateway: boolean;
  /** Set once the device has been provisioned (pre-provisioned devices start false). */
  provisioned: boolean;
  /** The gateway whose message created this device, for devices created that way. */
  createdByGateway?: string;
  /**
   * Telemetry payloads as sent, one per accepted message, oldest first: the parsed JSON of a
   * device's own message, or the array a gateway sent for it.
   */
  telemetry: unknown[];
  /** The same telemetry as the server stores it: one point per entry, values converted. */
  timeseries: TelemetryPoint[];
  /** Client-side attributes as sent, merged (latest value wins; null values are dropped). */
  attributes: Record<string, unknown>;
  /** Shared attributes set through the library API or the control route. */
  sharedAttributes: Record<string, unknown>;
  /** Replies to server-side RPC, as the device sent them, oldest first. */
  rpcReplies: RecordedRpcReply[];
  /** Messages a gateway published on v1/gateway/* topics and the server accepted, oldest first. */
  gatewayMessages: Array<{ topic: string; payload: unknown }>;
}

/** One time-series entry: its timestamp (server time when the device gave none) and values. */
export interface TelemetryPoint {
  ts: number;
  /** Numeric strings became numbers, objects and arrays stay JSON, null values are dropped. */
  values: Record<string, unknown>;
}

export interface RecordedRpcReply {
  /** The request id the reply names. */
  id: number;
  /** The method of the request it answers; absent when no request with this id was waiting. */
  method?: string;
  /** The reply as sent (the server forwards it as text). */
  payload: string;
  at: number;
}

/** A device's open session, as the server sees it. */
export interface SessionInfo {
  device: string;
  transport: 'mqtt';
  /** Present when the device speaks through a gateway: the gateway's name. */
  gateway?: string;
  /** The MQTT client id of the connection (the gateway's for a device behind one). */
  clientId: string;
  /** 4 for MQTT 3.1.1, 5 for MQTT 5 (3 for 3.1). */
  protocolVersion: number;
  remoteAddress: string;
  remotePort: number;
  connectedAt: number;
  /** Whether shared-attribute updates and RPC requests are pushed to this session. */
  subscriptions: { attributes: boolean; rpc: boolean };
}

export interface SendRpcOptions {
  /** How long the request lives before it fails (default 10000, as the server's REST API). */
  timeoutMs?: number;
}

/** A device as an administrator creates it (pre-provisioned: `provisioned` stays false). */
export interface DeviceSpec {
  name: string;
  profile: string;
  credentials: EmulatedCredentials;
  /** A gateway ("Is gateway" ticked): it may use the gateway API. Default false. */
  gateway?: boolean;
}

/** Faults for tests. Counters count provisioning requests on any transport. */
export interface FaultSpec {
  /** Milliseconds to wait before answering each provisioning request. */
  answerDelayMs?: number;
  /** Accept the first N requests and never answer them (connection kept open). */
  neverAnswerFirst?: number;
  /** Close the connection (MQTT/HTTP; CoAP: drop silently) without answering the first N. */
  closeWithoutAnswerFirst?: number;
  /** Answer HTTP 500 (empty) / CoAP 5.00 / MQTT PUBACK-then-close for the first N. */
  internalErrorFirst?: number;
  /** Never send SUBACK (MQTT servers before November 2024). */
  noSuback?: boolean;
  /** Create the device, then lose the answer (close without answering) for the first N. */
  loseAnswerFirst?: number;
}

export interface EmulatorOptions {
  /** Interface to listen on. Default 127.0.0.1. */
  host?: string;
  /** 0 picks a free port. Defaults 1883 / 8080 / 5683; pass 0 in tests. */
  mqttPort?: number;
  httpPort?: number;
  coapPort?: number;
  profiles?: ProfileSpec[];
  /** Pre-provisioned devices (for the check-pre-provisioned strategies). */
  devices?: DeviceSpec[];
  faults?: FaultSpec;
  /**
   * The server's processing timeout (default 10000, as ThingsBoard). A request whose answerDelayMs
   * reaches it is answered as an internal error at the timeout and still processed when the delay
   * ends, so the device can appear after the client was told the request failed.
   */
  provisionTimeoutMs?: number;
  /** Milliseconds after an MQTT provisioning answer before the server closes the connection. */
  mqttCloseAfterAnswerMs?: number;
  /** Called with one line per answered request (secrets masked). */
  log?: (line: string) => void;
  /**
   * Present: also listen for MQTTS and HTTPS (the plain listeners stay). With requestCert, a device
   * presenting a client certificate equal to its X509 credentials logs in over MQTTS.
   */
  tls?: EmulatorTlsOptions;
  /** Used only with tls. Defaults 8883 / 8443; pass 0 in tests. */
  mqttsPort?: number;
  httpsPort?: number;
  /**
   * How many entries `requests` and each list of a device (telemetry, timeseries, rpcReplies,
   * gatewayMessages) keep before the oldest are dropped. Default 10000.
   */
  recordLimit?: number;
  /** An MQTT connection that sends no CONNECT within this time is closed. Default 10000. */
  mqttConnectTimeoutMs?: number;
  /** An MQTT connection that sends no packet for this long is closed. Default 600000 (10 min). */
  mqttInactivityTimeoutMs?: number;
  /**
   * A device's own RPC request (v1/devices/me/rpc/request/{id}) is answered `{"error":"timeout"}`
   * after this long, as the server does when no rule chain replies. Default 60000.
   */
  clientRpcTimeoutMs?: number;
}

export interface EmulatorTlsOptions {
  key: string | Buffer;
  cert: string | Buffer;
  ca?: string | Buffer | Array<string | Buffer>;
  /** Ask clients for a certificate (not verified against a CA: matched to X509 credentials). */
  requestCert?: boolean;
}

/** The ports actually listened on (0 in the options becomes the port picked). */
export interface EmulatorPorts {
  mqtt: number;
  http: number;
  coap: number;
  /** Present only when tls was given. */
  mqtts?: number;
  https?: number;
}

/** One provisioning request as the emulator received it. */
export interface RecordedRequest {
  transport: 'mqtt' | 'http' | 'coap';
  /** The parsed JSON body, or undefined when it was not JSON. */
  body: unknown;
  /** The status answered, or a description of the transport-level outcome. */
  outcome: string;
  at: number;
}
