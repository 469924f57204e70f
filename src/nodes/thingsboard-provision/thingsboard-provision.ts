import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { ProvisionError, errorText } from '../../protocol/errors';
import { CREDENTIALS_MODES, isCredentialsMode } from '../../protocol/types';
import { CredentialsNotSavedError, Provisioner, isCancelledError } from '../../provisioner';
import type { ProvisionResult } from '../../provisioner/types';
import { deviceKey } from '../../store';
import type { StoreLease } from '../../store';
import { verifyDeviceCredentials } from '../../transports';
import { TRANSPORTS, isTransportName } from '../../transports/types';
import { outputFields } from '../shared/message';
import { closeGraceMs, failWithText, nameForText, numberSetting } from '../shared/node-input';
import type { ProvisionConfigNode } from '../shared/server-config';
import { StatusReporter } from '../shared/status';
import { useTransports } from '../shared/transport-users';

const PROVISION_TYPE = 'thingsboard-provision';

interface ProvisionDef extends NodeDef {
  config?: string;
  transport?: string;
  deviceName?: string;
  deviceNameType?: string;
  credentialsType?: string;
  gateway?: boolean;
  timeout?: string | number;
  retries?: string | number;
  concurrency?: string | number;
  persist?: boolean;
  mqttConnect?: boolean;
}

type ProvisionMessage = NodeMessageInFlow & {
  credentials?: unknown;
  reprovision?: unknown;
  gateway?: unknown;
  [key: string]: unknown;
};

function evaluateProperty(
  RED: NodeAPI,
  node: Node,
  value: string,
  type: string,
  msg: ProvisionMessage,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    RED.util.evaluateNodeProperty(value, type, node, msg, (err: Error | null, result: unknown) =>
      err ? reject(err) : resolve(result),
    );
  });
}

