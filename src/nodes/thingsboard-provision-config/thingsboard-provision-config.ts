import os from 'node:os';
import path from 'node:path';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { ProvisionError } from '../../protocol/errors';
import { orList } from '../../protocol/text';
import {
  STORE_BACKENDS,
  SharedStore,
  defaultStorePath,
  isStoreBackend,
  openStore,
  type RedisTlsOptions,
  type StoreWarningListener,
} from '../../store';
import { TRANSPORTS, TRANSPORT_NAMES } from '../../transports/types';
import type { TlsOptions, TransportName, TransportTarget } from '../../transports/types';
import { DeviceHub } from '../shared/device-hub';
import { closeGraceMs } from '../shared/node-input';
import type { ProvisionConfigNode, ProvisionKeys } from '../shared/server-config';

const CONFIG_TYPE = 'thingsboard-provision-config';

/** The property holding a transport's port: mqttPort, httpPort, coapPort. */
type PortProperty = `${TransportName}Port`;

interface ConfigDef extends NodeDef, Partial<Record<PortProperty, string | number>> {
  host?: string;
  usetls?: boolean;
  tls?: string;
  /** The credential store backend; `file` when absent. */
  store?: string;
  redisUrl?: string;
  redisPrefix?: string;
  /** A tls-config node for rediss://, apart from the ThingsBoard one. */
  redisTls?: string;
}

/** The core tls-config node, as far as we use it. */
interface TlsConfigNode extends Node {
  verifyservercert?: boolean;
  addTLSOptions(options: Record<string, unknown>): Record<string, unknown>;
}

/** The options a core tls-config node holds, or undefined without one. */
function tlsConfigOptions(
  RED: NodeAPI,
  id: string | undefined,
): Record<string, unknown> | undefined {
  const tlsNode = id ? (RED.nodes.getNode(id) as TlsConfigNode | null) : null;
  return tlsNode?.addTLSOptions({});
}

/** Only what is set: an undefined option would override Node's default. */
function definedOnly<T extends object>(options: T): T {
  return Object.fromEntries(
    Object.entries(options).filter(([, value]) => value !== undefined),
  ) as T;
}

function parsePort(value: unknown, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const port = Number(value);
  return Number.isInteger(port) && port > 0 && port < 65536 ? port : NaN;
}

