/**
 * Loads each transport module on first use, so that loading the transports loads none of
 * mqtt-packet, undici and coap-packet.
 */

type MqttModule = typeof import('./mqtt');
type HttpModule = typeof import('./http');
type CoapModule = typeof import('./coap');

let mqtt: MqttModule | undefined;
let http: HttpModule | undefined;
let coap: CoapModule | undefined;

export function mqttModule(): MqttModule {
  mqtt ??= require('./mqtt') as MqttModule;
  return mqtt;
}

export function httpModule(): HttpModule {
  http ??= require('./http') as HttpModule;
  return http;
}

export function coapModule(): CoapModule {
  coap ??= require('./coap') as CoapModule;
  return coap;
}

/** The CoAP module if something has used it already; closing links never loads it. */
export function loadedCoapModule(): CoapModule | undefined {
  return coap;
}

/** The MQTT module if something has used it already; forgetting its TLS sessions never loads it. */
export function loadedMqttModule(): MqttModule | undefined {
  return mqtt;
}

/** The HTTP module if something has used it already; closing agents never loads it. */
export function loadedHttpModule(): HttpModule | undefined {
  return http;
}
