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

export interface EmulatedDevice {
  name: string;
  /** Profile name (the device type). */
  profile: string;
  credentials: EmulatedCredentials;
  gateway: boolean;
  /** Set once the device has been provisioned (pre-provisioned devices start false). */
  provisioned: boolean;
  /** Telemetry received through the device API, oldest first. */
  telemetry: unknown[];
  /** Client-side attributes received through the device API, merged (latest value wins). */
  attributes: Record<string, unknown>;
  /** Messages a gateway published on v1/gateway/* topics, oldest first. */
  gatewayMessages: Array<{ topic: string; payload: unknown }>;
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
  devices?: Array<{ name: string; profile: string; credentials: EmulatedCredentials }>;
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
