/** Sending as devices over MQTTS and HTTPS: server certificates verified, X.509 devices by their certificate. */

import assert from 'node:assert/strict';
import type { Emulator } from '../src/emulator';
import { DeviceError, loginFromAnswer } from '../src/devices';
import type { DeviceLogin, DeviceServer } from '../src/devices';
import { generateCertificate } from '../src/provisioner/credentials';
import {
  FAST,
  HOST,
  TEST_CA_CERT,
  TEST_SERVER_CERT,
  TEST_SERVER_KEY,
  addDevice,
  connectionsForEachTest,
  outcomes,
  pemBody,
  startEmulator,
  telemetryOf,
} from './support/devices';

describe('devices: over TLS', function () {
  let emulator: Emulator;
  before(async () => {
    emulator = await startEmulator({
      tls: { key: TEST_SERVER_KEY, cert: TEST_SERVER_CERT, requestCert: true },
      mqttsPort: 0,
      httpsPort: 0,
    });
  });
  after(() => emulator.stop());

  const tlsServer = (ca?: string): DeviceServer => ({
    host: HOST,
    ports: {
      mqtt: emulator.ports.mqtts ?? 0,
      http: emulator.ports.https ?? 0,
      coap: emulator.ports.coap,
    },
    tls: ca === undefined ? {} : { ca },
  });
  const connections = connectionsForEachTest(() => ({ server: tlsServer(TEST_CA_CERT), ...FAST }));

  const send = (transport: 'mqtt' | 'http', name: string, login: DeviceLogin, timeoutMs = 3000) =>
    connections.current.send({
      deviceName: name,
      login,
      transport,
      message: { kind: 'telemetry', payload: { secure: true } },
      timeoutMs,
    });

  for (const transport of ['mqtt', 'http'] as const) {
    it(`${transport === 'mqtt' ? 'MQTTS' : 'HTTPS'}: an access token device, the server verified by its CA`, async function () {
      const device = addDevice(emulator, `tls-${transport}`);
      await send(transport, device.name, device.login);
      assert.deepEqual(telemetryOf(emulator, device.name), [{ secure: true }]);
    });
  }

  it('a server certificate nobody vouches for is refused, naming the certificate problem', async function () {
    const untrusting = connections.make({ server: tlsServer() });
    const device = addDevice(emulator, 'untrusted');
    const [result] = await outcomes([
      untrusting.send({
        deviceName: device.name,
        login: device.login,
        transport: 'mqtt',
        message: { kind: 'telemetry', payload: { a: 1 } },
        timeoutMs: 400,
      }),
    ]);
    assert.ok(!result.ok);
    assert.equal(result.err.status, 'CONNECTION_ERROR');
    assert.match(
      result.err.message,
      /TLS certificate of 127\.0\.0\.1:\d+ \(MQTT\) was not accepted/,
    );
    assert.deepEqual(telemetryOf(emulator, device.name), []);
  });

  it('X.509: the generated certificate and key log the device in over MQTTS', async function () {
    const name = `x509-${process.pid}`;
    const generated = await generateCertificate(name);
    emulator.addDevice({
      name,
      profile: 'devices',
      credentials: {
        credentialsType: 'X509_CERTIFICATE',
        certificate: pemBody(generated.certificate),
      },
    });
    const login = loginFromAnswer(
      {
        status: 'SUCCESS',
        credentialsType: 'X509_CERTIFICATE',
        credentialsValue: pemBody(generated.certificate),
      },
      generated,
    );
    await send('mqtt', name, login);
    assert.deepEqual(telemetryOf(emulator, name), [{ secure: true }]);
    await assert.rejects(send('http', name, login), (err: DeviceError) => {
      assert.equal(err.status, 'INVALID_INPUT');
      assert.doesNotMatch(err.message, /PRIVATE KEY/);
      return true;
    });
  });

  it('X.509 without the private key (a certificate the flow chose): NOT_PROVISIONED', function () {
    assert.throws(
      () =>
        loginFromAnswer({
          status: 'SUCCESS',
          credentialsType: 'X509_CERTIFICATE',
          credentialsValue: 'MIIB',
        }),
      (err: DeviceError) => err.status === 'NOT_PROVISIONED' && /private key/.test(err.message),
    );
  });
});
