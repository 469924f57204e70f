/** Every row of the spec's outcome table, through every transport, against the emulator. */

import * as assert from 'node:assert/strict';
import type { ProvisionRequest } from '../src/protocol';
import { getTransport } from '../src/transports';
import type { TransportName } from '../src/transports';
import { TRANSPORTS } from './support/common';
import {
  ALLOW,
  DISABLED,
  LEGACY,
  PRE,
  allowRequest,
  deadlineIn,
  expectProvisionError,
  pemBody,
  startEmulator,
  targetOf,
  uniqueName,
  watchForLeaks,
} from './support/transport-helpers';
import type { RemoteEmulator } from './support/transport-helpers';
import { TEST_DEVICE_CERTS } from './support/transport-certificates';

describe('transports: outcome table against the emulator', function () {
  let emulator: RemoteEmulator;

  before(async function () {
    emulator = await startEmulator();
  });
  after(async function () {
    await emulator.stop();
  });
  watchForLeaks();

  for (const transport of TRANSPORTS) {
    describe(transport, function () {
      const provision = (request: ProvisionRequest, timeoutMs = 5000) =>
        getTransport(transport)(targetOf(emulator, transport), request, {
          deadline: deadlineIn(timeoutMs),
        });
      const name = (what: string) => uniqueName(`${transport}-${what}`);

      it('SUCCESS: the server generates an access token', async function () {
        const deviceName = name('server-token');
        const answer = await provision(allowRequest(deviceName));
        assert.equal(answer.status, 'SUCCESS');
        assert.equal(answer.credentialsType, 'ACCESS_TOKEN');
        assert.match(String(answer.credentialsValue), /^[A-Za-z0-9]{20}$/);
        const device = await emulator.device(deviceName);
        assert.ok(device, 'the device was created');
        assert.deepEqual(device.credentials, {
          credentialsType: 'ACCESS_TOKEN',
          token: answer.credentialsValue,
        });
        assert.equal(device.profile, 'allow');
        assert.equal(device.gateway, false);
      });

      it('SUCCESS: a device-chosen access token comes back as sent', async function () {
        const token = `chosen-${transport}-${process.pid}`;
        const answer = await provision(
          allowRequest(name('chosen-token'), { credentialsType: 'ACCESS_TOKEN', token }),
        );
        assert.deepEqual(answer, {
          status: 'SUCCESS',
          credentialsType: 'ACCESS_TOKEN',
          credentialsValue: token,
        });
      });

      it('SUCCESS: MQTT basic credentials come back with userName', async function () {
        const answer = await provision(
          allowRequest(name('basic'), {
            credentialsType: 'MQTT_BASIC',
            clientId: `client-${transport}`,
            username: `user-${transport}`,
            password: 'pass-word',
          }),
        );
        assert.deepEqual(answer, {
          status: 'SUCCESS',
          credentialsType: 'MQTT_BASIC',
          credentialsValue: {
            clientId: `client-${transport}`,
            userName: `user-${transport}`,
            password: 'pass-word',
          },
        });
      });

      it('SUCCESS: an X.509 certificate comes back as its PEM body', async function () {
        // Each device needs its own certificate: the server keeps them unique.
        const certificate = TEST_DEVICE_CERTS[TRANSPORTS.indexOf(transport)];
        const answer = await provision(
          allowRequest(name('x509'), { credentialsType: 'X509_CERTIFICATE', hash: certificate }),
        );
        assert.deepEqual(answer, {
          status: 'SUCCESS',
          credentialsType: 'X509_CERTIFICATE',
          credentialsValue: pemBody(certificate),
        });
      });

      it('SUCCESS: the gateway flag makes a gateway device', async function () {
        const deviceName = name('gateway');
        const answer = await provision(allowRequest(deviceName, { gateway: true }));
        assert.equal(answer.status, 'SUCCESS');
        assert.equal((await emulator.device(deviceName))?.gateway, true);
      });

      const notFound = (request: ProvisionRequest) =>
        expectProvisionError(provision(request), {
          status: 'NOT_FOUND',
          transient: false,
        });

      it('NOT_FOUND: unknown provision key', async function () {
        await notFound({ ...allowRequest(name('nf-key')), provisionDeviceKey: 'no-such-key' });
      });

      it('NOT_FOUND: wrong secret', async function () {
        await notFound({ ...allowRequest(name('nf-secret')), provisionDeviceSecret: 'wrong' });
      });

      it('NOT_FOUND: empty key and secret', async function () {
        await notFound({
          ...allowRequest(name('nf-empty')),
          provisionDeviceKey: '',
          provisionDeviceSecret: '',
        });
      });

      it('NOT_FOUND: provisioning disabled on the profile', async function () {
        const err = await notFound({
          provisionDeviceKey: DISABLED.key,
          provisionDeviceSecret: DISABLED.secret,
          deviceName: name('nf-disabled'),
        });
        assert.equal(err.serverMessage, 'Provision data was not found!');
      });

      const failure = (request: ProvisionRequest) =>
        expectProvisionError(provision(request), { status: 'FAILURE', transient: false });

      it('FAILURE: a device with that name exists', async function () {
        const deviceName = name('exists');
        await provision(allowRequest(deviceName));
        const err = await failure(allowRequest(deviceName));
        assert.equal(err.serverMessage, 'Failed to provision device!');
      });

      it('FAILURE: the chosen token is used by another device', async function () {
        const token = `dup-${transport}-${process.pid}`;
        await provision(allowRequest(name('dup-1'), { credentialsType: 'ACCESS_TOKEN', token }));
        await failure(allowRequest(name('dup-2'), { credentialsType: 'ACCESS_TOKEN', token }));
      });

      it('FAILURE: an invalid MQTT basic combination (password, client id, no user name)', async function () {
        await failure(
          allowRequest(name('bad-basic'), {
            credentialsType: 'MQTT_BASIC',
            clientId: 'only-client',
            password: 'secret',
          }),
        );
      });

      describe('check pre-provisioned devices', function () {
        const preRequest = (deviceName: string, keys = PRE): ProvisionRequest => ({
          provisionDeviceKey: keys.key,
          provisionDeviceSecret: keys.secret,
          deviceName,
        });
        const addPreDevice = (deviceName: string, profile: string, token: string): Promise<void> =>
          emulator.addDevice({
            name: deviceName,
            profile,
            credentials: { credentialsType: 'ACCESS_TOKEN', token },
          });

        it('FAILURE: the device is missing', async function () {
          await failure(preRequest(name('pre-missing')));
        });

        it('FAILURE: the device is in another profile', async function () {
          const deviceName = name('pre-other');
          await addPreDevice(deviceName, 'allow', `other-${transport}-${process.pid}`);
          await failure(preRequest(deviceName));
        });

        it('SUCCESS with the existing credentials the first time, FAILURE again', async function () {
          const deviceName = name('pre-once');
          const token = `pre-${transport}-${process.pid}`;
          await addPreDevice(deviceName, 'pre', token);
          const answer = await provision({
            ...preRequest(deviceName),
            credentialsType: 'ACCESS_TOKEN',
            token: 'ignored-by-the-server',
          });
          assert.deepEqual(answer, {
            status: 'SUCCESS',
            credentialsType: 'ACCESS_TOKEN',
            credentialsValue: token,
          });
          await failure(preRequest(deviceName));
        });

        it('servers before 4.2.1.1 answer SUCCESS again', async function () {
          const deviceName = name('legacy');
          const token = `legacy-${transport}-${process.pid}`;
          await addPreDevice(deviceName, 'legacy', token);
          for (let attempt = 0; attempt < 2; attempt += 1) {
            const answer = await provision(preRequest(deviceName, LEGACY));
            assert.equal(answer.credentialsValue, token);
          }
        });
      });

      it('sends the request JSON the server records, with no null fields', async function () {
        const deviceName = name('recorded');
        await provision(allowRequest(deviceName, { gateway: true }));
        const recorded = (await emulator.requests()).filter(
          (entry) =>
            entry.transport === transport &&
            (entry.body as { deviceName?: unknown } | undefined)?.deviceName === deviceName,
        );
        assert.equal(recorded.length, 1);
        assert.deepEqual(recorded[0].body, {
          provisionDeviceKey: ALLOW.key,
          provisionDeviceSecret: ALLOW.secret,
          deviceName,
          gateway: true,
        });
      });
    });
  }

  it('each transport reaches only its own port', async function () {
    const transports: TransportName[] = ['mqtt', 'http', 'coap'];
    const answers = await Promise.all(
      transports.map((transport) =>
        getTransport(transport)(
          targetOf(emulator, transport),
          allowRequest(uniqueName(`par-${transport}`)),
          {
            deadline: deadlineIn(5000),
          },
        ),
      ),
    );
    for (const answer of answers) assert.equal(answer.status, 'SUCCESS');
  });
});
