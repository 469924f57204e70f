/**
 * A local ThingsBoard (provisioning, device API, gateway API over MQTT, HTTP, CoAP) for tests, demos
 * and offline flow development. It shares no code with the client so that it catches its mistakes.
 */

import { CoapServer } from './coap-server';
import { ProvisioningDesk } from './desk';
import { HttpServer } from './http-server';
import type { EmulatorControl } from './http-control';
import { MqttServer } from './mqtt-server';
import { Recorder } from './records';
import { EmulatorDeviceError, SessionRegistry } from './sessions';
import { Tenant } from './state';
import type {
  DeviceSpec,
  EmulatedDevice,
  EmulatorOptions,
  EmulatorPorts,
  FaultSpec,
  ProfileSpec,
  RecordedRequest,
  SendRpcOptions,
  SessionInfo,
} from './types';

export type * from './types';
export { EmulatorDeviceError, type DeviceErrorCode } from './sessions';

export type ListenerName = 'mqtt' | 'http' | 'coap' | 'mqtts' | 'https';

/** A listener could not start (typically EADDRINUSE): which one, on which port. */
export class EmulatorListenError extends Error {
  readonly code: string | undefined;
  constructor(
    readonly listener: ListenerName,
    readonly host: string,
    readonly port: number,
    cause: Error,
  ) {
    const code = (cause as NodeJS.ErrnoException).code;
    const what =
      code === 'EADDRINUSE'
        ? 'is already in use'
        : `could not be opened (${code ?? cause.message})`;
    super(`${listener.toUpperCase()} port ${port} on ${host} ${what}`, { cause });
    this.name = 'EmulatorListenError';
    this.code = code;
  }
}

const DEFAULT_PORTS = { mqtt: 1883, http: 8080, coap: 5683, mqtts: 8883, https: 8443 };
const DEFAULT_CLOSE_AFTER_ANSWER_MS = 60_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_INACTIVITY_TIMEOUT_MS = 600_000;
/** When no rule chain answers a device's own RPC. */
const DEFAULT_CLIENT_RPC_TIMEOUT_MS = 60_000;
/** The server's REST RPC API default. */
const DEFAULT_RPC_TIMEOUT_MS = 10_000;

interface Closable {
  close(): Promise<void>;
}

export class Emulator implements EmulatorControl {
  readonly host: string;
  readonly ports: EmulatorPorts = { mqtt: 0, http: 0, coap: 0 };
  private readonly tenant = new Tenant();
  private readonly desk: ProvisioningDesk;
  private readonly recorder: Recorder;
  private readonly registry: SessionRegistry;
  private readonly listeners: Closable[] = [];
  private stopping: Promise<void> | undefined;

  private constructor(private readonly options: EmulatorOptions) {
    this.host = options.host ?? '127.0.0.1';
    this.recorder = new Recorder(options.recordLimit);
    this.desk = new ProvisioningDesk(
      this.tenant,
      options.log,
      options.provisionTimeoutMs,
      this.recorder.limit,
    );
    this.registry = new SessionRegistry(this.tenant, this.recorder, (text) =>
      this.desk.note('api', text),
    );
    for (const profile of options.profiles ?? []) this.tenant.addProfile(profile);
    for (const device of options.devices ?? []) this.tenant.addDevice(device);
    this.desk.setFaults(options.faults ?? {});
  }

  /** Starts every listener; if one cannot start, the others are closed and the error says which. */
  static async start(options: EmulatorOptions = {}): Promise<Emulator> {
    const emulator = new Emulator(options);
    try {
      await emulator.listen();
    } catch (error) {
      await emulator.stop();
      throw error;
    }
    return emulator;
  }

  addProfile(profile: ProfileSpec): void {
    this.tenant.addProfile(profile);
  }

  /** A pre-provisioned device (not yet provisioned), for the check-pre-provisioned strategies. */
  addDevice(device: DeviceSpec): void {
    this.tenant.addDevice(device);
  }

  /** Replaces the faults and restarts their counts. */
  setFaults(faults: FaultSpec): void {
    this.desk.setFaults(faults);
  }

  device(name: string): EmulatedDevice | undefined {
    return this.tenant.devices.get(name);
  }

  get devices(): ReadonlyMap<string, EmulatedDevice> {
    return this.tenant.devices;
  }

  /**
   * Sends a server-side RPC to a device, as ThingsBoard's two-way RPC API: pushed to its session if
   * it takes RPC (an MQTT session subscribed to v1/devices/me/rpc/request/+, or a device behind a
   * gateway), else held until one does. Resolves with the device's reply (parsed JSON); rejects
   * with an EmulatorDeviceError: UNKNOWN_DEVICE (404), NOT_DELIVERED (409: no session took it before
   * the timeout), TIMEOUT (408: sent, no reply), BAD_REPLY (406: not JSON), STOPPED.
   */
  sendRpc(
    deviceName: string,
    method: string,
    params: unknown = {},
    options: SendRpcOptions = {},
  ): Promise<unknown> {
    return this.registry.sendRpc(
      deviceName,
      method,
      params,
      options.timeoutMs ?? DEFAULT_RPC_TIMEOUT_MS,
    );
  }

