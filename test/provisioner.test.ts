/** The provisioner's steps together: a job's end to end, aborting, closing. */
import assert from 'node:assert/strict';
import { ProvisionError } from '../src/protocol/errors';
import { ProvisionCancelledError } from '../src/provisioner/errors';
import {
  echo,
  fakeTransport,
  job,
  provisionerBench,
  tick,
  untilAborted,
} from './support/provisioner';

describe('provisioner', () => {
  const { make } = provisionerBench();

  it('does not hand out a generated key when the server answers with another certificate', async () => {
    const transport = fakeTransport(async () => ({
      status: 'SUCCESS',
      credentialsType: 'X509_CERTIFICATE',
      credentialsValue: 'MIIBpreProvisionedCertificateBody',
    }));
    const result = await make(transport).provision(job({ credentialsMode: 'X509_CERTIFICATE' }));
    assert.equal(result.answer.credentialsValue, 'MIIBpreProvisionedCertificateBody');
    assert.equal(result.generated, undefined);
  });

  it('ends a running attempt and rejects as cancelled, not as the transport error', async () => {
    const transport = fakeTransport((_r, options) => untilAborted(options));
    const controller = new AbortController();
    const pending = make(transport).provision(job({ signal: controller.signal, retries: 3 }));
    await tick();
    controller.abort();
    await assert.rejects(pending, ProvisionCancelledError);
    assert.equal(transport.calls.length, 1);
  });

  it('rejects a job whose signal is already aborted without doing anything', async () => {
    const transport = fakeTransport(async (r) => echo(r));
    await assert.rejects(
      make(transport).provision(job({ signal: AbortSignal.abort() })),
      ProvisionCancelledError,
    );
    assert.equal(transport.calls.length, 0);
  });

  it('close() cancels queued and running jobs and waits until their exchanges have ended', async () => {
    let torndown = 0;
    const transport = fakeTransport(
      (_r, options) =>
        new Promise((_resolve, reject) => {
          options.signal?.addEventListener('abort', () =>
            setTimeout(() => {
              torndown++;
              reject(new ProvisionError('CONNECTION_ERROR', 'Provisioning was cancelled'));
            }, 30),
          );
        }),
    );
    const provisioner = make(transport, { concurrency: 2 });
    const jobs = Array.from({ length: 5 }, (_, i) =>
      provisioner.provision(job({ deviceName: `dev-${i}` })),
    );
    await tick();
    await provisioner.close();
    assert.equal(torndown, 2, 'close() resolved before the running exchanges ended');
    for (const pending of jobs) await assert.rejects(pending, ProvisionCancelledError);
    assert.equal(transport.calls.length, 2);
    assert.equal(provisioner.inFlight, 0);
    assert.equal(provisioner.queued, 0);
    await assert.rejects(provisioner.provision(job()), ProvisionCancelledError);
  });
});
