import assert from 'node:assert/strict';
import type { ProvisionAnswer } from '../src/protocol/types';
import { ProvisionCancelledError } from '../src/provisioner/errors';
import { Slots } from '../src/provisioner/slots';
import {
  deferred,
  fakeTransport,
  job,
  provisionerBench,
  tick,
  ticks,
  token,
  untilAborted,
  type Deferred,
} from './support/provisioner';

describe('provisioner: slots', () => {
  const { make } = provisionerBench();

  it('runs at most `concurrency` exchanges at once, in FIFO order, and reports every change', async () => {
    const pending: Array<Deferred<ProvisionAnswer>> = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const transport = fakeTransport(async () => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const answer = deferred<ProvisionAnswer>();
      pending.push(answer);
      try {
        return await answer.promise;
      } finally {
        inFlight--;
      }
    });
    const activity: Array<{ inFlight: number; queued: number }> = [];
    const provisioner = make(transport, { concurrency: 3, onActivity: (s) => activity.push(s) });
    const jobs = Array.from({ length: 10 }, (_, i) =>
      provisioner.provision(job({ deviceName: `dev-${i}` })),
    );
    await ticks();
    assert.equal(provisioner.inFlight, 3);
    assert.equal(provisioner.queued, 7);
    assert.deepEqual(activity.at(-1), { inFlight: 3, queued: 7 });
    while (pending.length > 0 || transport.calls.length < 10) {
      pending.shift()?.resolve(token('t-000001'));
      await ticks();
    }
    await Promise.all(jobs);
    assert.equal(maxInFlight, 3);
    assert.deepEqual(
      transport.calls.map((c) => c.request.deviceName),
      Array.from({ length: 10 }, (_, i) => `dev-${i}`),
    );
    assert.deepEqual(activity.at(-1), { inFlight: 0, queued: 0 });
    assert.ok(activity.every((s) => s.inFlight <= 3));
    for (let i = 1; i < activity.length; i++) assert.notDeepEqual(activity[i], activity[i - 1]);
  });

  it('lets more through at once when the concurrency is raised', async () => {
    const transport = fakeTransport((_r, options) => untilAborted(options));
    const provisioner = make(transport, { concurrency: 1 });
    const jobs = Array.from({ length: 4 }, (_, i) =>
      provisioner.provision(job({ deviceName: `dev-${i}` })).catch(() => undefined),
    );
    await tick();
    assert.equal(transport.calls.length, 1);
    provisioner.setConcurrency(3);
    await tick();
    assert.equal(transport.calls.length, 3);
    assert.equal(provisioner.queued, 1);
    assert.throws(() => provisioner.setConcurrency(0), RangeError);
    await provisioner.close();
    await Promise.all(jobs);
  });

  it('removes a queued job at once, without ever sending it', async () => {
    const transport = fakeTransport((_r, options) => untilAborted(options));
    const provisioner = make(transport, { concurrency: 1 });
    const running = provisioner.provision(job({ deviceName: 'running' })).catch((e: unknown) => e);
    const controller = new AbortController();
    const queued = provisioner.provision(job({ deviceName: 'queued', signal: controller.signal }));
    await tick();
    assert.equal(provisioner.queued, 1);
    controller.abort();
    await assert.rejects(queued, ProvisionCancelledError);
    assert.equal(provisioner.queued, 0);
    await provisioner.close();
    assert.ok((await running) instanceof ProvisionCancelledError);
    assert.deepEqual(
      transport.calls.map((c) => c.request.deviceName),
      ['running'],
    );
  });

  it('keeps a queued request while another job still waits for it, and drops it when none does', async () => {
    const release = deferred<undefined>();
    const transport = fakeTransport(async (request) => {
      if (request.deviceName === 'running') await release.promise;
      return token(`token-${request.deviceName}`);
    });
    const provisioner = make(transport, { concurrency: 1 });
    const running = provisioner.provision(job({ deviceName: 'running' }));
    const leaving = new AbortController();
    const staying = new AbortController();
    const first = provisioner.provision(job({ deviceName: 'shared', signal: leaving.signal }));
    const second = provisioner.provision(job({ deviceName: 'shared', signal: staying.signal }));
    const alone = new AbortController();
    const dropped = provisioner.provision(job({ deviceName: 'dropped', signal: alone.signal }));
    await tick();
    assert.equal(provisioner.queued, 2);

    leaving.abort();
    await assert.rejects(first, ProvisionCancelledError);
    assert.equal(provisioner.queued, 2, 'the second job still waits for the shared request');
    alone.abort();
    await assert.rejects(dropped, ProvisionCancelledError);
    assert.equal(provisioner.queued, 1, 'nobody waits for the dropped request any more');

    release.resolve(undefined);
    assert.equal((await running).answer.credentialsValue, 'token-running');
    assert.equal((await second).answer.credentialsValue, 'token-shared');
    assert.deepEqual(
      transport.calls.map((c) => c.request.deviceName),
      ['running', 'shared'],
    );
  });

  it('hands each freed slot to the oldest waiting item, and takes a left item out of line', () => {
    const started: string[] = [];
    const slots = new Slots<string>(2, (item) => started.push(item));
    for (const item of ['a', 'b', 'c', 'd', 'e']) slots.enter(item);
    assert.deepEqual(started, ['a', 'b']);
    assert.equal(slots.queued, 3);
    assert.equal(slots.leave('d'), true);
    assert.equal(slots.leave('a'), false, 'a started item is not in the queue');
    slots.release();
    slots.release();
    assert.deepEqual(started, ['a', 'b', 'c', 'e']);
    assert.equal(slots.inFlight, 2);
    assert.equal(slots.queued, 0);
  });
});
