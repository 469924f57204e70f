/** Sending as devices over MQTT, HTTP and CoAP to the emulator: data recorded, refusals and their statuses. */

import assert from 'node:assert/strict';
import type { Emulator } from '../src/emulator';
import { DeviceError, loginFromAnswer } from '../src/devices';
import type { DeviceLogin, DeviceSend } from '../src/devices';
import { TRANSPORT_NAMES as TRANSPORTS } from '../src/transports';
import type { TransportName } from '../src/transports';
import {
  FAST,
  addDevice,
  connectionsForEachTest,
  serverOf,
  startEmulator,
  telemetryOf,
  waitFor,
} from './support/devices';

const NOW = 1_767_225_600_000;

async function expectDeviceError(
  promise: Promise<unknown>,
  status: string,
  message?: RegExp,
): Promise<DeviceError> {
  const err = await promise.then(
    () => assert.fail(`expected ${status}, the message was accepted`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof DeviceError, `expected a DeviceError, got ${String(err)}`);
  assert.equal(err.status, status, err.message);
  if (message !== undefined) assert.match(err.message, message);
  return err;
}

describe('devices: sending as a device', function () {
  let emulator: Emulator;
  before(async () => {
    emulator = await startEmulator();
  });
  after(() => emulator.stop());
  const connections = connectionsForEachTest(() => ({ server: serverOf(emulator), ...FAST }), {
    timers: false,
  });

  const send = (
    transport: TransportName,
    login: DeviceLogin,
    name: string,
    extra: Partial<DeviceSend> = {},
  ) =>
    connections.current.send({
      deviceName: name,
      login,
      transport,
      message: { kind: 'telemetry', payload: { temperature: 21.5 } },
      timeoutMs: 3000,
      ...extra,
    });

  for (const transport of TRANSPORTS) {
    describe(transport, function () {
      it('telemetry in all three shapes and client attributes reach the server', async function () {
        const device = addDevice(emulator, `send-${transport}`);
        const batch = [
          { ts: NOW, values: { a: 1 } },
          { ts: NOW + 1, values: { a: 2 } },
        ];
        await send(transport, device.login, device.name);
        await send(transport, device.login, device.name, {
          message: { kind: 'telemetry', payload: { ts: NOW, values: { b: true } } },
        });
        await send(transport, device.login, device.name, {
          message: { kind: 'telemetry', payload: batch },
        });
        await send(transport, device.login, device.name, {
          message: { kind: 'attributes', payload: { firmware: '1.2.3' } },
        });
        assert.deepEqual(telemetryOf(emulator, device.name), [
          { temperature: 21.5 },
          { ts: NOW, values: { b: true } },
          batch,
        ]);
        assert.deepEqual(emulator.device(device.name)?.attributes, { firmware: '1.2.3' });
      });

      it('a refused token: UNAUTHORIZED, and the token appears in no error text', async function () {
        const login: DeviceLogin = { type: 'ACCESS_TOKEN', token: `unknown-token-${transport}-x9` };
        const err = await expectDeviceError(
          send(transport, login, `nobody-${transport}`),
          'UNAUTHORIZED',
          /refused the (access token|credentials) of device "nobody-\w+".*Provision it again/,
        );
        assert.doesNotMatch(err.message, /unknown-token/);
      });

      it('close() right after a send: HTTP and CoAP let it finish, MQTT counts it unsent', async function () {
        const device = addDevice(emulator, `close-${transport}`);
        const c = connections.current;
        const [outcome, report] = await Promise.all([
          send(transport, device.login, device.name).then(
            () => 'sent',
            (err: DeviceError) => err.status,
          ),
          c.close(),
        ]);
        if (transport === 'mqtt') {
          // Still connecting: nothing was written, so nothing is waited for.
          assert.deepEqual([outcome, report], ['CONNECTION_ERROR', { unsent: 1 }]);
          assert.deepEqual(telemetryOf(emulator, device.name), []);
        } else {
          assert.deepEqual([outcome, report], ['sent', { unsent: 0 }]);
          assert.deepEqual(telemetryOf(emulator, device.name), [{ temperature: 21.5 }]);
        }
        await expectDeviceError(
          send(transport, device.login, device.name),
          'CONNECTION_ERROR',
          /closing/,
        );
      });

      it('a malformed payload is INVALID_INPUT before anything is sent', async function () {
        const device = addDevice(emulator, `bad-${transport}`);
        const states: string[] = [];
        connections.current.on('session', (change) => states.push(change.state));
        await send(transport, device.login, device.name);
        await expectDeviceError(
          send(transport, device.login, device.name, {
            message: { kind: 'telemetry', payload: { ts: 5, values: { a: 1 } } },
          }),
          'INVALID_INPUT',
          /looks like seconds/,
        );
        await send(transport, device.login, device.name);
        assert.deepEqual(telemetryOf(emulator, device.name), [
          { temperature: 21.5 },
          { temperature: 21.5 },
        ]);
        // Over MQTT the one connection carried both: nothing closed it in between.
        assert.deepEqual(states, transport === 'mqtt' ? ['connected'] : []);
      });
    });
  }

  describe('mqtt', function () {
    it('QoS 0 resolves once written; the data arrives', async function () {
      const device = addDevice(emulator, 'qos0');
      await Promise.all(
        [1, 2, 3].map((n) =>
          send('mqtt', device.login, device.name, {
            qos: 0,
            message: { kind: 'telemetry', payload: { n } },
          }),
        ),
      );
      await waitFor('three messages', () => telemetryOf(emulator, device.name).length === 3);
      assert.deepEqual(telemetryOf(emulator, device.name), [{ n: 1 }, { n: 2 }, { n: 3 }]);
    });

    it('messages of one device arrive in the order sent, many in flight at once', async function () {
      const device = addDevice(emulator, 'order');
      const sends = Array.from({ length: 300 }, (_, n) =>
        send('mqtt', device.login, device.name, { message: { kind: 'telemetry', payload: { n } } }),
      );
      await Promise.all(sends);
      assert.deepEqual(
        telemetryOf(emulator, device.name),
        Array.from({ length: 300 }, (_, n) => ({ n })),
      );
      assert.equal(connections.current.summary().connected, 1);
    });

    it('a PUBLISH of 65 536 bytes goes out; one byte more is INVALID_INPUT, unsent; the session goes on', async function () {
      const device = addDevice(emulator, 'big');
      const changes: string[] = [];
      connections.current.on('session', (change) => changes.push(change.state));
      // {"blob":"…"} on v1/devices/me/telemetry at QoS 1: 31 bytes of packet around the blob.
      const largest = 65_536 - 31 - 11;
      await send('mqtt', device.login, device.name, {
        message: { kind: 'telemetry', payload: { blob: 'x'.repeat(largest) } },
      });
      await expectDeviceError(
        send('mqtt', device.login, device.name, {
          message: { kind: 'telemetry', payload: { blob: 'x'.repeat(largest + 1) } },
        }),
        'INVALID_INPUT',
        /MQTT packet of 65537 bytes; ThingsBoard closes the connection .* more than 65536/,
      );
      await send('mqtt', device.login, device.name);
      assert.equal(telemetryOf(emulator, device.name).length, 2);
      assert.deepEqual(changes, ['connected']);
    });

    it('MQTT basic credentials log in', async function () {
      const device = addDevice(
        emulator,
        'basic',
        {
          credentialsType: 'MQTT_BASIC',
          clientId: 'c-basic-1',
          userName: 'u-basic-1',
          password: 'p-1',
        },
        loginFromAnswer({
          status: 'SUCCESS',
          credentialsType: 'MQTT_BASIC',
          credentialsValue: { clientId: 'c-basic-1', userName: 'u-basic-1', password: 'p-1' },
        }),
      );
      await send('mqtt', device.login, device.name);
      assert.deepEqual(telemetryOf(emulator, device.name), [{ temperature: 21.5 }]);
    });

    it('an RPC reply goes to the response topic of its request', async function () {
      const device = addDevice(emulator, 'reply');
      await connections.current.replyRpc(device.name, 7, { ok: true }, { login: device.login });
      await expectDeviceError(
        connections.current.replyRpc(device.name, 'seven', 1),
        'INVALID_INPUT',
        /msg\.rpc\.id must be/,
      );
      await expectDeviceError(
        connections.current.replyRpc(`never-${device.name}`, 1, 1),
        'CONNECTION_ERROR',
        /no open connection to carry the reply/,
      );
    });
  });

  describe('logins each transport cannot use', function () {
    it('MQTT basic and X.509 over HTTP or CoAP: INVALID_INPUT naming MQTT', async function () {
      const basic: DeviceLogin = { type: 'MQTT_BASIC', username: 'u', password: 'secret-pw-1' };
      for (const transport of ['http', 'coap'] as const) {
        const err = await expectDeviceError(
          send(transport, basic, 'b'),
          'INVALID_INPUT',
          /MQTT basic credentials, which ThingsBoard takes over MQTT only/,
        );
        assert.doesNotMatch(err.message, /secret-pw-1/);
      }
      const x509: DeviceLogin = { type: 'X509_CERTIFICATE', certificate: 'c', privateKey: 'k' };
      await expectDeviceError(send('http', x509, 'x'), 'INVALID_INPUT', /X\.509 certificate/);
      await expectDeviceError(send('mqtt', x509, 'x'), 'INVALID_INPUT', /takes MQTT over TLS/);
    });

    it('an RPC reply over HTTP: INVALID_INPUT', async function () {
      const device = addDevice(emulator, 'reply-http');
      await expectDeviceError(
        send('http', device.login, device.name, {
          message: { kind: 'rpc-reply', id: 1, payload: 1 },
        }),
        'INVALID_INPUT',
        /goes back over MQTT/,
      );
    });

    it('CoAP with TLS: INVALID_INPUT, DTLS is not offered', async function () {
      const tlsConnections = connections.make({
        server: { ...serverOf(emulator), tls: { rejectUnauthorized: true } },
      });
      const device = addDevice(emulator, 'dtls');
      await expectDeviceError(
        tlsConnections.send({
          deviceName: device.name,
          login: device.login,
          transport: 'coap',
          message: { kind: 'telemetry', payload: { a: 1 } },
        }),
        'INVALID_INPUT',
        /CoAP over DTLS is not offered/,
      );
    });

    it('a CoAP message too large for one datagram: INVALID_INPUT, unsent', async function () {
      const device = addDevice(emulator, 'coap-big');
      await expectDeviceError(
        send('coap', device.login, device.name, {
          message: { kind: 'telemetry', payload: { blob: 'x'.repeat(2000) } },
        }),
        'INVALID_INPUT',
        /does not fit in one CoAP datagram/,
      );
      assert.deepEqual(telemetryOf(emulator, device.name), []);
    });
  });
});
