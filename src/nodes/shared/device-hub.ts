/**
 * What a config node holds for its device nodes: one DeviceConnections (created on first use), the
 * credentials of the devices they send as (handed over, read from the store, or provisioned on
 * first use through one shared Provisioner), and the events of the sessions, forwarded. Device
 * nodes lease it; it closes once its config node has closed and no lease is left, since Node-RED
 * closes a config node and the nodes using it in parallel.
 */

import { EventEmitter } from 'node:events';
import type {
  ConnectionSummary,
  DeviceConnectionEvents,
  DeviceConnections,
  DeviceLogin,
  DeviceServer,
  GeneratedKeys,
} from '../../devices';
import { DeviceError, isDeviceError } from '../../protocol/device-errors';
import { ProvisionError, errorText } from '../../protocol/errors';
import type { ProvisionAnswer } from '../../protocol/types';
import { Provisioner } from '../../provisioner';
import { deviceKey } from '../../store';
import type { CredentialStore, StoreLease, StoreWarningListener, StoredEntry } from '../../store';
import type { TransportName, TransportTarget } from '../../transports/types';
import { useTransports } from './transport-users';

type DevicesModule = typeof import('../../devices');
let devicesModule: DevicesModule | undefined;

/** Loaded when a device first connects: a flow without device nodes never loads mqtt.js. */
function devices(): DevicesModule {
  devicesModule ??= require('../../devices') as DevicesModule;
  return devicesModule;
}

/** The config node as the hub sees it: its server, its keys and its store. */
export interface HubServer {
  readonly host: string;
  readonly ports: Record<TransportName, number>;
  readonly usetls: boolean;
  target(transport: TransportName): TransportTarget;
  keys(): { provisionDeviceKey?: string; provisionDeviceSecret?: string };
  useStore(onWarning: StoreWarningListener): StoreLease;
}

export interface HubOptions {
  /** Told about the store's damage and failed writes, as the provision nodes are. */
  onStoreWarning: StoreWarningListener;
  /** Told once, on closing, how many messages were still waiting and were not sent. */
  onUnsent(count: number): void;
  /**
   * On closing, how long provisioning requests already at the server may go on, so that their
   * answers are kept (closeGraceMs); 0 aborts them at once.
   */
  closeGraceMs: number;
}

/** How a device's credentials are found when none are known yet. */
export interface LoginRequest {
  /** Provision the device now when the store has none. */
  provision: boolean;
  /** The transport provisioning goes over: the device node's own. */
  transport: TransportName;
  /** Provision it as a gateway ("Is gateway" ticked): for a device out node through a gateway. */
  gateway?: boolean;
  timeoutMs: number;
}

/** A device node's hold on the hub: release it once, when the node stops taking messages. */
export interface DeviceHubLease {
  readonly hub: DeviceHub;
  release(): void;
}

