import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import type { DeviceConnections, DeviceLogin, SessionChange } from '../../devices';
import {
  DEVICE_TOPICS,
  checkMqttPublishSize,
  deviceDataText,
  isDeviceDataKind,
  rpcReplyText,
  rpcRequestId,
} from '../../protocol/device-data';
import type { DeviceDataKind } from '../../protocol/device-data';
import { DeviceError, isDeviceError } from '../../protocol/device-errors';
import { ProvisionError } from '../../protocol/errors';
import { validateDeviceName } from '../../protocol/request';
import { isCancelledError } from '../../provisioner';
import { isTransportName } from '../../transports/types';
import type { TransportName } from '../../transports/types';
import type { DeviceHub, DeviceHubLease } from '../shared/device-hub';
import { handoverOf, rpcIdOf } from '../shared/device-message';
import type { DeviceFields } from '../shared/device-message';
import { gatewayStatus, sessionsStatus } from '../shared/device-status';
import { failWithText, nameForText, numberSetting } from '../shared/node-input';
import type { ProvisionConfigNode } from '../shared/server-config';
import { StatusReporter } from '../shared/status';
import type { NodeStatus } from '../shared/status';

const DEVICE_OUT_TYPE = 'thingsboard-device-out';

interface DeviceOutDef extends NodeDef {
  config?: string;
  via?: string;
  transport?: string;
  gateway?: string;
  deviceName?: string;
  deviceNameType?: string;
  deviceType?: string;
  kind?: string;
  provision?: boolean;
  qos?: string | number;
  timeout?: string | number;
}

type DeviceOutMessage = NodeMessageInFlow & Record<string, unknown>;

/** What one message asks for, once read. */
type Work =
  | { action: 'disconnect' }
  | { action: 'reply'; id: unknown }
  | { action: 'data'; kind: DeviceDataKind };

