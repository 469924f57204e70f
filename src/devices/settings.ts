/**
 * What the sessions are given: the config node's settings with their defaults, and each session's
 * topics and hooks from its caller.
 */

import type { IClientOptions } from 'mqtt';
import { DEVICE_TOPICS, parseAttributeUpdate, parseRpcRequest } from '../protocol/device-data';
import { invalidInput } from '../protocol/device-errors';
import { randomClientId } from '../transports/mqtt';
import { mqttIdentity } from './login';
import type { Announcement } from './outgoing-queue';
import type {
  BackoffPolicy,
  DeviceConnectionsOptions,
  DeviceLogin,
  InboundRpc,
  SessionChange,
  SharedAttributesUpdate,
} from './types';

export const DEFAULT_TIMEOUT_MS = 10_000;

const DEFAULTS = {
  protocolVersion: 4,
  keepaliveSeconds: 60,
  idleMs: 10 * 60_000,
  maxSessions: 1000,
  maxQueued: 1000,
  window: 32,
  gatewayWindow: 2,
  connectTimeoutMs: 10_000,
  reconnect: { initialMs: 1000, maxMs: 60_000 },
  takeover: { initialMs: 10_000, maxMs: 5 * 60_000, shortSessionMs: 30_000 },
} as const;

export interface MqttSessionSettings {
  protocolVersion: 4 | 5;
  keepaliveSeconds: number;
  window: number;
  maxQueued: number;
  connectTimeoutMs: number;
  reconnect: BackoffPolicy;
  takeover: BackoffPolicy & { shortSessionMs: number };
  random: () => number;
}

export interface MqttSessionHooks {
  /** Filters subscribed (QoS 1) on every connection. */
  subscriptions: readonly string[];
  /**
   * Write at the end of the event loop's turn rather than at once, so that what arrives in one
   * turn can still join a publish that is waiting (a gateway's shared publishes).
   */
  coalesceWrites?: boolean;
  /**
   * Messages written (QoS 1) on each new connection ahead of the queue, not queued themselves:
   * what the server must hear again after every reconnect (a gateway's announcements).
   */
  onConnected?(): readonly Announcement[];
  onMessage(topic: string, payload: Buffer): void;
  onState(change: Omit<SessionChange, 'deviceName'>): void;
}

export interface ConnectionLimits {
  idleMs: number;
  maxSessions: number;
  /** A gateway session's window: shared publishes written and not yet acknowledged. */
  gatewayWindow: number;
}

/** The options with their defaults: what every MQTT session gets, and the connections' limits. */
export function settingsOf(options: DeviceConnectionsOptions): {
  session: MqttSessionSettings;
  limits: ConnectionLimits;
} {
  return {
    session: {
      protocolVersion: options.protocolVersion ?? DEFAULTS.protocolVersion,
      keepaliveSeconds: options.keepaliveSeconds ?? DEFAULTS.keepaliveSeconds,
      window: options.window ?? DEFAULTS.window,
      maxQueued: options.maxQueued ?? DEFAULTS.maxQueued,
      connectTimeoutMs: options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      reconnect: options.reconnect ?? DEFAULTS.reconnect,
      takeover: options.takeover ?? DEFAULTS.takeover,
      random: options.random ?? Math.random,
    },
    limits: {
      idleMs: options.idleMs ?? DEFAULTS.idleMs,
      maxSessions: options.maxSessions ?? DEFAULTS.maxSessions,
      gatewayWindow: options.gatewayWindow ?? DEFAULTS.gatewayWindow,
    },
  };
}

/** A message's timeout: given, or the default; INVALID_INPUT unless a positive number. */
export function timeoutOf(timeoutMs: number | undefined): number {
  timeoutMs ??= DEFAULT_TIMEOUT_MS;
  if (!(timeoutMs > 0 && Number.isFinite(timeoutMs))) {
    throw invalidInput('The timeout must be a positive number of milliseconds.');
  }
  return timeoutMs;
}

/** Half fixed, half random: waits grow from initialMs to maxMs and never fall near zero. */
export function backoffWait(attempt: number, policy: BackoffPolicy, random: () => number): number {
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

/** mqtt.js's options for one connection: no reconnecting or resubscribing of its own. */
export function clientOptions(login: DeviceLogin, settings: MqttSessionSettings): IClientOptions {
  const identity = mqttIdentity(login);
  const options: IClientOptions = {
    protocolVersion: settings.protocolVersion,
    clientId: identity.clientId ?? randomClientId('device-'),
    keepalive: settings.keepaliveSeconds,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: settings.connectTimeoutMs,
    resubscribe: false,
    queueQoSZero: false,
  };
  if (identity.username !== undefined) options.username = identity.username;
  if (identity.password !== undefined) options.password = identity.password;
  return options;
}

/** Where what ThingsBoard pushes to devices goes. */
export interface InboundEvents {
  rpc(request: InboundRpc): void;
  attributes(update: SharedAttributesUpdate): void;
}

/** What a device's own session subscribes to: server-side RPC and shared-attribute updates. */
export const DEVICE_SUBSCRIPTIONS = [DEVICE_TOPICS.rpcRequests, DEVICE_TOPICS.attributes] as const;

/** Reads a message on a device's own topics into an event of `deviceName`; others are ignored. */
export function readDeviceMessage(
  deviceName: string,
  topic: string,
  payload: Buffer,
  events: InboundEvents,
): void {
  if (topic === DEVICE_TOPICS.attributes) {
    const data = parseAttributeUpdate(payload);
    if (data !== undefined) events.attributes({ deviceName, data });
    return;
  }
  const request = parseRpcRequest(topic, payload);
  if (request !== undefined) events.rpc({ deviceName, ...request });
}
