/** An MQTT provisioning session (username or client id "provision"), as MqttTransportHandler runs it. */

import type { IPublishPacket, ISubscribePacket, Packet } from 'mqtt-packet';
import type { Verdict } from './desk';
import type { MqttConnection, MqttSessionHandler } from './mqtt-server';

export const PROVISION_REQUEST_TOPIC = '/provision/request';
export const PROVISION_RESPONSE_TOPIC = '/provision/response';

const SUBACK_FAILURE_V3 = 0x80;
const SUBACK_TOPIC_FILTER_INVALID_V5 = 0x8f;
const PUBACK_SUCCESS = 0;
const PUBACK_IMPLEMENTATION_SPECIFIC_ERROR = 0x83;
const PUBACK_TOPIC_NAME_INVALID = 0x90;
const UNSUBACK_NO_SUBSCRIPTION_EXISTED = 0x11;

export class ProvisioningSession implements MqttSessionHandler {
  /** Granted QoS of the /provision/response subscription, when there is one. */
  private responseQos: 0 | 1 | undefined;
  private closeTimerSet = false;
  private readonly peerGone = new AbortController();

  constructor(private readonly connection: MqttConnection) {}

  onPacket(packet: Packet): void {
    switch (packet.cmd) {
      case 'subscribe':
        this.onSubscribe(packet);
        return;
      case 'unsubscribe':
        this.onUnsubscribe(packet.messageId ?? 0, packet.unsubscriptions);
        return;
      case 'publish':
        void this.onPublish(packet);
        return;
      default:
        // PUBACK for our QoS 1 response and anything else: nothing to do.
        return;
    }
  }

  dispose(): void {
    this.peerGone.abort();
  }

  private get desk() {
    return this.connection.context.desk;
  }

  private onSubscribe(packet: ISubscribePacket): void {
    // Servers before November 2024 neither answered nor registered the subscription.
    if (this.desk.noSuback) return;
    const v5 = this.connection.v5;
    const granted = packet.subscriptions.map(({ topic, qos }) => {
      if (topic !== PROVISION_RESPONSE_TOPIC) {
        return v5 ? SUBACK_TOPIC_FILTER_INVALID_V5 : SUBACK_FAILURE_V3;
      }
      const qosGranted = qos >= 1 ? 1 : 0;
      this.responseQos = qosGranted;
      return qosGranted;
    });
    this.connection.send({ cmd: 'suback', messageId: packet.messageId ?? 0, granted });
  }

  private onUnsubscribe(messageId: number, filters: string[]): void {
    if (this.desk.noSuback) return;
    const had = filters.map(
      (filter) => filter === PROVISION_RESPONSE_TOPIC && this.responseQos !== undefined,
    );
    if (filters.includes(PROVISION_RESPONSE_TOPIC)) this.responseQos = undefined;
    this.connection.send({
      cmd: 'unsuback',
      messageId,
      granted: this.connection.v5
        ? had.map((was) => (was ? 0 : UNSUBACK_NO_SUBSCRIPTION_EXISTED))
        : [],
    });
  }

  private async onPublish(packet: IPublishPacket): Promise<void> {
    const connection = this.connection;
    const messageId = packet.qos > 0 ? (packet.messageId ?? 0) : 0;
    if (packet.qos > 1) {
      // The server supports QoS 0 and 1 only.
      connection.closeGracefully();
      return;
    }
    if (packet.topic !== PROVISION_REQUEST_TOPIC) {
      connection.puback(messageId, PUBACK_TOPIC_NAME_INVALID);
      connection.closeGracefully();
      return;
    }
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    let verdict: Verdict;
    try {
      verdict = await this.desk.receive('mqtt', payload, this.peerGone.signal);
    } catch {
      verdict = { kind: 'internal-error' };
    }
    if (!connection.open) return;
    switch (verdict.kind) {
      case 'answer': {
        // For QoS 1 the PUBACK waits for the result and goes just before the response.
        connection.puback(messageId, PUBACK_SUCCESS);
        // Not subscribed: QoS 1 all the same.
        connection.publish(PROVISION_RESPONSE_TOPIC, verdict.body, this.responseQos ?? 1);
        this.scheduleClose();
        return;
      }
      case 'malformed':
      case 'internal-error':
        connection.puback(messageId, PUBACK_IMPLEMENTATION_SPECIFIC_ERROR);
        connection.closeGracefully();
        return;
      case 'drop':
        connection.socket.destroy();
        return;
      case 'hold':
        return;
    }
  }

  /** The server closes the connection some time after answering, without a DISCONNECT. */
  private scheduleClose(): void {
    if (this.closeTimerSet) return;
    this.closeTimerSet = true;
    this.connection.after(this.connection.context.closeAfterAnswerMs, () =>
      this.connection.closeGracefully(),
    );
  }
}
