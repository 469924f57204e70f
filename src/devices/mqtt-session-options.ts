/** What an MQTT session is given: the config node's settings, and its caller's topics and hooks. */

import type { IClientOptions } from 'mqtt';
import { randomClientId } from '../transports/mqtt';
import { mqttIdentity } from './login';
import type { Announcement } from './outgoing-queue';
import type { BackoffPolicy, DeviceLogin, SessionChange } from './types';

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