/** Node-RED entry point: registers the provision node. */
export = function registerProvisionNode(RED: NodeAPI): void {
  const t = (key: string, params?: Record<string, string | number>): string =>
    RED._(`thingsboard-provision.${key}`, params);

  function ThingsboardProvision(this: Node, def: ProvisionDef): void {
    RED.nodes.createNode(this, def);
    const node: Node = this; // eslint-disable-line @typescript-eslint/no-this-alias
    const releaseTransports = useTransports();

    const server = def.config
      ? (RED.nodes.getNode(def.config) as ProvisionConfigNode | null)
      : null;
    const transport = isTransportName(def.transport) ? def.transport : 'mqtt';
    const credentialsMode = isCredentialsMode(def.credentialsType) ? def.credentialsType : 'server';
    const timeoutMs = numberSetting(def.timeout, 10, 0.1) * 1000;
    const retries = Math.floor(numberSetting(def.retries, 2, 0));
    const concurrency = Math.floor(numberSetting(def.concurrency, 8, 1));
    const persist = def.persist !== false;
    const mqttConnect = def.mqttConnect === true;

    const status = new StatusReporter(
      (s) => node.status(s),
      (activity) => ({
        fill: 'blue',
        shape: 'ring',
        text: t('status.provisioning', { ...activity }),
      }),
    );

    let lease: StoreLease | undefined;
    if (persist && server) {
      try {
        lease = server.useStore((_english, warning) =>
          node.warn(
            warning.kind === 'damaged'
              ? t('warn.storeDamaged', { movedTo: warning.movedTo })
              : warning.kind === 'unavailable'
                ? t('warn.storeUnavailable', { error: warning.error })
                : t('warn.storeError', { error: warning.error }),
          ),
        );
      } catch (err) {
        node.error((err as Error).message);
      }
    }
    const provisioner = new Provisioner({
      concurrency,
      store: lease?.store,
      onActivity: (activity) => status.setActivity(activity),
      // Only an MQTT login can check MQTT basic credentials, whatever transport provisioned them.
      verifyCredentials: (via, target, answer, options) =>
        answer.credentialsType === 'MQTT_BASIC' && via !== 'mqtt' && server
          ? verifyDeviceCredentials('mqtt', server.target('mqtt'), answer, options)
          : verifyDeviceCredentials(via, target, answer, options),
    });

    const serverInfo = () => ({
      host: server?.host ?? '',
      mqttPort: server?.ports.mqtt ?? TRANSPORTS.mqtt.defaultPort,
      usetls: server?.usetls ?? false,
    });

    if (!server) {
      node.status({ fill: 'red', shape: 'ring', text: t('status.noConfig') });
    }

    /** Provisions for one message; `seen` keeps the device name for the failure report. */
    async function provision(
      msg: ProvisionMessage,
      seen: { deviceName?: unknown },
    ): Promise<ProvisionResult> {
      if (!server) throw new ProvisionError('INVALID_INPUT', t('errors.noConfig'));
      let deviceName: unknown;
      try {
        deviceName = seen.deviceName = await evaluateProperty(
          RED,
          node,
          def.deviceName ?? 'deviceName',
          def.deviceNameType ?? 'msg',
          msg,
        );
      } catch (err) {
        throw new ProvisionError(
          'INVALID_INPUT',
          t('errors.deviceName', { error: (err as Error).message }),
        );
      }
      if (msg.gateway !== undefined && typeof msg.gateway !== 'boolean') {
        throw new ProvisionError('INVALID_INPUT', t('errors.badOverride'));
      }
      const keys = server.credentials ?? {};
      if (!keys.provisionDeviceKey || !keys.provisionDeviceSecret) {
        throw new ProvisionError(
          'INVALID_INPUT',
          t('errors.noKeys', { server: server.name || server.host }),
        );
      }
      return provisioner.provision({
        transport,
        target: server.target(transport),
        provisionDeviceKey: keys.provisionDeviceKey,
        provisionDeviceSecret: keys.provisionDeviceSecret,
        deviceName,
        credentialsMode,
        credentials: msg.credentials,
        gateway: typeof msg.gateway === 'boolean' ? msg.gateway : def.gateway === true,
        timeoutMs,
        retries,
        persist,
        reprovision: msg.reprovision === true,
      });
    }

    node.on('input', (msg, send, done) => {
      const message = msg as ProvisionMessage;
      const seen: { deviceName?: unknown } = {};
      provision(message, seen).then(
        (result) => {
          Object.assign(message, outputFields(result, serverInfo(), transport, mqttConnect));
          // Translated only if shown: at most one status per 100 ms reaches the editor.
          status.setResult(() => ({
            fill: result.cached ? 'yellow' : 'green',
            shape: 'dot',
            text: t(result.cached ? 'status.cached' : 'status.provisioned', {
              device: result.deviceName,
            }),
          }));
          send(message);
          done();
        },
        (err: unknown) =>
          void failureOf(err, message, seen).then((text) => failWithText(done, text)),
      );
    });

    /** Whether the store holds the device: a refused msg.reprovision then needs other advice. */
    async function isStored(deviceName: string): Promise<boolean> {
      const key = server?.credentials?.provisionDeviceKey;
      if (!lease || !server || !key) return false;
      try {
        await lease.store.ready();
        return (await lease.store.get(deviceKey(server.host, key, deviceName))) !== undefined;
      } catch {
        return false;
      }
    }

    /** Sets the failure's payload and status; resolves with the error text for Catch nodes. */
    async function failureOf(
      err: unknown,
      message: ProvisionMessage,
      seen: { deviceName?: unknown },
    ): Promise<string> {
      let failure =
        err instanceof ProvisionError
          ? err
          : new ProvisionError('PROTOCOL_ERROR', String((err as Error)?.message ?? err));
      const deviceName = typeof seen.deviceName === 'string' ? seen.deviceName.trim() : undefined;
      if (
        failure.status === 'FAILURE' &&
        message.reprovision === true &&
        deviceName &&
        (await isStored(deviceName))
      ) {
        failure = new ProvisionError('FAILURE', t('errors.reprovisionRefused'), { cause: err });
      }
      let detail = isCancelledError(err) ? t('errors.closing') : failure.message;
      message.payload = { status: failure.status, errorMsg: failure.message, deviceName };
      if (err instanceof CredentialsNotSavedError) {
        // The server will not issue these again: hand them to the Catch node, not to oblivion.
        detail = t('errors.notSaved', { error: `${err.storeName}: ${errorText(err.cause)}` });
        const saved = outputFields(err.result, serverInfo(), transport, false);
        message.payload = {
          ...saved.payload,
          status: failure.status,
          errorMsg: detail,
          deviceName,
          credentialsNotSaved: true,
        };
      }
      const code = failure.status;
      status.setResult(() => ({
        fill: 'red',
        shape: 'ring',
        text: t('status.failed', { status: code }),
      }));
      // Without a name the sentence leaves it out rather than showing a placeholder.
      return deviceName
        ? t('errors.failed', { device: nameForText(deviceName), status: code, detail })
        : t('errors.failedNoName', { status: code, detail });
    }

    node.on('close', (_removed: boolean, done: () => void) => {
      status.close();
      // Requests already at the server finish, and their answers are kept: no device orphaned.
      provisioner
        .close(closeGraceMs(RED))
        .catch(() => undefined)
        .then(() => lease?.release())
        .catch(() => undefined)
        .then(releaseTransports)
        .catch(() => undefined)
        .then(() => done());
    });
  }

  RED.nodes.registerType(PROVISION_TYPE, ThingsboardProvision, {
    // The editor builds its credentials choices from this.
    settings: {
      thingsboardProvisionCredentialsModes: { value: CREDENTIALS_MODES, exportable: true },
    },
  });
};
