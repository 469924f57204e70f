/**
 * The device connections one config node holds and every device node on it shares: an MQTT
 * session per device (opened on first use, least recently used first out beyond the limit, closed
 * when idle), and stateless HTTP and CoAP requests. What ThingsBoard pushes to the sessions comes
 * out as `rpc` and `attributes` events; how the sessions fare, as `session` and `summary` events.
 *
 * Beside them, one connection per gateway (GatewayConnections): what its devices are sent comes
 * out as the same events, with `gateway` set.
 */

import { EventEmitter } from 'node:events';
import {
  DEVICE_TOPICS,
  checkMqttPublishSize,
  deviceDataText,
  deviceNameOf,
  rpcReplyText,
  rpcRequestId,
  rpcResponseTopic,
} from '../protocol/device-data';
import { DeviceError, invalidInput } from '../protocol/device-errors';
import { quotePrefix } from '../protocol/text';
import { postDeviceData } from './device-requests';
import { GatewayConnections } from './gateway-connections';
import { checkTransport } from './login';
import { MqttSession } from './mqtt-session';
import { DEVICE_SUBSCRIPTIONS, readDeviceMessage, settingsOf, timeoutOf } from './settings';
import type { InboundEvents, MqttSessionHooks, MqttSessionSettings } from './settings';
import type {
  CloseReport,
  ConnectionSummary,
  DeviceConnectionEvents,
  DeviceConnectionsOptions,
  DeviceLogin,
  DeviceSend,
  DeviceServer,
  GatewaySend,
  SessionCloseReason,
  SessionState,
} from './types';

export class DeviceConnections extends EventEmitter<DeviceConnectionEvents> {
  readonly server: DeviceServer;
  private readonly settings: MqttSessionSettings;
  private readonly idleMs: number;
  private readonly maxSessions: number;
  /** Open sessions, least recently used first. */
  private readonly sessions = new Map<string, MqttSession>();
  /** Sessions still ending: a new one for the same device waits, or the two would kick each other. */
  private readonly ending = new Map<string, Promise<number>>();
  private readonly requests = new Set<Promise<void>>();
  private readonly gateways: GatewayConnections;
  private sweeper: NodeJS.Timeout | undefined;
  private summaryDue = false;
  private closing: Promise<CloseReport> | undefined;
  private readonly inbound: InboundEvents = {
    rpc: (request) => this.emit('rpc', request),
    attributes: (update) => this.emit('attributes', update),
  };

  constructor(options: DeviceConnectionsOptions) {
    super();
    this.server = options.server;
    const { session, limits } = settingsOf(options);
    this.settings = session;
    this.idleMs = limits.idleMs;
    this.maxSessions = limits.maxSessions;
    const gatewaySettings = { ...session, window: limits.gatewayWindow };
    this.gateways = new GatewayConnections(
      this.server,
      gatewaySettings,
      (gateway) => ({
        ...this.inbound,
        state: (change) => this.emit('session', { deviceName: gateway, gateway, ...change }),
      }),
      // ThingsBoard keeps one session per device: the gateway's connection becomes the device's.
      (gateway) => {
        const session = this.sessions.get(gateway);
        if (session !== undefined) void this.endSession(gateway, session, 'disconnect', false);
      },
    );
  }

