/**
 * Sending and receiving as provisioned devices, below the device nodes and without Node-RED: the
 * connections a config node holds, and how a device's login is made from a provisioning answer.
 */

export { DeviceConnections } from './device-connections';
export { DEFAULT_TIMEOUT_MS } from './settings';
export { loginFromAnswer } from './login';
export type { GeneratedKeys } from './login';
export type * from './types';
export { DeviceError, isDeviceError, DEVICE_STATUSES } from '../protocol/device-errors';
export type { DeviceStatus } from '../protocol/device-errors';
