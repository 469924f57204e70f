import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { InboundRpc, SharedAttributesUpdate } from '../../devices';
import { sessionsStatus } from '../shared/device-status';
import type { ProvisionConfigNode } from '../shared/server-config';
import { StatusReporter } from '../shared/status';

const DEVICE_IN_TYPE = 'thingsboard-device-in';

interface DeviceInDef extends NodeDef {
  config?: string;
  via?: string;
  gateway?: string;
}

/** Node-RED entry point: registers the device in node. */
export = function registerDeviceInNode(RED: NodeAPI): void {
  const t = (key: string, params?: Record<string, string | number>): string =>
    RED._(`${DEVICE_IN_TYPE}.${key}`, params);

  function ThingsboardDeviceIn(this: Node, def: DeviceInDef): void {
    RED.nodes.createNode(this, def);
    const node: Node = this; // eslint-disable-line @typescript-eslint/no-this-alias

    const server = def.config
      ? (RED.nodes.getNode(def.config) as ProvisionConfigNode | null)
      : null;
    if (!server) {
      node.status({ fill: 'red', shape: 'ring', text: t('status.noConfig') });
      return;
    }
    if (def.via === 'gateway') {
      node.status({ fill: 'red', shape: 'ring', text: t('status.gatewayNotYet') });
      node.error(t('errors.gatewayNotYet'));
      return;
    }
    // Listens only: the sessions are opened by device out nodes (or handed-over credentials).
    const hub = server.deviceHub;

    const status = new StatusReporter(
      (s) => node.status(s),
      () => ({}),
    );
    const showStatus = (): void => status.setResult(() => sessionsStatus(hub.summary(), t));

    const onRpc = (request: InboundRpc): void => {
      node.send({
        deviceName: request.deviceName,
        topic: 'rpc',
        payload: request.params,
        rpc: { id: request.id, method: request.method },
      });
    };
    const onAttributes = (update: SharedAttributesUpdate): void => {
      node.send({ deviceName: update.deviceName, topic: 'attributes', payload: update.data });
    };

    hub.on('rpc', onRpc);
    hub.on('attributes', onAttributes);
    hub.on('summary', showStatus);
    showStatus();

    node.on('close', () => {
      hub.off('rpc', onRpc);
      hub.off('attributes', onAttributes);
      hub.off('summary', showStatus);
      status.close();
    });
  }

  RED.nodes.registerType(DEVICE_IN_TYPE, ThingsboardDeviceIn);
};
