import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { InboundRpc, SessionChange, SharedAttributesUpdate } from '../../devices';
import { errorText } from '../../protocol/errors';
import { gatewayStatus, sessionsStatus } from '../shared/device-status';
import type { DeviceHubLease } from '../shared/device-hub';
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
    const gateway = def.via === 'gateway' ? (def.gateway ?? '').trim() : undefined;
    if (gateway === '') {
      node.status({ fill: 'red', shape: 'ring', text: t('status.noGateway') });
      node.error(t('errors.noGateway'));
      return;
    }
    // Every device session: listens only, the sessions are opened by device out nodes (or
    // handed-over credentials). A gateway: its connection is opened here if no device out has.
    const hub = server.deviceHub;
    const lease: DeviceHubLease | undefined = gateway === undefined ? undefined : hub.lease();
    let failure: string | undefined;
    /** No credentials for the gateway yet: a device out node through it may provision it. */
    let waiting = false;
    let closed = false;

    const status = new StatusReporter(
      (s) => node.status(s),
      () => ({}),
    );
    const showStatus = (): void =>
      status.setResult(() => {
        if (gateway === undefined) return sessionsStatus(hub.summary(), t);
        if (failure !== undefined) return { fill: 'red', shape: 'ring', text: failure };
        const state = hub.gatewayState(gateway);
        if (waiting && state === undefined) {
          return { fill: 'yellow', shape: 'ring', text: t('status.gatewayWaiting', { gateway }) };
        }
        return gatewayStatus(gateway, state, t);
      });
    const onSession = (change: SessionChange): void => {
      if (change.gateway !== gateway) return;
      // Opened meanwhile, by a device out node that provisioned the gateway, say.
      failure = undefined;
      waiting = false;
      showStatus();
    };
    /** Its own events: a device session's carry no gateway, a gateway's devices' name theirs. */
    const mine = (event: { gateway?: string }): boolean => event.gateway === gateway;

    if (gateway !== undefined) {
      // The gateway's credentials as device out would find them, without provisioning it.
      const fail = (err: unknown): void => {
        if (closed) return;
        failure = (err as { status?: string }).status ?? 'CONNECTION_ERROR';
        node.error(t('errors.gatewayFailed', { gateway, error: errorText(err) }));
        showStatus();
      };
      hub
        .loginFor(gateway, { provision: false, transport: 'mqtt', timeoutMs: 10_000 })
        .then((login) => {
          if (closed) return;
          if (login !== undefined) {
            try {
              hub.connections().openGateway(gateway, login);
            } catch (err) {
              fail(err);
              return;
            }
          } else if (hub.gatewayState(gateway) === undefined) {
            waiting = true;
            node.warn(t('errors.gatewayUnknown', { gateway }));
          }
          showStatus();
        }, fail);
    }

    const onRpc = (request: InboundRpc): void => {
      if (!mine(request)) return;
      node.send({
        deviceName: request.deviceName,
        topic: 'rpc',
        payload: request.params,
        rpc: { id: request.id, method: request.method },
      });
    };
    const onAttributes = (update: SharedAttributesUpdate): void => {
      if (!mine(update)) return;
      node.send({ deviceName: update.deviceName, topic: 'attributes', payload: update.data });
    };

    hub.on('rpc', onRpc);
    hub.on('attributes', onAttributes);
    hub.on('summary', showStatus);
    hub.on('session', onSession);
    showStatus();

    node.on('close', () => {
      closed = true;
      hub.off('rpc', onRpc);
      hub.off('attributes', onAttributes);
      hub.off('summary', showStatus);
      hub.off('session', onSession);
      lease?.release();
      status.close();
    });
  }

  RED.nodes.registerType(DEVICE_IN_TYPE, ThingsboardDeviceIn);
};
