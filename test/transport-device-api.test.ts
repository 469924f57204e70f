/** verifyDeviceCredentials: asking ThingsBoard's device API whether credentials are accepted. */

import * as assert from 'node:assert/strict';
import type { ProvisionAnswer } from '../src/protocol';
import { getTransport, verifyDeviceCredentials } from '../src/transports';
import type { TransportName } from '../src/transports';
import { TRANSPORTS } from './support/common';
import {
  HOST,
  allowRequest,
  closedTcpPort,
  closedUdpPort,
  deadlineIn,
  expectProvisionError,
  rawTcpServer,
  rawUdpServer,
  emulatorForSuite,
  targetOf,
  uniqueName,
  watchForLeaks,
} from './support/transport-helpers';
import type { RemoteEmulator } from './support/transport-helpers';
import { TEST_DEVICE_CERTS } from './support/transport-certificates';
import { coapRequest, httpRequest } from './support/emulator-clients';
import { generate as generateCoap, parse as parseCoap } from 'coap-packet';

const token = (value: string): ProvisionAnswer => ({
  status: 'SUCCESS',
  credentialsType: 'ACCESS_TOKEN',
  credentialsValue: value,
});

describe('transports: verifyDeviceCredentials', function () {
  let emulator: RemoteEmulator;
  emulatorForSuite((e) => (emulator = e), {}, { clearFaults: true });
  watchForLeaks();

  const verify = (transport: TransportName, answer: ProvisionAnswer, signal?: AbortSignal) =>
    verifyDeviceCredentials(transport, targetOf(emulator, transport), answer, {
      deadline: deadlineIn(3000),
      signal,
    });
  const provision = (transport: TransportName, deviceName: string, extra = {}) =>
    getTransport(transport)(targetOf(emulator, transport), allowRequest(deviceName, extra), {
      deadline: deadlineIn(3000),
    });

  for (const transport of TRANSPORTS) {
    describe(transport, function () {
      it('true for the token the server issued', async function () {
        const answer = await provision(transport, uniqueName(`api-${transport}`));
        assert.equal(await verify(transport, answer), true);
      });

      it('false for a made-up token', async function () {
        assert.equal(await verify(transport, token(`made-up-${transport}-${process.pid}`)), false);
      });

      it('a token with spaces and plus signs reaches the device API intact', async function () {
        const chosen = `tok en+${transport}-${process.pid}`;
        await provision(transport, uniqueName(`odd-${transport}`), {
          credentialsType: 'ACCESS_TOKEN',
          token: chosen,
        });
        assert.equal(await verify(transport, token(chosen)), true);
      });

      it('after a lost answer, the device-chosen token shows the device was created', async function () {
        await emulator.setFaults({ loseAnswerFirst: 1 });
        const chosen = `lost-${transport}-${process.pid}`;
        const err = await expectProvisionError(
          getTransport(transport)(
            targetOf(emulator, transport),
            allowRequest(uniqueName(`lost-${transport}`), {
              credentialsType: 'ACCESS_TOKEN',
              token: chosen,
            }),
            { deadline: deadlineIn(transport === 'coap' ? 400 : 3000) },
          ),
          { status: transport === 'coap' ? 'TIMEOUT' : 'CONNECTION_ERROR', transient: true },
        );
        assert.equal(err.maybeDelivered, true);
        assert.equal(await verify(transport, token(chosen)), true);
      });

      it('X.509 credentials cannot be checked: PROTOCOL_ERROR', async function () {
        await expectProvisionError(
          verify(transport, {
            status: 'SUCCESS',
            credentialsType: 'X509_CERTIFICATE',
            credentialsValue: TEST_DEVICE_CERTS[3],
          }),
          {
            status: 'PROTOCOL_ERROR',
            transient: false,
            message: /Cannot check X\.509 credentials/,
          },
        );
      });

      it('nothing listening: CONNECTION_ERROR, transient', async function () {
        const port = transport === 'coap' ? await closedUdpPort() : await closedTcpPort();
        await expectProvisionError(
          verifyDeviceCredentials(transport, { host: HOST, port }, token('any'), {
            deadline: deadlineIn(3000),
          }),
          { status: 'CONNECTION_ERROR', transient: true },
        );
      });

      it('abort rejects with "Provisioning was cancelled"', async function () {
        const controller = new AbortController();
        controller.abort();
        await expectProvisionError(verify(transport, token('any'), controller.signal), {
          status: 'CONNECTION_ERROR',
          transient: false,
          message: /cancelled/,
        });
      });
    });
  }

  describe('what the device API answers means', function () {
    const chooseToken = async (transport: TransportName, prefix: string) => {
      const chosen = `${prefix}-${transport}-${process.pid}`;
      await provision(transport, uniqueName(prefix), {
        credentialsType: 'ACCESS_TOKEN',
        token: chosen,
      });
      return chosen;
    };

    it('CoAP: a new device has no attributes: 4.04, and the token counts as accepted', async function () {
      const chosen = await chooseToken('coap', 'bare');
      const reply = await coapRequest(emulator.ports.coap, `/api/v1/${chosen}/attributes`, '', {
        method: 'GET',
      });
      assert.equal(reply.code, '4.04', 'the server finds no attributes for a new device');
      assert.equal(await verify('coap', token(chosen)), true);
    });

    it('CoAP: a device with attributes: 2.05, accepted', async function () {
      const chosen = await chooseToken('coap', 'with-attributes');
      const posted = await coapRequest(
        emulator.ports.coap,
        `/api/v1/${chosen}/attributes`,
        '{"firmware":"1.2"}',
      );
      assert.equal(posted.code, '2.01');
      assert.equal(await verify('coap', token(chosen)), true);
    });

    it('CoAP: an answer other than 2.xx, 4.04 or 4.01 is no verdict: PROTOCOL_ERROR', async function () {
      const server = await rawUdpServer((message, remote, socket) => {
        const request = parseCoap(message);
        const answer = generateCoap({
          messageId: request.messageId,
          token: request.token,
          code: '4.03',
          ack: true,
        });
        socket.send(answer, remote.port, remote.address);
      });
      try {
        await expectProvisionError(
          verifyDeviceCredentials('coap', { host: HOST, port: server.port }, token('any'), {
            deadline: deadlineIn(3000),
          }),
          { status: 'PROTOCOL_ERROR', message: /answered CoAP 4\.03/ },
        );
      } finally {
        await server.close();
      }
    });

    it('HTTP: a new device answers 200 {}, accepted', async function () {
      const chosen = await chooseToken('http', 'bare');
      const reply = await httpRequest(emulator.ports.http, `/api/v1/${chosen}/attributes`, {
        method: 'GET',
      });
      assert.equal(reply.status, 200);
      assert.equal(reply.body, '{}');
      assert.equal(await verify('http', token(chosen)), true);
    });

    it('HTTP: only 401 refuses a token; a 404 from something else is PROTOCOL_ERROR', async function () {
      const server = await rawTcpServer((socket) => {
        socket.once('data', () =>
          socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'),
        );
      });
      try {
        await expectProvisionError(
          verifyDeviceCredentials('http', { host: HOST, port: server.port }, token('any'), {
            deadline: deadlineIn(3000),
          }),
          { status: 'PROTOCOL_ERROR', message: /answered HTTP 404/ },
        );
      } finally {
        await server.close();
      }
    });
  });

  describe('MQTT basic credentials', function () {
    const basic = {
      clientId: `basic-client-${process.pid}`,
      username: `basic-user-${process.pid}`,
      password: 'basic-pass',
    };
    let issued: ProvisionAnswer;

    before(async function () {
      issued = await provision('mqtt', uniqueName('basic'), {
        credentialsType: 'MQTT_BASIC',
        ...basic,
      });
    });

    it('over MQTT: true for the issued clientId / userName / password', async function () {
      assert.equal(issued.credentialsType, 'MQTT_BASIC');
      assert.equal(await verify('mqtt', issued), true);
    });

    it('over MQTT: false with a wrong password', async function () {
      assert.equal(
        await verify('mqtt', {
          status: 'SUCCESS',
          credentialsType: 'MQTT_BASIC',
          credentialsValue: { ...basic, userName: basic.username, password: 'wrong' },
        }),
        false,
      );
    });

    for (const transport of ['http', 'coap'] as const) {
      it(`over ${transport.toUpperCase()}: cannot be checked, PROTOCOL_ERROR`, async function () {
        await expectProvisionError(verify(transport, issued), {
          status: 'PROTOCOL_ERROR',
          transient: false,
          message: new RegExp(
            `Cannot check MQTT basic credentials over ${transport.toUpperCase() === 'COAP' ? 'CoAP' : 'HTTP'}`,
          ),
        });
      });
    }
  });

  it('MQTT: a password without a user name cannot be sent: PROTOCOL_ERROR, no connection', async function () {
    const server = await rawTcpServer(() => undefined);
    try {
      const error = await expectProvisionError(
        verifyDeviceCredentials(
          'mqtt',
          { host: HOST, port: server.port },
          {
            status: 'SUCCESS',
            credentialsType: 'MQTT_BASIC',
            credentialsValue: { clientId: 'lonely-client', password: 'lonely-secret' },
          },
          { deadline: deadlineIn(3000) },
        ),
        {
          status: 'PROTOCOL_ERROR',
          transient: false,
          message: /cannot be sent in an MQTT CONNECT/,
        },
      );
      assert.doesNotMatch(error.message, /lonely-secret/);
      assert.equal(server.connections, 0);
    } finally {
      await server.close();
    }
  });

  it('MQTT: a server that never sends CONNACK: TIMEOUT', async function () {
    const server = await rawTcpServer(() => undefined);
    try {
      await expectProvisionError(
        verifyDeviceCredentials('mqtt', { host: HOST, port: server.port }, token('any'), {
          deadline: deadlineIn(300),
        }),
        { status: 'TIMEOUT', transient: true, message: /for the CONNACK/ },
      );
    } finally {
      await server.close();
    }
  });

  it('an unknown transport name is INVALID_INPUT', function () {
    assert.throws(() => getTransport('smtp' as TransportName), {
      name: 'ProvisionError',
      status: 'INVALID_INPUT',
    });
  });
});