function capitalised(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Provisioning on first use: retries as the provision node's default, concurrency likewise. */
const FIRST_USE = { retries: 2, concurrency: 8 };

export class DeviceHub extends EventEmitter<DeviceConnectionEvents> {
  private connectionsMade: DeviceConnections | undefined;
  private releaseTransports: (() => Promise<void>) | undefined;
  private provisioner: Provisioner | undefined;
  private storeLease: StoreLease | undefined;
  private storeReady: Promise<void> | undefined;
  /** Credentials known per device name: handed over, read from the store or provisioned. */
  private readonly logins = new Map<string, DeviceLogin>();
  /** Lookups under way per device: later messages wait on the same one, so they stay in order. */
  private readonly lookups = new Map<string, Promise<DeviceLogin | undefined>>();
  private leases = 0;
  private ownerClosed: (() => void) | undefined;
  private closed: Promise<void> | undefined;
  private shutDown = false;

  constructor(
    private readonly server: HubServer,
    private readonly options: HubOptions,
  ) {
    super();
    // Every device node on the config node listens here.
    this.setMaxListeners(0);
  }

  lease(): DeviceHubLease {
    this.leases++;
    let released = false;
    return {
      hub: this,
      release: () => {
        if (released) return;
        released = true;
        this.leases--;
        this.shutDownWhenIdle();
      },
    };
  }

  /** The connections, made on first use; INVALID_INPUT when the server settings cannot be used. */
  connections(): DeviceConnections {
    if (this.connectionsMade !== undefined) return this.connectionsMade;
    if (this.shutDown) {
      throw new DeviceError(
        'CONNECTION_ERROR',
        'The device connections are closing (redeploy or shutdown); nothing more is sent.',
      );
    }
    const made = new (devices().DeviceConnections)({ server: this.deviceServer() });
    this.releaseTransports ??= useTransports();
    made.on('rpc', (request) => this.emit('rpc', request));
    made.on('attributes', (update) => this.emit('attributes', update));
    made.on('session', (change) => this.emit('session', change));
    made.on('summary', (summary) => this.emit('summary', summary));
    this.connectionsMade = made;
    return made;
  }

  summary(): ConnectionSummary {
    return (
      this.connectionsMade?.summary() ?? {
        open: 0,
        connected: 0,
        reconnecting: 0,
        takenOver: 0,
        unauthorized: 0,
        queued: 0,
      }
    );
  }

  /** The known credentials of a device, without waiting: the fast path of every message. */
  knownLogin(deviceName: string): DeviceLogin | undefined {
    return this.logins.get(deviceName);
  }

  /** Credentials a provision node handed over: kept, and the device's MQTT session opened. */
  handOver(
    deviceName: string,
    answer: ProvisionAnswer,
    generated: GeneratedKeys | undefined,
    openMqtt: boolean,
  ): void {
    const login = devices().loginFromAnswer(answer, generated);
    this.logins.set(deviceName, login);
    if (openMqtt) this.connections().open(deviceName, login);
  }

  /** Closes the device's MQTT session, once what it holds has gone out; nothing when none is open. */
  /** The state of a gateway's connection and the devices it announced; nothing when none is open. */
  gatewayState(gatewayName: string): ReturnType<DeviceConnections['gatewayState']> {
    return this.connectionsMade?.gatewayState(gatewayName);
  }

  disconnect(deviceName: string): Promise<void> {
    return this.connectionsMade?.disconnect(deviceName) ?? Promise.resolve();
  }

  /** Forgets credentials the server refused, so the next message reads the store again. */
  forget(deviceName: string, login: DeviceLogin): void {
    if (this.logins.get(deviceName) === login) this.logins.delete(deviceName);
  }

  /**
   * The device's credentials: known, stored, or (when asked) provisioned now with a generated
   * access token. Undefined when none are stored and provisioning was not asked for. Rejects with
   * a DeviceError, or the ProvisionError of provisioning on first use.
   */
  loginFor(deviceName: string, request: LoginRequest): Promise<DeviceLogin | undefined> {
    const known = this.logins.get(deviceName);
    if (known !== undefined) return Promise.resolve(known);
    let lookup = this.lookups.get(deviceName);
    if (lookup === undefined) {
      lookup = this.lookUp(deviceName, request);
      this.lookups.set(deviceName, lookup);
      const done = (): void => void this.lookups.delete(deviceName);
      lookup.then(done, done);
    }
    // A waiting message that asks to provision must not settle for "nothing stored".
    return lookup.then((login) =>
      login === undefined && request.provision && !this.logins.has(deviceName)
        ? this.loginFor(deviceName, request)
        : (login ?? this.logins.get(deviceName)),
    );
  }

  /** Called by the config node's close; resolves once every lease is released and all is closed. */
  close(): Promise<void> {
    this.closed ??= new Promise<void>((resolve) => {
      this.ownerClosed = resolve;
      this.shutDownWhenIdle();
    });
    return this.closed;
  }

  private async lookUp(
    deviceName: string,
    request: LoginRequest,
  ): Promise<DeviceLogin | undefined> {
    const { provisionDeviceKey, provisionDeviceSecret } = this.server.keys();
    // Without the profile's key no stored entry can be found: only handed-over credentials work.
    if (!provisionDeviceKey && !request.provision) return undefined;
    const store = await this.readyStore();
    if (provisionDeviceKey) {
      const entry = await this.stored(store, provisionDeviceKey, deviceName);
      if (entry !== undefined) return this.remember(deviceName, entry.answer, entry.generated);
      if (!request.provision) return undefined;
    }
    this.releaseTransports ??= useTransports();
    this.provisioner ??= new Provisioner({ concurrency: FIRST_USE.concurrency, store });
    // Provisioning checks the key and secret and says what is missing.
    const result = await this.provisioner.provision({
      transport: request.transport,
      target: this.server.target(request.transport),
      provisionDeviceKey: provisionDeviceKey ?? '',
      provisionDeviceSecret: provisionDeviceSecret ?? '',
      deviceName,
      credentialsMode: 'ACCESS_TOKEN',
      timeoutMs: request.timeoutMs,
      retries: FIRST_USE.retries,
      persist: true,
      gateway: request.gateway === true,
    });
    return this.remember(deviceName, result.answer, result.generated);
  }

  private async stored(
    store: CredentialStore,
    provisionDeviceKey: string,
    deviceName: string,
  ): Promise<StoredEntry | undefined> {
    try {
      return await store.get(deviceKey(this.server.host, provisionDeviceKey, deviceName));
    } catch (err) {
      throw new DeviceError(
        'NOT_PROVISIONED',
        `${capitalised(store.describe())} could not be read: ${errorText(err)}`,
      );
    }
  }

  private remember(
    deviceName: string,
    answer: ProvisionAnswer,
    generated: GeneratedKeys | undefined,
  ): DeviceLogin {
    const login = devices().loginFromAnswer(answer, generated);
    // Credentials handed over meanwhile are newer than the store's.
    const handed = this.logins.get(deviceName);
    if (handed !== undefined) return handed;
    this.logins.set(deviceName, login);
    return login;
  }

  private async readyStore(): Promise<CredentialStore> {
    if (this.shutDown) throw new DeviceError('CONNECTION_ERROR', 'The node is closing.');
    if (this.storeLease === undefined) {
      try {
        this.storeLease = this.server.useStore(this.options.onStoreWarning);
      } catch (err) {
        throw new DeviceError(
          'NOT_PROVISIONED',
          `The credential store could not be opened, so no stored credentials can be read: ` +
            `${errorText(err)}`,
        );
      }
    }
    const { store } = this.storeLease;
    this.storeReady ??= store.ready();
    try {
      await this.storeReady;
    } catch (err) {
      // Asked again next time: a lock let go, or a file replaced, may let it load.
      this.storeReady = undefined;
      throw new DeviceError(
        'NOT_PROVISIONED',
        `${capitalised(store.describe())} could not be read: ${errorText(err)}`,
      );
    }
    return store;
  }

  private deviceServer(): DeviceServer {
    const { host, ports, usetls } = this.server;
    try {
      // target() checks the host and port, and builds the TLS options of a tls-config node.
      const { tls } = this.server.target('mqtt');
      return usetls && tls !== undefined ? { host, ports, tls } : { host, ports };
    } catch (err) {
      if (isDeviceError(err)) throw err;
      throw new DeviceError(
        err instanceof ProvisionError && err.status === 'INVALID_INPUT'
          ? 'INVALID_INPUT'
          : 'CONNECTION_ERROR',
        errorText(err),
      );
    }
  }

  private shutDownWhenIdle(): void {
    const resolve = this.ownerClosed;
    if (resolve === undefined || this.leases > 0 || this.shutDown) return;
    this.shutDown = true;
    this.ownerClosed = undefined;
    void (async () => {
      const [report] = await Promise.all([
        this.connectionsMade?.close().catch(() => undefined),
        // A device the server is creating now would be orphaned if its answer were dropped.
        this.provisioner?.close(this.options.closeGraceMs).catch(() => undefined),
      ]);
      if (report !== undefined && report.unsent > 0) this.options.onUnsent(report.unsent);
      await this.releaseTransports?.();
      this.storeLease?.release();
      this.logins.clear();
      resolve();
    })();
  }
}
