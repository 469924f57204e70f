import type { Node } from 'node-red';
import type { StoreLease, StoreWarningListener } from '../../store';
import type { TransportName, TransportTarget } from '../../transports/types';
import type { DeviceHub } from './device-hub';

/** The config node's credentials. */
export interface ProvisionKeys {
  provisionDeviceKey?: string;
  provisionDeviceSecret?: string;
  /** For the Redis credential store. */
  redisPassword?: string;
}

/** The server configuration node as the nodes that use it see it. */
export interface ProvisionConfigNode extends Node<ProvisionKeys> {
  host: string;
  ports: Record<TransportName, number>;
  usetls: boolean;
  /** Where to reach the server over one transport; throws a ProvisionError the flow can act on. */
  target(transport: TransportName): TransportTarget;
  /** The store this server's nodes share, opened on first use; release the lease on close. */
  useStore(onWarning: StoreWarningListener): StoreLease;
  /** The device connections and credentials this server's device nodes share; lease it. */
  deviceHub: DeviceHub;
}
