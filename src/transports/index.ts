/**
 * The three provisioning transports behind one signature. Each implementation, and the
 * mqtt-packet, undici and coap-packet packages under it, is loaded on first use.
 */

import { unknownTransport } from './device-api';
import {
  coapModule,
  httpModule,
  loadedCoapModule,
  loadedHttpModule,
  loadedMqttModule,
  mqttModule,
} from './lazy';
import { isTransportName, type Transport, type TransportName } from './types';

export type {
  Transport,
  TransportName,
  TransportOptions,
  TransportTarget,
  TlsOptions,
} from './types';
export { verifyDeviceCredentials } from './device-api';

export { TRANSPORTS, TRANSPORT_NAMES, isTransportName } from './types';

const transports: Record<TransportName, Transport> = {
  mqtt: (target, request, options) => mqttModule().mqttTransport(target, request, options),
  http: (target, request, options) => httpModule().httpTransport(target, request, options),
  coap: (target, request, options) => coapModule().coapTransport(target, request, options),
};

/** The transport of that name; throws a ProvisionError (INVALID_INPUT) for any other name. */
export function getTransport(name: TransportName): Transport {
  if (!isTransportName(name)) throw unknownTransport(name);
  return transports[name];
}

/** Destroys the pooled HTTP(S) connections; the node calls it on close, tests after each case. */
export function closeHttpAgents(): void {
  loadedHttpModule()?.closeHttpAgents();
}

/** Forgets the TLS material and sessions kept for MQTTS and HTTPS; the node calls it on close. */
export function forgetTlsSessions(): void {
  // Kept in tls-options, which only the MQTT and HTTP modules load: never loaded for this.
  if (loadedMqttModule() === undefined && loadedHttpModule() === undefined) return;
  (require('./tls-options') as typeof import('./tls-options')).forgetTlsSessions();
}

/** Closes the idle CoAP sockets kept for the next exchange; the node calls it on close. */
export function closeCoapLinks(): Promise<void> {
  return loadedCoapModule()?.closeCoapLinks() ?? Promise.resolve();
}
