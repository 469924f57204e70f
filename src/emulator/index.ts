/**
 * A local ThingsBoard provisioning server (MQTT, HTTP, CoAP) for tests, demos and offline flow
 * development. It shares no code with the client so that it catches the client's mistakes.
 */

import { CoapServer } from './coap-server';
import { ProvisioningDesk } from './desk';
import { HttpServer } from './http-server';
import { MqttServer } from './mqtt-server';
import { Tenant } from './state';
import type {
  EmulatedCredentials,
  EmulatedDevice,
  EmulatorOptions,
  EmulatorPorts,
  FaultSpec,
  ProfileSpec,
  RecordedRequest,
} from './types';

export type * from './types';

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

interface Closable {
  close(): Promise<void>;
}

export class Emulator {
  readonly host: string;
  readonly ports: EmulatorPorts = { mqtt: 0, http: 0, coap: 0 };
  private readonly tenant = new Tenant();
  private readonly desk: ProvisioningDesk;
  private readonly listeners: Closable[] = [];
  private stopping: Promise<void> | undefined;

  private constructor(private readonly options: EmulatorOptions) {
    this.host = options.host ?? '127.0.0.1';
    this.desk = new ProvisioningDesk(this.tenant, options.log, options.provisionTimeoutMs);
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
  addDevice(device: { name: string; profile: string; credentials: EmulatedCredentials }): void {
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
      await Promise.all(this.listeners.map((listener) => listener.close()));
    })();
    return this.stopping;
  }

  private async listen(): Promise<void> {
    const options = this.options;
    const context = {
      tenant: this.tenant,
      desk: this.desk,
      closeAfterAnswerMs: options.mqttCloseAfterAnswerMs ?? DEFAULT_CLOSE_AFTER_ANSWER_MS,
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
