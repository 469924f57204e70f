/**
 * One long-lived MQTT session, a device's or a gateway's (its topics, what it does with inbound
 * messages and what it announces on each connection come from the hooks). mqtt.js speaks the protocol on each connection (CONNECT,
 * keep-alive, packet ids, PUBACK matching, SUBSCRIBE); this class owns what lasts across
 * connections: the ordered queue, the window of unacknowledged messages, reconnecting with backoff,
 * and telling a session taken over by another client from a lost one.
 *
 * Why reconnect by hand with a new mqtt.js client per connection rather than its reconnectPeriod:
 * mqtt.js waits a fixed period (no backoff, no jitter), and on its own reconnect either drops the
 * unacknowledged QoS 1 messages with their store or resends ones whose callbacks a forced clean-up
 * already failed. Here each written message is either acknowledged on its connection or written
 * again on the next one, in order, until its deadline.
 */

import type { MqttClient } from 'mqtt';
import { DeviceError } from '../protocol/device-errors';
import { quotePrefix } from '../protocol/text';
import { connectionFailure } from '../transports/exchange';
import type { Endpoint } from '../transports/exchange';
import { connectTo } from '../transports/tls-options';
import type { TransportTarget } from '../transports/types';
import { mqttTarget, sameLogin } from './login';
import { backoffWait, clientOptions } from './settings';
import type { MqttSessionHooks, MqttSessionSettings } from './settings';
import { OutgoingQueue } from './outgoing-queue';
import type { Announcement, ComposedPayload, Outgoing } from './outgoing-queue';
import {
  clientProblem,
  connectionLostError,
  copyError,
  expiredError,
  fromTransportError,
  notSentError,
  pubackError,
  queueFullError,
  takenOverError,
} from './session-errors';
import type {
  DeviceLogin,
  DeviceServer,
  SessionChange,
  SessionCloseReason,
  SessionState,
} from './types';

/** MQTT 5 DISCONNECT reason: another connection took the session over. */
const SESSION_TAKEN_OVER = 0x8e;
/** How long an ending connection may take to close after its DISCONNECT. */
const DISCONNECT_GRACE_MS = 1000;

type MqttModule = typeof import('mqtt');
let mqttModule: MqttModule | undefined;

/** Loaded with the first session, so a config node without device nodes never loads it. */
function mqtt(): MqttModule {
  mqttModule ??= require('mqtt') as MqttModule;
  return mqttModule;
}

export class MqttSession {
  state: SessionState = 'connecting';
  /** Date.now() of the last message either way (or of opening). */
  lastActivity = Date.now();
  readonly endpoint: Endpoint;
  private login: DeviceLogin;
  private target: TransportTarget;
  private client: MqttClient | undefined;
  private readonly queue: OutgoingQueue;
  private connectedAt = 0;
  private attempts = 0;
  private shortSessions = 0;
  private takeovers = 0;
  /** Set on a connection when the server named a take-over (MQTT 5). */
  private takenOverNow = false;
  /** What went wrong last: a connection failure or refusal, for the texts of expired messages. */
  private lastProblem: DeviceError | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private ending: Promise<number> | undefined;
  private endReason: SessionCloseReason = 'close';
  private pumping = false;
  private pumpDue = false;

  constructor(
    readonly name: string,
    login: DeviceLogin,
    private readonly server: DeviceServer,
    private readonly settings: MqttSessionSettings,
    private readonly hooks: MqttSessionHooks,
  ) {
    this.login = login;
    this.target = mqttTarget(server, login);
    this.endpoint = { transport: 'MQTT', host: server.host, port: server.ports.mqtt };
    this.queue = new OutgoingQueue((entry, written) => this.expired(entry, written));
    this.connect();
  }

  /** Messages waiting to be written. */
  get waitingCount(): number {
    return this.queue.waitingCount;
  }

  /** Whether any message is waiting or unacknowledged. */
  get busy(): boolean {
    return !this.queue.empty;
  }

  get closed(): boolean {
    return this.ending !== undefined;
  }

  /** The credentials the session connects with. */
  get currentLogin(): DeviceLogin {
    return this.login;
  }

