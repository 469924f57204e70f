import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import type { ProvisionError } from '../src/protocol/errors';
import type { ProvisionAnswer } from '../src/protocol/types';
import { ProvisionCancelledError } from '../src/provisioner/errors';
import type { CredentialStore } from '../src/store/types';
import {
  deferred,
  fakeTransport,
  job,
  provisionerBench,
  storedFor,
  ticks,
  token,
  untilAborted,
} from './support/provisioner';

describe('provisioner: single flight', () => {
  const { make, store } = provisionerBench();

  it('sends one request for two simultaneous jobs for the same device; both get the answer', async () => {
    const answer = deferred<ProvisionAnswer>();
    const transport = fakeTransport(() => answer.promise);
    const credentials = store();
    // Single flight is the point here, not the store's first load and write.
    await credentials.ready();
    await credentials.writable();
    const provisioner = make(transport, { store: credentials });
    const a = provisioner.provision(job({ persist: true }));
    const b = provisioner.provision(
      job({ persist: false, target: { host: 'Tb.Example.Com', port: 8080 } }),
    );
    const c = provisioner.provision(job({ persist: true, reprovision: true }));
    const other = provisioner.provision(job({ deviceName: 'dev-2' }));
    await ticks();
    assert.equal(transport.calls.length, 2);
    answer.resolve(token('shared-token-0001'));
    const results = await Promise.all([a, b, c, other]);
    for (const result of results.slice(0, 3)) {
      assert.equal(result.answer.credentialsValue, 'shared-token-0001');
      assert.equal(result.cached, false);
    }
    assert.equal(transport.calls.length, 2);
    results[0].answer.credentialsValue = 'mutated';
    assert.equal(
      results[1].answer.credentialsValue,
      'shared-token-0001',
      'each job gets its own copy',
    );
  });

  it('joins a request in flight even while the store is still loading', async () => {
    const answer = deferred<ProvisionAnswer>();
    const transport = fakeTransport(() => answer.promise);
    const loading = deferred<undefined>();
    const real = store();
    const slowStore = Object.assign(Object.create(real) as CredentialStore, {
      ready: () => loading.promise.then(() => real.ready()),
    });
    const provisioner = make(transport, { store: slowStore });
    const quick = provisioner.provision(job({ persist: false }));
    const patient = provisioner.provision(job({ persist: true }));
    await ticks();
    answer.resolve(token('joined-token-0001'));
    await quick;
    loading.resolve(undefined);
    const joined = await patient;
    assert.equal(transport.calls.length, 1, 'one request for both');
    assert.equal(joined.answer.credentialsValue, 'joined-token-0001');
    assert.equal(joined.cached, false);
  });

  it('lets every job that comes before the store has loaded share one wait, each cancelled on its own', async () => {
    const loading = deferred<undefined>();
    const real = store();
    // Held back by the test, and then by the store's own loading.
    const slowStore = Object.assign(Object.create(real) as CredentialStore, {
      ready: () => loading.promise.then(() => real.ready()),
    });
    const transport = fakeTransport((request) => Promise.resolve(token(`t-${request.deviceName}`)));
    const provisioner = make(transport, { store: slowStore, concurrency: 50 });
    const own = new AbortController();
    const mine = provisioner.provision(
      job({ deviceName: 'own-signal', signal: own.signal, persist: true }),
    );
    const jobs = Array.from({ length: 2000 }, (_, i) =>
      provisioner.provision(job({ deviceName: `early-${i}`, persist: true })),
    );
    await ticks();
    const closing = (provisioner as unknown as { closing: AbortController }).closing.signal;
    assert.equal(getEventListeners(closing, 'abort').length, 1, 'one shared wait on close');
    own.abort();
    await assert.rejects(mine, ProvisionCancelledError);
    loading.resolve(undefined);
    const results = await Promise.all(jobs);
    assert.equal(transport.calls.length, 2000);
    assert.equal(results[1999].answer.credentialsValue, 't-early-1999');
  });

  it('gives each job waiting for the store its own error when the provisioner closes or the store cannot load', async () => {
    const never = Object.assign(Object.create(store()) as CredentialStore, {
      ready: () => new Promise<void>(() => undefined),
    });
    const closed = make(
      fakeTransport(() => Promise.resolve(token('unused-token'))),
      { store: never },
    );
    const waiting = [1, 2, 3].map((i) =>
      closed.provision(job({ deviceName: `w-${i}`, persist: true })),
    );
    const settled = Promise.allSettled(waiting);
    await closed.close();
    const cancelled = (await settled).map((r) => (r as PromiseRejectedResult).reason as Error);
    for (const err of cancelled) assert.ok(err instanceof ProvisionCancelledError);
    assert.equal(new Set(cancelled).size, 3);

    const broken = Object.create(store(), {
      ready: { value: () => Promise.reject(new Error('EACCES: permission denied')) },
      describe: { value: () => 'the credentials file /nowhere/credentials.json' },
    }) as CredentialStore;
    const failing = make(
      fakeTransport(() => Promise.resolve(token('unused-token'))),
      { store: broken },
    );
    const errors = await Promise.all(
      [1, 2].map((i) =>
        failing.provision(job({ deviceName: `f-${i}`, persist: true })).then(
          () => assert.fail('resolved'),
          (err: ProvisionError) => err,
        ),
      ),
    );
    for (const err of errors) {
      assert.equal(err.status, 'FAILURE');
      assert.match(err.message, /could not be read: EACCES/);
    }
    assert.notEqual(errors[0], errors[1]);
  });

  it('stores the shared answer when a joining job asks for it', async () => {
    const answer = deferred<ProvisionAnswer>();
    const credentials = store();
    const provisioner = make(
      fakeTransport(() => answer.promise),
      { store: credentials },
    );
    const leader = provisioner.provision(job({ persist: false }));
    const joiner = provisioner.provision(job({ persist: true }));
    await ticks();
    answer.resolve(token('shared-token-0002'));
    await Promise.all([leader, joiner]);
    assert.equal((await storedFor(credentials))?.answer.credentialsValue, 'shared-token-0002');
  });

  it('keeps the request going for the others when one job is aborted, and stops it when all are', async () => {
    const transport = fakeTransport((_r, options) => untilAborted(options));
    const provisioner = make(transport);
    const first = new AbortController();
    const second = new AbortController();
    const a = provisioner.provision(job({ signal: first.signal }));
    const b = provisioner.provision(job({ signal: second.signal }));
    await ticks();
    first.abort();
    await assert.rejects(a, ProvisionCancelledError);
    assert.equal(transport.calls[0].options.signal?.aborted, false);
    second.abort();
    await assert.rejects(b, ProvisionCancelledError);
    assert.equal(transport.calls[0].options.signal?.aborted, true);
    assert.equal(transport.calls.length, 1);
  });
});
