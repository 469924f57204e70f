/** Closing the provisioner (redeploy, shutdown): what was sent finishes and is kept; the rest goes. */
import assert from 'node:assert/strict';
import type { ProvisionAnswer } from '../src/protocol/types';
import { ProvisionCancelledError } from '../src/provisioner/errors';
import {
  deferred,
  fakeTransport,
  job,
  provisionerBench,
  storedFor,
  tick,
  ticks,
  token,
  transient,
  untilAborted,
  type Deferred,
} from './support/provisioner';

describe('provisioner: closing', () => {
  const { make, store } = provisionerBench();

  it('lets requests already sent finish and keeps their answers; drops the jobs not sent', async () => {
    const answers: Array<Deferred<ProvisionAnswer>> = [];
    const transport = fakeTransport(() => {
      const answer = deferred<ProvisionAnswer>();
      answers.push(answer);
      return answer.promise;
    });
    const credentials = store();
    await credentials.ready();
    await credentials.writable();
    const provisioner = make(transport, { store: credentials, concurrency: 2 });
    const jobs = Array.from({ length: 5 }, (_, i) =>
      provisioner.provision(job({ deviceName: `dev-${i}`, persist: true })),
    );
    await ticks();
    assert.equal(transport.calls.length, 2);
    let closed = false;
    const closing = provisioner.close(10_000).then(() => (closed = true));
    // Not sent: dropped at once, while the two at the server are still out.
    const dropped = await Promise.allSettled(jobs.slice(2));
    for (const outcome of dropped) {
      assert.ok(outcome.status === 'rejected' && outcome.reason instanceof ProvisionCancelledError);
    }
    await assert.rejects(
      provisioner.provision(job({ deviceName: 'late' })),
      ProvisionCancelledError,
    );
    assert.equal(closed, false);
    answers[0].resolve(token('token-of-dev-0'));
    answers[1].resolve(token('token-of-dev-1'));
    const [first, second] = await Promise.all(jobs.slice(0, 2));
    assert.equal(first.answer.credentialsValue, 'token-of-dev-0');
    assert.equal(second.answer.credentialsValue, 'token-of-dev-1');
    await closing;
    assert.equal(transport.calls.length, 2, 'nothing sent after close began');
    assert.equal(
      (await storedFor(credentials, 'dev-0'))?.answer.credentialsValue,
      'token-of-dev-0',
    );
    assert.equal(
      (await storedFor(credentials, 'dev-1'))?.answer.credentialsValue,
      'token-of-dev-1',
    );
  });

  it('makes no further attempt once closing, even with retries left', async () => {
    const first = deferred<ProvisionAnswer>();
    const transport = fakeTransport(() => first.promise);
    const provisioner = make(transport);
    const pending = provisioner.provision(job({ retries: 3 }));
    await tick();
    const closing = provisioner.close(10_000);
    first.reject(transient(true));
    await assert.rejects(pending, ProvisionCancelledError);
    await closing;
    assert.equal(transport.calls.length, 1);
  });

  it('aborts the requests still out when the grace period ends', async () => {
    const transport = fakeTransport((_r, options) => untilAborted(options));
    const provisioner = make(transport);
    const pending = provisioner.provision(job({ timeoutMs: 60_000 }));
    await tick();
    const started = Date.now();
    await provisioner.close(100);
    const took = Date.now() - started;
    assert.ok(took >= 90 && took < 2000, `closing took ${took} ms`);
    await assert.rejects(pending, ProvisionCancelledError);
  });
});
