import type { IgnoredField, ProvisionResult } from '../../provisioner/types';
import type { TransportName } from '../../transports/types';

/** The core mqtt node's dynamic-connection settings (msg.broker). */
export interface DynamicBroker {
  broker: string;
  port: number;
  clientid?: string;
  username?: string;
  password?: string;
  usetls: boolean;
  force: true;
}

export interface OutputFields {
  payload: Record<string, unknown>;
  thingsboard: {
    host: string;
    transport: TransportName;
    deviceName: string;
    cached: boolean;
    provisionedAt: string;
    /** What the message asked for that the answer does not reflect (stored credentials). */
    ignored?: IgnoredField[];
  };
  broker?: DynamicBroker;
  action?: 'connect';
}

export interface ServerInfo {
  host: string;
  mqttPort: number;
  usetls: boolean;
}

/** The fields a successful provisioning adds to the message, per the node contract. */
export function outputFields(
  result: ProvisionResult,
  server: ServerInfo,
  transport: TransportName,
  mqttConnect: boolean,
): OutputFields {
  const { answer, generated, deviceName } = result;
  const payload: Record<string, unknown> = {
    status: 'SUCCESS',
    deviceName,
    credentialsType: answer.credentialsType,
    credentialsValue: answer.credentialsValue,
  };
  if (generated?.certificate) payload.certificate = generated.certificate;
  if (generated?.privateKey) payload.privateKey = generated.privateKey;

  const fields: OutputFields = {
    payload,
    thingsboard: {
      host: server.host,
      transport,
      deviceName,
      cached: result.cached,
      provisionedAt: result.provisionedAt,
    },
  };
  if (result.ignored) fields.thingsboard.ignored = result.ignored;
  const broker = dynamicBroker(result, server);
  if (broker) {
    fields.broker = broker;
    if (mqttConnect) fields.action = 'connect';
  }
  return fields;
}

function dynamicBroker(result: ProvisionResult, server: ServerInfo): DynamicBroker | undefined {
  const { answer } = result;
  // Object literals, not spreads of a shared base: this runs for every output message.
  if (answer.credentialsType === 'ACCESS_TOKEN') {
    return {
      broker: server.host,
      port: server.mqttPort,
      usetls: server.usetls,
      force: true,
      username: answer.credentialsValue,
    };
  }
  if (answer.credentialsType === 'MQTT_BASIC') {
    const { clientId, userName, password } = answer.credentialsValue;
    const broker: DynamicBroker = {
      broker: server.host,
      port: server.mqttPort,
      usetls: server.usetls,
      force: true,
    };
    if (clientId !== undefined) broker.clientid = clientId;
    if (userName !== undefined) broker.username = userName;
    if (password !== undefined) broker.password = password;
    return broker;
  }
  return undefined;
}
