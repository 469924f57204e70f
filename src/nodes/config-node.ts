import type { Node, NodeAPI, NodeDef } from 'node-red';
import { ProvisionError } from '../protocol/errors';
import type { TlsOptions, TransportName, TransportTarget } from '../transports/types';

export const CONFIG_TYPE = 'thingsboard-provision-config';

const DEFAULT_PORTS: Record<TransportName, number> = { mqtt: 1883, http: 8080, coap: 5683 };

export interface ProvisionKeys {
  provisionDeviceKey?: string;
  provisionDeviceSecret?: string;
}

interface ConfigDef extends NodeDef {
  host?: string;
  mqttPort?: string | number;
  httpPort?: string | number;
  coapPort?: string | number;
  usetls?: boolean;
  tls?: string;
}

/** The core tls-config node, as far as we use it. */
interface TlsConfigNode extends Node {
  verifyservercert?: boolean;
  addTLSOptions(options: Record<string, unknown>): Record<string, unknown>;
}

export interface ProvisionConfigNode extends Node<ProvisionKeys> {
  host: string;
  ports: Record<TransportName, number>;
  usetls: boolean;
  /** Where to reach the server over one transport; throws a ProvisionError the flow can act on. */
  target(transport: TransportName): TransportTarget;
}

function parsePort(value: unknown, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const port = Number(value);
  return Number.isInteger(port) && port > 0 && port < 65536 ? port : NaN;
}

export function registerConfigNode(RED: NodeAPI): void {
  function ThingsboardProvisionConfig(this: ProvisionConfigNode, def: ConfigDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    node.host = (def.host ?? '').trim();
    node.usetls = def.usetls === true;
    node.ports = {
      mqtt: parsePort(def.mqttPort, DEFAULT_PORTS.mqtt),
      http: parsePort(def.httpPort, DEFAULT_PORTS.http),
      coap: parsePort(def.coapPort, DEFAULT_PORTS.coap),
    };
    let warnedVerifyOff = false;

    node.target = (transport) => {
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
      if (transport === 'coap') {
        throw new ProvisionError('INVALID_INPUT', RED._('thingsboard-provision.errors.coapTls'));
      }
      const tls: TlsOptions = { rejectUnauthorized: true };
      const tlsNode = def.tls ? (RED.nodes.getNode(def.tls) as TlsConfigNode | null) : null;
      if (tlsNode) {
        const options = tlsNode.addTLSOptions({}) as Record<string, unknown>;
        const alpn = options.ALPNProtocols as string[] | undefined;
        Object.assign(tls, {
          ca: options.ca,
          cert: options.cert,
          key: options.key,
          passphrase: options.passphrase,
          servername: options.servername,
          alpnProtocol: alpn?.[0],
          rejectUnauthorized: options.rejectUnauthorized !== false,
        });
        for (const key of Object.keys(tls) as (keyof TlsOptions)[]) {
          if (tls[key] === undefined) delete tls[key];
        }
      }
      if (tls.rejectUnauthorized === false && !warnedVerifyOff) {
        warnedVerifyOff = true;
        node.warn(RED._('thingsboard-provision.warn.verifyOff', { host: node.host }));
      }
      return { host: node.host, port, tls };
    };
  }

  RED.nodes.registerType<ProvisionConfigNode, ConfigDef, object, ProvisionKeys>(
    CONFIG_TYPE,
    ThingsboardProvisionConfig,
    {
    credentials: {
      provisionDeviceKey: { type: 'text' },
      provisionDeviceSecret: { type: 'password' },
    },
  });
}