  /**
   * Sets shared attributes (null values are ignored) and pushes `{k:v}` to the device's session if
   * it takes attribute updates. Returns how many sessions got the push (0 or 1); throws an
   * EmulatorDeviceError UNKNOWN_DEVICE for a device that does not exist.
   */
  updateSharedAttributes(deviceName: string, values: Record<string, unknown>): number {
    const device = this.knownDevice(deviceName);
    const update: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(values)) {
      if (value === null) continue;
      device.sharedAttributes[key] = value;
      update[key] = value;
    }
    if (Object.keys(update).length === 0) return 0;
    return this.registry.pushAttributes(deviceName, update);
  }

  /** Deletes shared attributes and pushes `{"deleted":[keys]}`; returns as updateSharedAttributes. */
  deleteSharedAttributes(deviceName: string, keys: string[]): number {
    const device = this.knownDevice(deviceName);
    const deleted = keys.filter((key) =>
      Object.prototype.hasOwnProperty.call(device.sharedAttributes, key),
    );
    for (const key of deleted) Reflect.deleteProperty(device.sharedAttributes, key);
    if (deleted.length === 0) return 0;
    return this.registry.pushAttributes(deviceName, { deleted });
  }

  /** Every open device session, devices behind a gateway included. */
  sessions(): SessionInfo[] {
    return this.registry.list();
  }

  session(deviceName: string): SessionInfo | undefined {
    return this.registry.session(deviceName)?.info();
  }

  /**
   * Ends a device's session: its MQTT connection closes (a gateway's takes its devices along), a
   * device behind a gateway is dropped from it. False when the device has no session.
   */
  closeSession(deviceName: string): boolean {
    const session = this.registry.session(deviceName);
    if (session === undefined) return false;
    session.kick();
    return true;
  }

  /** Every provisioning request received, oldest first (bodies include secrets: memory only). */
  get requests(): readonly RecordedRequest[] {
    return this.desk.requests;
  }

  /** Peak number of provisioning requests being handled at once (delays and held ones count). */
  get maxConcurrent(): number {
    return this.desk.maxConcurrent;
  }

  get inFlight(): number {
    return this.desk.inFlight;
  }

  resetStats(): void {
    this.desk.resetStats();
  }

  /** Closes every listener and connection and cancels every timer. Safe to call twice. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.desk.stop();
      this.registry.stop();
      await Promise.all(this.listeners.map((listener) => listener.close()));
    })();
    return this.stopping;
  }

  private async listen(): Promise<void> {
    const options = this.options;
    const context = {
      tenant: this.tenant,
      desk: this.desk,
      recorder: this.recorder,
      registry: this.registry,
      control: this,
      closeAfterAnswerMs: options.mqttCloseAfterAnswerMs ?? DEFAULT_CLOSE_AFTER_ANSWER_MS,
      connectTimeoutMs: options.mqttConnectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      inactivityTimeoutMs: options.mqttInactivityTimeoutMs ?? DEFAULT_INACTIVITY_TIMEOUT_MS,
      clientRpcTimeoutMs: options.clientRpcTimeoutMs ?? DEFAULT_CLIENT_RPC_TIMEOUT_MS,
    };
    const mqtt = new MqttServer(context);
    this.ports.mqtt = await this.open('mqtt', mqtt, options.mqttPort);
    const http = new HttpServer(context);
    this.ports.http = await this.open('http', http, options.httpPort);
    const coapServer = new CoapServer(context);
    this.ports.coap = await this.open('coap', coapServer, options.coapPort);
    if (options.tls !== undefined) {
      const mqtts = new MqttServer(context, options.tls);
      this.ports.mqtts = await this.open('mqtts', mqtts, options.mqttsPort);
      const https = new HttpServer(context, options.tls);
      this.ports.https = await this.open('https', https, options.httpsPort);
    }
  }

  private knownDevice(name: string): EmulatedDevice {
    const device = this.tenant.devices.get(name);
    if (device === undefined) {
      throw new EmulatorDeviceError('UNKNOWN_DEVICE', `No device named ${JSON.stringify(name)}`);
    }
    return device;
  }

  private async open(
    name: ListenerName,
    listener: Closable & { listen(port: number, host: string): Promise<number> },
    port: number | undefined,
  ): Promise<number> {
    const wanted = port ?? DEFAULT_PORTS[name];
    try {
      const bound = await listener.listen(wanted, this.host);
      this.listeners.push(listener);
      return bound;
    } catch (error) {
      // A UDP socket exists even when its bind failed.
      await listener.close().catch(() => undefined);
      throw new EmulatorListenError(name, this.host, wanted, error as Error);
    }
  }
}