  /**
   * Sends one message as the device; resolves once the server accepted it (PUBACK for QoS 1,
   * written for QoS 0, HTTP 2xx, CoAP 2.xx), rejects with a DeviceError. Invalid input is refused
   * before anything is sent or queued.
   */
  send(request: DeviceSend): Promise<void> {
    try {
      if (this.closing !== undefined) throw this.closedError();
      const { login, transport, message } = request;
      const deviceName = deviceNameOf(request.deviceName);
      const qos = request.qos ?? 1;
      const timeoutMs = timeoutOf(request.timeoutMs);
      if (qos !== 0 && qos !== 1) throw invalidInput(`QoS must be 0 or 1, not ${String(qos)}.`);
      checkTransport(transport, login, this.server);
      if (message.kind === 'rpc-reply') {
        if (transport !== 'mqtt') {
          throw invalidInput(
            'An RPC reply goes back over MQTT, the way device in receives RPC requests; send it ' +
              'with transport mqtt.',
          );
        }
        const topic = rpcResponseTopic(rpcRequestId(message.id));
        return this.publish(
          deviceName,
          login,
          topic,
          rpcReplyText(message.payload),
          qos,
          timeoutMs,
        );
      }
      const text = deviceDataText(message.kind, message.payload);
      if (transport === 'mqtt') {
        return this.publish(deviceName, login, DEVICE_TOPICS[message.kind], text, qos, timeoutMs);
      }
      const sent = postDeviceData(this.server, transport, login, {
        deviceName,
        kind: message.kind,
        text,
        timeoutMs,
      });
      this.requests.add(sent);
      const forget = (): void => void this.requests.delete(sent);
      sent.then(forget, forget);
      return sent;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Replies to an RPC request on the device's session (or one opened with `login`). */
  replyRpc(
    deviceName: string,
    id: unknown,
    payload: unknown,
    options: { login?: DeviceLogin; qos?: 0 | 1; timeoutMs?: number } = {},
  ): Promise<void> {
    const name = deviceName.trim();
    const login =
      options.login ?? (this.sessions.get(name) ?? this.gateways.session(name))?.currentLogin;
    if (login === undefined) {
      const problem =
        `Device ${quotePrefix(deviceName, 64)} has no open connection to carry the reply to ` +
        `RPC request ${String(id)}, and no credentials were given to open one.`;
      return Promise.reject(new DeviceError('CONNECTION_ERROR', problem));
    }
    return this.send({
      deviceName,
      login,
      transport: 'mqtt',
      message: { kind: 'rpc-reply', id, payload },
      qos: options.qos,
      timeoutMs: options.timeoutMs,
    });
  }

  /**
   * Sends one message of a device behind a gateway, on the gateway's one connection (opened with
   * `gatewayLogin` on first use), always QoS 1: the device is announced first on each connection,
   * and messages arriving together share a publish. Resolves on the PUBACK of the publish that
   * carried it; a message that is invalid or too large is refused alone, before it joins one.
   */
  sendViaGateway(request: GatewaySend): Promise<void> {
    const sent = this.unlessClosing(() => this.gateways.send(request));
    // A device may have joined the gateway's count: nodes showing that count hear of it.
    void sent.then(
      () => this.scheduleSummary(),
      () => undefined,
    );
    return sent;
  }

  /** Replies to an RPC request a device behind the gateway received (`{"device","id","data"}`). */
  replyRpcViaGateway(
    gatewayName: string,
    deviceName: string,
    id: unknown,
    payload: unknown,
    options: { login?: DeviceLogin; timeoutMs?: number } = {},
  ): Promise<void> {
    return this.unlessClosing(() =>
      this.gateways.replyRpc(gatewayName, deviceName, id, payload, options),
    );
  }

  /** `v1/gateway/disconnect` for the device, once what was queued before it went out. */
  disconnectViaGateway(
    gatewayName: string,
    deviceName: string,
    options: { timeoutMs?: number } = {},
  ): Promise<void> {
    return this.unlessClosing(() =>
      this.gateways.disconnect(gatewayName, deviceName, options.timeoutMs),
    );
  }

  /** Opens the gateway's connection (or hands it a new login) without sending: for `device in`. */
  openGateway(gatewayName: string, login: DeviceLogin): void {
    if (this.closing !== undefined) throw this.closedError();
    this.gateways.open(gatewayName, login);
  }

  /** The state of the gateway's connection, and how many devices it announced so far. */
  gatewayState(gatewayName: string): { state: SessionState; devices: number } | undefined {
    const state = this.gateways.state(gatewayName);
    return state && { state, devices: this.gateways.deviceCount(gatewayName) };
  }

  /**
   * Opens the device's MQTT session (or hands a new login to the open one) without sending: for
   * credentials handed over, and for `device in`. Throws INVALID_INPUT for a login MQTT cannot use.
   */
  open(deviceName: string, login: DeviceLogin): void {
    if (this.closing !== undefined) throw this.closedError();
    deviceName = deviceNameOf(deviceName);
    checkTransport('mqtt', login, this.server);
    const gateway = this.gateways.session(deviceName);
    const ending = this.ending.get(deviceName);
    if (gateway !== undefined) gateway.updateLogin(login);
    else if (ending === undefined || this.sessions.has(deviceName))
      this.sessionFor(deviceName, login);
    else void ending.then(() => this.closing === undefined && this.sessionFor(deviceName, login));
  }

  /** Closes the device's session once what it holds has gone out (each within its deadline). */
  async disconnect(deviceName: string): Promise<void> {
    deviceName = deviceName.trim();
    const session = this.sessions.get(deviceName);
    if (session !== undefined) await this.endSession(deviceName, session, 'disconnect', false);
    else await this.ending.get(deviceName);
  }

  /** The state of the device's MQTT session (or its gateway connection), if one is open. */
  sessionState(deviceName: string): SessionState | undefined {
    return this.sessions.get(deviceName.trim())?.state ?? this.gateways.state(deviceName);
  }

  summary(): ConnectionSummary {
    const summary: ConnectionSummary = {
      open: this.sessions.size,
      connected: 0,
      reconnecting: 0,
      takenOver: 0,
      unauthorized: 0,
      queued: 0,
    };
    for (const session of this.sessions.values()) {
      summary.queued += session.waitingCount;
      if (session.state === 'connected') summary.connected++;
      else if (session.state === 'reconnecting') summary.reconnecting++;
      else if (session.state === 'taken-over') summary.takenOver++;
      else if (session.state === 'unauthorized') summary.unauthorized++;
    }
    return summary;
  }

  /**
   * Takes no new message; rejects the messages still waiting (counted in the report), lets those
   * written get their acknowledgement (at most their timeout) and the HTTP and CoAP requests in
   * flight finish, then closes every session.
   */
  close(): Promise<CloseReport> {
    this.closing ??= (async () => {
      if (this.sweeper !== undefined) clearInterval(this.sweeper);
      this.sweeper = undefined;
      const ends = [...this.sessions].map(([name, session]) =>
        this.endSession(name, session, 'close', true),
      );
      const counts = await Promise.all([...ends, this.gateways.close()]);
      await Promise.all([...this.ending.values()]);
      await Promise.allSettled([...this.requests]);
      return { unsent: counts.reduce((sum, count) => sum + count, 0) };
    })();
    return this.closing;
  }

  private publish(
    deviceName: string,
    login: DeviceLogin,
    topic: string,
    text: string,
    qos: 0 | 1,
    timeoutMs: number,
  ): Promise<void> {
    checkMqttPublishSize(topic, Buffer.byteLength(text, 'utf8'), {
      qos,
      protocolVersion: this.settings.protocolVersion,
    });
    const gateway = this.gateways.session(deviceName);
    if (gateway !== undefined) {
      gateway.updateLogin(login);
      return gateway.sendAsDevice(topic, text, qos, timeoutMs);
    }
    const ending = this.ending.get(deviceName);
    if (ending !== undefined && !this.sessions.has(deviceName)) {
      return ending.then(() => this.publish(deviceName, login, topic, text, qos, timeoutMs));
    }
    if (this.closing !== undefined) return Promise.reject(this.closedError());
    return this.sessionFor(deviceName, login).send(topic, text, qos, timeoutMs);
  }

  private sessionFor(deviceName: string, login: DeviceLogin): MqttSession {
    const open = this.sessions.get(deviceName);
    if (open !== undefined) {
      // Most recently used goes last.
      this.sessions.delete(deviceName);
      this.sessions.set(deviceName, open);
      open.updateLogin(login);
      return open;
    }
    const session = new MqttSession(
      deviceName,
      login,
      this.server,
      this.settings,
      this.hooksFor(deviceName),
    );
    this.sessions.set(deviceName, session);
    while (this.sessions.size > this.maxSessions) this.closeLeastRecentlyUsed(session);
    this.sweeper ??= setInterval(
      () => this.closeIdle(),
      Math.max(10, Math.min(this.idleMs / 4, 30_000)),
    );
    this.sweeper.unref();
    this.scheduleSummary();
    return session;
  }

  private hooksFor(deviceName: string): MqttSessionHooks {
    return {
      subscriptions: DEVICE_SUBSCRIPTIONS,
      onMessage: (topic, payload) => readDeviceMessage(deviceName, topic, payload, this.inbound),
      onState: (change) => {
        this.emit('session', { deviceName, ...change });
        this.scheduleSummary();
      },
    };
  }

  /** The least recently used idle session goes first; only when all are busy, the oldest. */
  private closeLeastRecentlyUsed(keep: MqttSession): void {
    let victim: [string, MqttSession] | undefined;
    for (const entry of this.sessions) {
      if (entry[1] === keep) continue;
      victim ??= entry;
      if (!entry[1].busy) {
        victim = entry;
        break;
      }
    }
    if (victim !== undefined) void this.endSession(victim[0], victim[1], 'limit', true);
  }

  private closeIdle(): void {
    const now = Date.now();
    for (const [name, session] of this.sessions) {
      if (!session.busy && now - session.lastActivity >= this.idleMs) {
        void this.endSession(name, session, 'idle', false);
      }
    }
  }

  private endSession(
    name: string,
    session: MqttSession,
    reason: SessionCloseReason,
    rejectWaiting: boolean,
  ): Promise<number> {
    if (this.sessions.get(name) === session) this.sessions.delete(name);
    if (this.sessions.size === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
    const ended = session.end(reason, rejectWaiting);
    this.ending.set(name, ended);
    const forget = (): void => {
      if (this.ending.get(name) === ended) this.ending.delete(name);
      this.scheduleSummary();
    };
    ended.then(forget, forget);
    return ended;
  }

  /** One summary per turn of the event loop, however many sessions changed in it. */
  private scheduleSummary(): void {
    if (this.summaryDue) return;
    this.summaryDue = true;
    setImmediate(() => {
      this.summaryDue = false;
      this.emit('summary', this.summary());
    });
  }

  private unlessClosing(send: () => Promise<void>): Promise<void> {
    try {
      if (this.closing !== undefined) throw this.closedError();
      return send();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  private closedError(): DeviceError {
    return new DeviceError(
      'CONNECTION_ERROR',
      'The device connections are closing (redeploy or shutdown); nothing more is sent.',
    );
  }
}