/** Node-RED entry point: registers the device out node. */
export = function registerDeviceOutNode(RED: NodeAPI): void {
  const t = (key: string, params?: Record<string, string | number>): string =>
    RED._(`${DEVICE_OUT_TYPE}.${key}`, params);

  function ThingsboardDeviceOut(this: Node, def: DeviceOutDef): void {
    RED.nodes.createNode(this, def);
    const node: Node = this; // eslint-disable-line @typescript-eslint/no-this-alias

    const server = def.config
      ? (RED.nodes.getNode(def.config) as ProvisionConfigNode | null)
      : null;
    const via = def.via === 'gateway' ? 'gateway' : 'device';
    // Through a gateway everything goes over its MQTT connection, at QoS 1.
    const transport: TransportName =
      via === 'device' && isTransportName(def.transport) ? def.transport : 'mqtt';
    const gateway = (def.gateway ?? '').trim();
    const defaultKind = def.kind === 'attributes' ? 'attributes' : 'telemetry';
    const provision = def.provision !== false;
    const qos = Number(def.qos) === 0 ? 0 : 1;
    const timeoutMs = numberSetting(def.timeout, 10, 0.1) * 1000;
    const host = server?.host ?? '';

    const lease: DeviceHubLease | undefined = server?.deviceHub.lease();
    const hub: DeviceHub | undefined = lease?.hub;
    let closing = false;
    let pending = 0;
    let idle: (() => void) | undefined;
    /** The status of the last message: a failure stays red until a message goes through. */
    let lastFailure: string | undefined;
    /** Over HTTP and CoAP no session shows what works: the devices sent as do. */
    const devicesSent = new Set<string>();

    const status = new StatusReporter(
      (s) => node.status(s),
      () => ({}),
    );
    const currentStatus = (): NodeStatus => {
      if (lastFailure !== undefined) return { fill: 'red', shape: 'ring', text: lastFailure };
      if (via === 'gateway' && hub) return gatewayStatus(gateway, hub.gatewayState(gateway), t);
      if (transport === 'mqtt' && hub) return sessionsStatus(hub.summary(), t);
      if (devicesSent.size === 0) return {};
      return { fill: 'green', shape: 'dot', text: t('status.sent', { count: devicesSent.size }) };
    };
    const showStatus = (): void => status.setResult(currentStatus);
    const onSession = (change: SessionChange): void => {
      if (change.gateway === gateway) showStatus();
    };
    hub?.on('summary', showStatus);
    if (via === 'gateway') hub?.on('session', onSession);
    if (!server) node.status({ fill: 'red', shape: 'ring', text: t('status.noConfig') });

    const fieldsFor = (deviceName: string | undefined, used = transport): DeviceFields =>
      via === 'gateway'
        ? { host, via, transport: used, deviceName, gateway }
        : { host, via, transport: used, deviceName };

    /** The device the message is for, from the typed input; INVALID_INPUT saying what to fix. */
    function readDeviceName(
      msg: DeviceOutMessage,
      then: (err: unknown, deviceName?: string) => void,
    ): void {
      RED.util.evaluateNodeProperty(
        def.deviceName ?? 'deviceName',
        def.deviceNameType ?? 'msg',
        node,
        msg,
        (err: Error | null, value: unknown) => {
          if (err) {
            then(new DeviceError('INVALID_INPUT', t('errors.deviceName', { error: err.message })));
            return;
          }
          try {
            then(undefined, validateDeviceName(value));
          } catch (invalid) {
            then(new DeviceError('INVALID_INPUT', (invalid as Error).message));
          }
        },
      );
    }

    /** What the message asks for; INVALID_INPUT for an override that cannot be used. */
    function workOf(msg: DeviceOutMessage): Work {
      if (msg.action === 'disconnect') return { action: 'disconnect' };
      const id = rpcIdOf(msg);
      if (id !== undefined) return { action: 'reply', id };
      const kind = msg.kind ?? defaultKind;
      if (!isDeviceDataKind(kind)) throw new DeviceError('INVALID_INPUT', t('errors.badKind'));
      return { action: 'data', kind };
    }

    /** Checks what would be sent, before credentials are looked up or a device provisioned. */
    function checkPayload(msg: DeviceOutMessage, work: Work): void {
      if (work.action === 'reply') {
        rpcRequestId(work.id);
        rpcReplyText(msg.payload);
      } else if (work.action === 'data') {
        const text = deviceDataText(work.kind, msg.payload);
        // Through a gateway the devices layer checks the size of the device's part of a publish.
        if (transport === 'mqtt' && via === 'device') {
          checkMqttPublishSize(DEVICE_TOPICS[work.kind], Buffer.byteLength(text, 'utf8'), {
            qos,
            protocolVersion: 4,
          });
        }
      }
    }

    /** The gateway's credentials: handed over, stored, or provisioned now as a gateway. */
    async function gatewayLogin(
      hub: DeviceHub,
      msg: DeviceOutMessage,
      work: Work,
    ): Promise<DeviceLogin> {
      let login = hub.knownLogin(gateway);
      if (login === undefined) {
        checkPayload(msg, work);
        login = await hub.loginFor(gateway, {
          provision: provision && work.action === 'data',
          transport: 'mqtt',
          timeoutMs,
          gateway: true,
        });
      }
      if (login !== undefined) return login;
      throw new DeviceError(
        'NOT_PROVISIONED',
        t('errors.gatewayNotProvisioned', { gateway: nameForText(gateway) }),
      );
    }

    /** One message of a device behind the gateway, on the gateway's connection. */
    async function performViaGateway(
      hub: DeviceHub,
      msg: DeviceOutMessage,
      deviceName: string,
      work: Work,
    ): Promise<void> {
      const connections: DeviceConnections = hub.connections();
      if (work.action === 'disconnect') {
        await connections.disconnectViaGateway(gateway, deviceName, { timeoutMs });
        return;
      }
      const login = await gatewayLogin(hub, msg, work);
      try {
        if (work.action === 'reply') {
          await connections.replyRpcViaGateway(gateway, deviceName, work.id, msg.payload, {
            login,
            timeoutMs,
          });
          return;
        }
        await connections.sendViaGateway({
          gatewayName: gateway,
          gatewayLogin: login,
          deviceName,
          deviceType: (msg.deviceType as string | undefined) ?? def.deviceType,
          message: { kind: work.kind, payload: msg.payload },
          timeoutMs,
        });
      } catch (err) {
        if (isDeviceError(err) && err.status === 'UNAUTHORIZED') hub.forget(gateway, login);
        throw err;
      }
    }

    async function perform(
      hub: DeviceHub,
      msg: DeviceOutMessage,
      deviceName: string,
      work: Work,
    ): Promise<TransportName> {
      if (via === 'gateway') {
        await performViaGateway(hub, msg, deviceName, work);
        return 'mqtt';
      }
      if (work.action === 'disconnect') {
        await hub.disconnect(deviceName);
        return transport;
      }
      let login: DeviceLogin | undefined = hub.knownLogin(deviceName);
      if (login === undefined) {
        checkPayload(msg, work);
        login = await hub.loginFor(deviceName, {
          // An RPC reply goes over the session its request came on: nothing to provision.
          provision: provision && work.action === 'data',
          transport,
          timeoutMs,
        });
      }
      try {
        if (work.action === 'reply') {
          await hub.connections().replyRpc(deviceName, work.id, msg.payload, {
            login,
            qos,
            timeoutMs,
          });
          return 'mqtt';
        }
        if (login === undefined) {
          throw new DeviceError(
            'NOT_PROVISIONED',
            t('errors.notProvisioned', { device: nameForText(deviceName) }),
          );
        }
        await hub.connections().send({
          deviceName,
          login,
          transport,
          message: { kind: work.kind, payload: msg.payload },
          qos,
          timeoutMs,
        });
        return transport;
      } catch (err) {
        if (login !== undefined && isDeviceError(err) && err.status === 'UNAUTHORIZED') {
          hub.forget(deviceName, login);
        }
        throw err;
      }
    }

    node.on('input', (msg, send, done) => {
      const message = msg as DeviceOutMessage;
      let deviceName: string | undefined;
      pending++;
      const finish = (): void => {
        if (--pending === 0) idle?.();
      };
      const succeed = (used: TransportName): void => {
        message.thingsboard = fieldsFor(deviceName, used);
        lastFailure = undefined;
        if (used !== 'mqtt' && deviceName !== undefined) devicesSent.add(deviceName);
        showStatus();
        send(message);
        done();
        finish();
      };
      const fail = (err: unknown): void => {
        const failure =
          isDeviceError(err) || err instanceof ProvisionError
            ? err
            : new DeviceError('PROTOCOL_ERROR', String((err as Error)?.message ?? err));
        const detail = isCancelledError(err) ? t('errors.closing') : failure.message;
        message.thingsboard = {
          ...fieldsFor(deviceName),
          status: failure.status,
          errorMsg: detail,
        };
        lastFailure = failure.status;
        showStatus();
        const name = deviceName ? nameForText(deviceName) : undefined;
        failWithText(
          done,
          name
            ? t('errors.failed', { device: name, status: failure.status, detail })
            : t('errors.failedNoName', { status: failure.status, detail }),
        );
        finish();
      };
      try {
        if (!hub) throw new DeviceError('INVALID_INPUT', t('errors.noConfig'));
        if (via === 'gateway' && gateway === '') {
          throw new DeviceError('INVALID_INPUT', t('errors.noGateway'));
        }
        if (closing) throw new DeviceError('CONNECTION_ERROR', t('errors.closing'));
        const handover = handoverOf(message, host);
        if (handover !== undefined) {
          deviceName = handover.deviceName;
          if (via === 'gateway' && deviceName !== gateway) {
            throw new DeviceError(
              'INVALID_INPUT',
              t('errors.notTheGateway', {
                device: nameForText(deviceName),
                gateway: nameForText(gateway),
              }),
            );
          }
          hub.handOver(
            deviceName,
            handover.answer,
            handover.generated,
            via === 'device' && transport === 'mqtt',
          );
          const handed = hub.knownLogin(deviceName);
          if (via === 'gateway' && handed !== undefined)
            hub.connections().openGateway(gateway, handed);
          // Passed on as it came: a device out further on takes the credentials over too.
          lastFailure = undefined;
          showStatus();
          send(message);
          done();
          finish();
          return;
        }
        const work = workOf(message);
        readDeviceName(message, (err, name) => {
          if (name === undefined) {
            fail(err);
            return;
          }
          deviceName = name;
          perform(hub, message, name, work).then(succeed, fail);
        });
      } catch (err) {
        fail(err);
      }
    });

    node.on('close', (_removed: boolean, done: () => void) => {
      closing = true;
      // Released first: a closing node takes no message, so its config node may close the sessions.
      lease?.release();
      hub?.off('summary', showStatus);
      hub?.off('session', onSession);
      status.close();
      if (pending === 0) done();
      else idle = done;
    });
  }

  RED.nodes.registerType(DEVICE_OUT_TYPE, ThingsboardDeviceOut);
};
