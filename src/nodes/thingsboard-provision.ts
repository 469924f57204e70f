import type { NodeAPI } from 'node-red';
import { registerConfigNode } from './config-node';
import { registerProvisionNode } from './provision-node';

/** Node-RED entry point: registers the config node and the provision node. */
export = function thingsboardProvision(RED: NodeAPI): void {
  registerConfigNode(RED);
  registerProvisionNode(RED);
};
