import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
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

  it('refuses a device name of 200 MB without copying it whole (in a 256 MB heap)', async function () {
    this.timeout(20_000);
    const provisionerModule = path.resolve(__dirname, '../src/provisioner/provisioner.ts');
    const script = `
      const { Provisioner } = require(${JSON.stringify(provisionerModule)});
      new Provisioner({ concurrency: 1 }).provision({
        transport: 'http', target: { host: 'tb.example.com', port: 8080 },
        provisionDeviceKey: 'k', provisionDeviceSecret: 's', deviceName: 'd'.repeat(200e6),
        credentialsMode: 'server', timeoutMs: 1000, retries: 0, persist: false,
      }).catch((err) => process.stdout.write(JSON.stringify({ status: err.status, message: err.message })));
    `;
    const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>(
      (resolve) => {
        const child = execFile(
          process.execPath,
          ['--max-old-space-size=256', '-r', 'tsx/cjs', '-e', script],
          { cwd: path.resolve(__dirname, '..') },
          (_err, out) => resolve({ code: child.exitCode, stdout: out }),
        );
      },
    );
    assert.equal(code, 0, 'ran out of memory copying the name');
    const { status, message } = JSON.parse(stdout) as { status: string; message: string };
    assert.equal(status, 'INVALID_INPUT');
    assert.match(message, /^The device name "d{24}…" is 200000000 characters long/);
  });

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