/** Node-RED entry point: registers the ThingsBoard server configuration node. */
export = function registerConfigNode(RED: NodeAPI): void {
  const t = (key: string, params?: Record<string, string | number>): string =>
    RED._(`${CONFIG_TYPE}.${key}`, params);

  function ThingsboardProvisionConfig(this: ProvisionConfigNode, def: ConfigDef): void {
    RED.nodes.createNode(this, def);
    const node: ProvisionConfigNode = this; // eslint-disable-line @typescript-eslint/no-this-alias
    node.host = (def.host ?? '').trim();
    node.usetls = def.usetls === true;
    node.ports = Object.fromEntries(
      TRANSPORT_NAMES.map((name) => [
        name,
        parsePort(def[`${name}Port`], TRANSPORTS[name].defaultPort),
      ]),
    ) as Record<TransportName, number>;
    let warnedVerifyOff = false;
    // Built once per transport: the same TLS object lets the transports reuse what they derived.
    const targets = new Map<TransportName, TransportTarget>();

    node.target = (transport) => {
      let target = targets.get(transport);
      if (target === undefined) {
        target = buildTarget(transport);
        targets.set(transport, target);
      }
      return target;
    };

    const buildTarget = (transport: TransportName): TransportTarget => {
      if (!node.host) {
        throw new ProvisionError(
          'INVALID_INPUT',
          RED._('thingsboard-provision-config.errors.noHost'),
        );
      }
      const port = node.ports[transport];
      if (Number.isNaN(port)) {
        throw new ProvisionError(
          'INVALID_INPUT',
          RED._('thingsboard-provision-config.errors.badPort', { transport }),
        );
      }
      if (!node.usetls) return { host: node.host, port };
      if (!TRANSPORTS[transport].tls) {
        throw new ProvisionError(
          'INVALID_INPUT',
          RED._('thingsboard-provision-config.errors.coapTls'),
        );
      }
      const tls: TlsOptions = { rejectUnauthorized: true };
      const options = tlsConfigOptions(RED, def.tls);
      if (options) {
        const alpn = options.ALPNProtocols as string[] | undefined;
        Object.assign(
          tls,
          definedOnly<Partial<TlsOptions>>({
            ca: options.ca as TlsOptions['ca'],
            cert: options.cert as TlsOptions['cert'],
            key: options.key as TlsOptions['key'],
            passphrase: options.passphrase as string | undefined,
            servername: options.servername as string | undefined,
            alpnProtocol: alpn?.[0],
          }),
        );
        tls.rejectUnauthorized = options.rejectUnauthorized !== false;
      }
      if (tls.rejectUnauthorized === false && !warnedVerifyOff) {
        warnedVerifyOff = true;
        node.warn(RED._('thingsboard-provision-config.warn.verifyOff', { host: node.host }));
      }
      return { host: node.host, port, tls };
    };

    const store = new SharedStore((onWarning) => {
      const backend = def.store || 'file';
      if (!isStoreBackend(backend)) {
        throw new Error(
          `Unknown credential store ${JSON.stringify(backend)}: use ${orList(STORE_BACKENDS)}.`,
        );
      }
      if (backend === 'redis') return openRedis(onWarning);
      const userDir = RED.settings.userDir ?? path.join(os.homedir(), '.node-red');
      return openStore(backend, { filePath: defaultStorePath(userDir), onWarning });
    });

    const openRedis = (onWarning: StoreWarningListener) => {
      const options = tlsConfigOptions(RED, def.redisTls);
      const tls: RedisTlsOptions | undefined = options && {
        ...definedOnly<RedisTlsOptions>({
          ca: options.ca as RedisTlsOptions['ca'],
          cert: options.cert as RedisTlsOptions['cert'],
          key: options.key as RedisTlsOptions['key'],
          passphrase: options.passphrase as string | undefined,
          servername: options.servername as string | undefined,
        }),
        rejectUnauthorized: options.rejectUnauthorized !== false,
      };
      if (tls?.rejectUnauthorized === false) {
        node.warn(RED._('thingsboard-provision-config.warn.redisVerifyOff'));
      }
      return openStore('redis', {
        url: def.redisUrl,
        prefix: def.redisPrefix || undefined,
        password: node.credentials.redisPassword || undefined,
        tls,
        onWarning,
      });
    };
    node.useStore = (onWarning) => store.lease(onWarning);

    node.deviceHub = new DeviceHub(
      {
        host: node.host,
        ports: node.ports,
        usetls: node.usetls,
        target: (transport) => node.target(transport),
        keys: () => node.credentials ?? {},
        useStore: (onWarning) => node.useStore(onWarning),
      },
      {
        onStoreWarning: (_english, warning) =>
          node.warn(
            warning.kind === 'damaged'
              ? t('warn.storeDamaged', { movedTo: warning.movedTo })
              : t('warn.storeError', { error: warning.error }),
          ),
        onUnsent: (count) => node.warn(t('warn.unsent', { count })),
        closeGraceMs: closeGraceMs(RED),
      },
    );
    // One log line per device when its session is taken over or refused, not one per attempt.
    const troubled = new Map<string, string>();
    node.deviceHub.on('session', ({ deviceName, state, reason }) => {
      if (state !== 'taken-over' && state !== 'unauthorized') {
        troubled.delete(deviceName);
        return;
      }
      if (troubled.get(deviceName) === state) return;
      troubled.set(deviceName, state);
      const key = state === 'taken-over' ? 'warn.takenOver' : 'warn.refused';
      node.warn(t(key, { reason: reason ?? '' }));
    });

    node.on('close', (_removed: boolean, done: () => void) => {
      void node.deviceHub
        .close()
        .then(() => store.close())
        .then(done);
    });
  }

  RED.nodes.registerType<ProvisionConfigNode, ConfigDef, object, ProvisionKeys>(
    CONFIG_TYPE,
    ThingsboardProvisionConfig,
    {
      credentials: {
        provisionDeviceKey: { type: 'text' },
        provisionDeviceSecret: { type: 'password' },
        redisPassword: { type: 'password' },
      },
      // The editor builds its port defaults, transport and store choices from these.
      settings: {
        thingsboardProvisionConfigTransports: { value: TRANSPORTS, exportable: true },
        thingsboardProvisionConfigStores: { value: STORE_BACKENDS, exportable: true },
      },
    },
  );
};