  /** Queues one PUBLISH; settles on PUBACK (QoS 1) or once written (QoS 0), or with a DeviceError. */
  send(topic: string, text: string, qos: 0 | 1, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.enqueue(topic, text, qos, timeoutMs, (err) =>
        err === undefined ? resolve() : reject(err),
      );
    });
  }

  /** send() with a callback, called exactly once and synchronously where it can be. */
  enqueue(
    topic: string,
    body: string | ComposedPayload,
    qos: 0 | 1,
    timeoutMs: number,
    settle: (err?: DeviceError) => void,
  ): void {
    this.lastActivity = Date.now();
    if (this.state === 'unauthorized' && this.lastProblem !== undefined) {
      return settle(copyError(this.lastProblem));
    }
    if (this.queue.waitingCount >= this.settings.maxQueued) {
      return settle(queueFullError(this.label, this.settings.maxQueued, this.state));
    }
    this.queue.add({
      topic,
      body,
      qos,
      deadline: Date.now() + timeoutMs,
      timeoutMs,
      resolve: () => settle(),
      reject: settle,
      settled: false,
      connection: undefined,
      messageId: 0,
    });
    if (this.hooks.coalesceWrites !== true) this.pump();
    else if (!this.pumpDue) {
      this.pumpDue = true;
      setImmediate(() => {
        this.pumpDue = false;
        this.pump();
      });
    }
  }

  /**
   * Gives up on the connection for a reason only the caller can see (a gateway the server ignores):
   * everything queued fails with `problem`, as do later messages, until new credentials come.
   */
  refuse(problem: DeviceError): void {
    const client = this.client;
    if (client === undefined) return;
    this.client = undefined;
    void this.endClient(client);
    this.giveUp(problem);
  }

  /** New credentials: a refused session tries again with them; a connected one reconnects. */
  updateLogin(login: DeviceLogin): void {
    if (sameLogin(login, this.login) || this.ending !== undefined) return;
    this.login = login;
    this.target = mqttTarget(this.server, login);
    this.attempts = 0;
    this.lastProblem = undefined;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const client = this.client;
    this.client = undefined;
    if (client !== undefined) void this.endClient(client);
    this.queue.requeueWritten();
    this.connect();
  }

  /**
   * Ends the session. With `rejectWaiting` the messages not yet written are rejected at once and
   * counted; otherwise they still go out within their deadlines. Written ones get their
   * acknowledgement or their timeout; then DISCONNECT. Resolves with the count of unsent messages.
   */
  end(reason: SessionCloseReason, rejectWaiting: boolean): Promise<number> {
    this.ending ??= (async () => {
      this.endReason = reason;
      const unsent = rejectWaiting ? this.queue.rejectWaiting(() => this.closedError(reason)) : 0;
      // Nothing more can go out without a connection and with none coming.
      if (this.client === undefined && this.retryTimer === undefined) {
        this.queue.rejectAll(() => this.closedError(reason));
      }
      await this.queue.whenEmpty();
      this.queue.dispose();
      if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      const client = this.client;
      this.client = undefined;
      if (client !== undefined) await this.endClient(client);
      this.setState('closed', { closedBecause: reason });
      return unsent;
    })();
    return this.ending;
  }

  private get label(): string {
    return quotePrefix(this.name, 64);
  }

  private connect(): void {
    this.retryTimer = undefined;
    this.takenOverNow = false;
    const target = this.target;
    let client: MqttClient;
    try {
      client = new (mqtt().MqttClient)(
        () => connectTo(target),
        clientOptions(this.login, this.settings),
      );
    } catch (err) {
      // TLS material that cannot be used (a bad key or passphrase) fails before any socket.
      this.lastProblem = fromTransportError(connectionFailure(err, this.endpoint, false));
      this.scheduleReconnect();
      return;
    }
    this.client = client;
    client.on('connect', () => this.onConnected(client));
    client.on('message', (topic, payload) => {
      this.lastActivity = Date.now();
      this.hooks.onMessage(topic, payload);
    });
    client.on('disconnect', (packet) => {
      if (packet.reasonCode === SESSION_TAKEN_OVER) this.takenOverNow = true;
    });
    client.on('error', (err) => this.onClientError(client, err));
    client.on('close', () => this.onClosed(client));
  }

  private onConnected(client: MqttClient): void {
    if (client !== this.client) return;
    this.connectedAt = Date.now();
    this.attempts = 0;
    this.lastProblem = undefined;
    this.setState('connected');
    // Not awaited: servers before November 2024 may not answer, and publishing needs no SUBACK.
    client.subscribe([...this.hooks.subscriptions], { qos: 1 });
    for (const announcement of this.hooks.onConnected?.() ?? [])
      this.announce(client, announcement);
    this.pump();
  }

  private onClientError(client: MqttClient, err: Error & { code?: unknown }): void {
    if (client !== this.client) return;
    this.lastProblem = clientProblem(err, client.connected, this.endpoint, this.label);
  }

  private onClosed(client: MqttClient): void {
    if (client !== this.client) return;
    this.client = undefined;
    const wasConnected = this.state === 'connected';
    const lived = wasConnected ? Date.now() - this.connectedAt : 0;
    this.queue.requeueWritten();
    const problem = this.lastProblem;
    if (problem?.status === 'UNAUTHORIZED') return this.giveUp(problem);
    const shortSession = wasConnected && lived < this.settings.takeover.shortSessionMs;
    if (wasConnected && !shortSession) {
      this.shortSessions = 0;
      this.takeovers = 0;
    }
    // MQTT 3.1.1 has no word for a take-over: the server closes the older connection as soon as
    // the other client connects, so it shows as one short session after another.
    if (shortSession && this.lastProblem === undefined) this.shortSessions++;
    if (this.takenOverNow || this.shortSessions >= 2) {
      const wait = backoffWait(this.takeovers++, this.settings.takeover, this.settings.random);
      this.lastProblem = takenOverError(this.endpoint, this.label, wait);
      this.scheduleReconnect(wait, 'taken-over');
      return;
    }
    this.lastProblem ??= connectionLostError(this.endpoint, this.label, wasConnected);
    this.scheduleReconnect();
  }

  /** Nothing is tried, and nothing sent, until new credentials come. */
  private giveUp(problem: DeviceError): void {
    this.lastProblem = problem;
    this.queue.requeueWritten();
    this.setState('unauthorized', { reason: problem.message });
    this.queue.rejectAll(() => copyError(problem));
  }

  private scheduleReconnect(
    wait = backoffWait(this.attempts++, this.settings.reconnect, this.settings.random),
    state: SessionState = 'reconnecting',
  ): void {
    if (this.ending !== undefined) {
      // Ending: no further attempt, so what is left cannot go out.
      this.queue.rejectAll(() => this.closedError(this.endReason));
      return;
    }
    this.setState(state, { reason: this.lastProblem?.message, retryInMs: wait });
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      const client = this.client;
      while (
        client !== undefined &&
        client === this.client &&
        this.state === 'connected' &&
        this.queue.writtenCount < this.settings.window
      ) {
        const entry = this.queue.next();
        if (entry === undefined) break;
        this.write(client, entry);
      }
    } finally {
      this.pumping = false;
    }
  }

  private write(client: MqttClient, entry: Outgoing): void {
    let text: string;
    if (typeof entry.body === 'string') text = entry.body;
    else {
      const composed = entry.body.compose();
      for (const announcement of composed.before) this.announce(client, announcement);
      text = composed.text;
    }
    // Marked first: a QoS 0 callback may come back before publish() returns.
    this.queue.markWritten(entry, client, 0);
    client.publish(entry.topic, text, { qos: entry.qos }, (err) => {
      if (entry.connection !== client || entry.settled) return;
      // mqtt.js reports success as null or undefined, and a PUBACK's refusal with its reason code.
      const code = (err as { code?: unknown } | null | undefined)?.code;
      // An error without a code: the connection closed, and onClosed writes it again on the next.
      if (err != null && typeof code !== 'number') return;
      this.lastActivity = Date.now();
      this.queue.acknowledge(
        entry,
        typeof code === 'number' ? pubackError(this.endpoint, this.label, code) : undefined,
      );
      this.pump();
    });
    if (entry.qos === 1 && !entry.settled) entry.messageId = client.getLastMessageId() ?? 0;
  }

  /** QoS 1, not queued: a PUBACK with any reason code counts as the server's answer. */
  private announce(client: MqttClient, announcement: Announcement): void {
    client.publish(announcement.topic, announcement.text, { qos: 1 }, (err) => {
      const code = (err as { code?: unknown } | null | undefined)?.code;
      if (client === this.client && (err == null || typeof code === 'number')) {
        announcement.acknowledged?.();
      }
    });
  }

  private expired(entry: Outgoing, written: boolean): DeviceError {
    const client = this.client;
    // mqtt.js would keep it for a PUBACK that nobody waits for any more.
    if (written && entry.messageId > 0 && entry.connection === client && client !== undefined) {
      client.removeOutgoingMessage(entry.messageId);
    }
    queueMicrotask(() => this.pump());
    return expiredError(this.endpoint, this.label, {
      waitedMs: entry.timeoutMs,
      written,
      connected: this.state === 'connected',
      problem: this.lastProblem,
    });
  }

  private closedError(reason: SessionCloseReason): DeviceError {
    return notSentError(this.label, reason);
  }

  private setState(state: SessionState, detail: Omit<SessionChange, 'deviceName' | 'state'> = {}) {
    this.state = state;
    this.hooks.onState({ state, ...detail });
  }

  /** DISCONNECT, then the socket's close; a server that keeps it open is cut off. */
  private endClient(client: MqttClient): Promise<void> {
    return new Promise<void>((resolve) => {
      const cutOff = setTimeout(() => client.stream?.destroy(), DISCONNECT_GRACE_MS);
      // Unanswered SUBSCRIBEs (old servers) would hold a graceful end forever.
      const force = !client.connected || Object.keys(client.outgoing).length > 0;
      client.end(force, {}, () => {
        clearTimeout(cutOff);
        resolve();
      });
    });
  }
}
