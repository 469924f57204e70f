/**
 * The gateway sessions one config node holds: one connection per gateway, opened on first use and
 * kept until the node closes (no idle or least-recently-used closing: a gateway speaks for many
 * devices, and `device in` listens on it).
 */

import { DeviceError } from '../protocol/device-errors';
import { deviceNameOf } from '../protocol/device-data';
import { deviceTypeOf, gatewayNameOf } from '../protocol/gateway-data';
import { quotePrefix } from '../protocol/text';
import { GatewaySession } from './gateway-session';
import type { GatewayEvents } from './gateway-session';
import { checkTransport } from './login';
import { DEFAULT_TIMEOUT_MS, timeoutOf } from './settings';
import type { MqttSessionSettings } from './settings';
import type { DeviceLogin, DeviceServer, GatewaySend, SessionState } from './types';

export class GatewayConnections {
  private readonly gateways = new Map<string, GatewaySession>();
  /** The last device type given, as checked. */
  private lastType: string | undefined;

  constructor(
    private readonly server: DeviceServer,
    /** With the gateways' window. */
    private readonly settings: MqttSessionSettings,
    private readonly eventsFor: (gatewayName: string) => GatewayEvents,
    /** Told before a gateway's connection opens: a device session of the same name must end. */
    private readonly onOpen: (gatewayName: string) => void,
  ) {}

  /** The gateway's session by its exact name, which also carries its own device's messages. */
  session(gatewayName: string): GatewaySession | undefined {
    return this.gateways.get(gatewayName);
  }

  send(request: GatewaySend): Promise<void> {
    const timeoutMs = timeoutOf(request.timeoutMs);
    const gateway = this.sessionFor(request.gatewayName, request.gatewayLogin, timeoutMs);
    // Names seen before were checked then: a flow sends for the same devices again and again.
    const deviceName = gateway.isKnown(request.deviceName)
      ? request.deviceName
      : deviceNameOf(request.deviceName);
    const deviceType =
      request.deviceType !== undefined && request.deviceType === this.lastType
        ? this.lastType
        : (this.lastType = deviceTypeOf(request.deviceType));
    return gateway.send(deviceName, deviceType, request.message, timeoutMs);
  }

  replyRpc(
    gatewayName: string,
    deviceName: string,
    id: unknown,
    payload: unknown,
    options: { login?: DeviceLogin; timeoutMs?: number },
  ): Promise<void> {
    const gatewayLogin = options.login ?? this.gateways.get(gatewayName.trim())?.currentLogin;
    if (gatewayLogin === undefined) {
      throw new DeviceError(
        'CONNECTION_ERROR',
        `Gateway ${quotePrefix(gatewayName, 64)} has no open connection to carry the reply to ` +
          `RPC request ${String(id)} of device ${quotePrefix(deviceName, 64)}, and no ` +
          'credentials were given to open one.',
      );
    }
    return this.send({
      gatewayName,
      gatewayLogin,
      deviceName,
      message: { kind: 'rpc-reply', id, payload },
      timeoutMs: options.timeoutMs,
    });
  }

  /** Nothing to do when the gateway has no connection: the server has no session for the device. */
  disconnect(gatewayName: string, deviceName: string, timeoutMs?: number): Promise<void> {
    const gateway = this.gateways.get(gatewayNameOf(gatewayName));
    if (gateway === undefined) return Promise.resolve();
    return gateway.disconnectDevice(deviceNameOf(deviceName), timeoutOf(timeoutMs));
  }

  open(gatewayName: string, login: DeviceLogin): void {
    this.sessionFor(gatewayName, login, DEFAULT_TIMEOUT_MS);
  }

  state(gatewayName: string): SessionState | undefined {
    return this.gateways.get(gatewayName.trim())?.state;
  }

  /** Devices announced through the gateway so far (0 when it has no connection). */
  deviceCount(gatewayName: string): number {
    return this.gateways.get(gatewayName.trim())?.deviceCount ?? 0;
  }

  /** Ends every gateway as DeviceConnections.close does; resolves with the messages never sent. */
  async close(): Promise<number> {
    const ends = [...this.gateways.values()].map((gateway) => gateway.end('close', true));
    this.gateways.clear();
    const counts = await Promise.all(ends);
    return counts.reduce((sum, count) => sum + count, 0);
  }

  private sessionFor(rawName: unknown, login: DeviceLogin, timeoutMs: number): GatewaySession {
    checkTransport('mqtt', login, this.server);
    // Keys are checked, trimmed names: a hit needs no checking.
    const name =
      typeof rawName === 'string' && this.gateways.has(rawName) ? rawName : gatewayNameOf(rawName);
    const open = this.gateways.get(name);
    if (open !== undefined) {
      open.updateLogin(login);
      return open;
    }
    this.onOpen(name);
    const gateway = new GatewaySession(
      name,
      login,
      this.server,
      this.settings,
      this.eventsFor(name),
      timeoutMs,
    );
    this.gateways.set(name, gateway);
    return gateway;
  }
}
