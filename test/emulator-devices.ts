/** Helpers for the emulator's device and gateway API tests: devices to log in as, packets to read. */

import assert from 'node:assert/strict';
import type { IPublishPacket } from 'mqtt-packet';
import type { Emulator } from '../src/emulator';
import { PRE, RawMqttClient, type MqttEvent } from './support/emulator-clients';

/** Adds a device that logs in with `token` (a gateway when asked). */
export function addTokenDevice(
  emulator: Emulator,
  name: string,
  token: string,
  gateway = false,
): void {
  emulator.addDevice({
    name,
    profile: PRE.name,
    credentials: { credentialsType: 'ACCESS_TOKEN', token },
    gateway,
  });
}

/** Logs in with a token and checks the CONNACK accepted it. */
export async function connectDevice(
  emulator: Emulator,
  token: string,
  options: { version?: 4 | 5; clientId?: string } = {},
): Promise<RawMqttClient> {
  const { client, connack } = await RawMqttClient.connect(emulator.ports.mqtt, {
    protocolVersion: options.version ?? 4,
    username: token,
    clientId: options.clientId ?? `client-${token}`,
  });
  assert.equal(connack.cmd, 'connack');
  const code = connack.cmd === 'connack' ? (connack.reasonCode ?? connack.returnCode) : -1;
  assert.equal(code, 0, `CONNACK for ${token}`);
  return client;
}

export function expectPacket<T extends MqttEvent['cmd']>(
  event: MqttEvent,
  cmd: T,
): Extract<MqttEvent, { cmd: T }> {
  assert.equal(event.cmd, cmd, `expected ${cmd}, got ${JSON.stringify(event)}`);
  return event as Extract<MqttEvent, { cmd: T }>;
}

/** The next packet, which must be a PUBLISH on `topic`; its payload parsed as JSON. */
export async function nextPublish(
  client: RawMqttClient,
  topic: string,
): Promise<{ packet: IPublishPacket; json: unknown }> {
  const packet = expectPacket(await client.next(), 'publish');
  assert.equal(packet.topic, topic);
  return { packet, json: JSON.parse(Buffer.from(packet.payload).toString('utf8')) };
}

/** The PUBACK reason code (0 on 3.1.1, where there is none). */
export async function nextPubackCode(client: RawMqttClient, messageId: number): Promise<number> {
  const puback = expectPacket(await client.next(), 'puback');
  assert.equal(puback.messageId, messageId);
  return puback.reasonCode ?? 0;
}

/** A rejection's error, for asserting on its fields. */
export async function rejectionOf(
  promise: Promise<unknown>,
): Promise<Error & Record<string, unknown>> {
  try {
    await promise;
  } catch (error) {
    return error as Error & Record<string, unknown>;
  }
  assert.fail('expected a rejection');
}
