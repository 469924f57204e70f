import assert from 'node:assert/strict';
import type { ProvisionError } from '../src/protocol/errors';
import type { ProvisionJob } from '../src/provisioner/types';
import { SECRET, echo, fakeTransport, job, provisionerBench, token } from './support/provisioner';

describe('provisioner: validation', () => {
  const { make } = provisionerBench();

  for (const [label, overrides] of [
    ['a missing device name', { deviceName: undefined }],
    ['an empty device name', { deviceName: '' }],
    ['a whitespace-only device name', { deviceName: ' \t ' }],
    ['a missing secret', { provisionDeviceSecret: '' }],
    ['a missing key', { provisionDeviceKey: '' }],
    [
      'credentials of the wrong shape',
      { credentialsMode: 'ACCESS_TOKEN', credentials: { password: 'x' } },
    ],
    ['credentials that are not an object', { credentialsMode: 'MQTT_BASIC', credentials: 'abc' }],
    ['an unknown credentials mode', { credentialsMode: 'PSK' }],
    ['an unknown transport', { transport: 'ws' }],
    ['a negative retry count', { retries: -1 }],
    ['a zero timeout', { timeoutMs: 0 }],
  ] as Array<[string, Partial<ProvisionJob>]>) {
    it(`rejects ${label} with INVALID_INPUT before anything is sent`, async () => {
      const transport = fakeTransport(async (r) => echo(r));
      const provisioner = make(transport);
      await assert.rejects(provisioner.provision(job(overrides)), (err: ProvisionError) => {
        assert.equal(err.status, 'INVALID_INPUT');
        assert.ok(!err.message.includes(SECRET));
        return true;
      });
      assert.equal(transport.calls.length, 0);
    });
  }

  it('names every transport and credentials type it takes', async () => {
    const provisioner = make(fakeTransport(async (r) => echo(r)));
    await assert.rejects(provisioner.provision(job({ transport: 'ws' as 'http' })), {
      message: /use mqtt, http or coap\.$/,
    });
    await assert.rejects(provisioner.provision(job({ credentialsMode: 'PSK' as 'server' })), {
      message: /use server, ACCESS_TOKEN, MQTT_BASIC or X509_CERTIFICATE\.$/,
    });
  });

  it('ignores msg.credentials when the server chooses the credentials', async () => {
    const transport = fakeTransport(async (r) => echo(r));
    const result = await make(transport).provision(job({ credentials: { token: 'mine-123456' } }));
    assert.equal(result.answer.credentialsValue, 'server-chosen-token-0001');
    assert.equal(transport.calls[0].request.token, undefined);
    assert.equal(transport.calls[0].request.credentialsType, undefined);
  });

  it('sends the trimmed name, key, secret, gateway flag and supplied credentials', async () => {
    const transport = fakeTransport(async (r) => echo(r));
    const result = await make(transport).provision(
      job({
        deviceName: '  dev-7 ',
        gateway: true,
        credentialsMode: 'ACCESS_TOKEN',
        credentials: { token: 'my-own-token-42' },
      }),
    );
    assert.deepEqual(transport.calls[0].request, {
      provisionDeviceKey: 'profile-key',
      provisionDeviceSecret: SECRET,
      deviceName: 'dev-7',
      credentialsType: 'ACCESS_TOKEN',
      token: 'my-own-token-42',
      gateway: true,
    });
    assert.equal(result.deviceName, 'dev-7');
    assert.deepEqual(result.answer, token('my-own-token-42'));
    assert.equal(result.cached, false);
    assert.ok(Math.abs(Date.parse(result.provisionedAt) - Date.now()) < 5_000);
    assert.equal(result.generated, undefined);
  });
});
