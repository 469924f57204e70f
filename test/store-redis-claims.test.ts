/**
 * Claims of the Redis backend against a real redis-server: one holder per device among every
 * handle (each stands for a process), waiters woken by the release, holds renewed while they
 * last and released only by their holder, and what a dead holder leaves for the next one.
 */

import assert from 'node:assert/strict';
import { setMaxListeners } from 'node:events';
import { deviceKey, openRedisStore, type RedisCredentialStore } from '../src/store';
import type { DeviceClaim, SentCredentials } from '../src/store';
import { RedisConnection } from '../src/store/redis/connection';
import { redisEndpoint } from '../src/store/redis/options';
import { RedisServer } from './support/redis-server';
import { storedEntry } from './support/stored-entries';

const keyOf = (deviceName: string) => deviceKey('tb.example', 'profile-key', deviceName);
const claimKey = (deviceName: string) => `tb-provision:claim:${keyOf(deviceName)}`;
const sendingKey = (deviceName: string) => `tb-provision:sending:${keyOf(deviceName)}`;
const never = new AbortController().signal;
// Hundreds of waits share it, as a provisioner's waiting flights share its closing signal.
setMaxListeners(0, never);
const SENT: SentCredentials = {
  credentials: { type: 'ACCESS_TOKEN', token: 'generated-token-0001' },
};

/** Holds a device the test expects to be free. */
async function take(
  store: RedisCredentialStore,
  deviceName: string,
  holdMs: number,
): Promise<DeviceClaim> {
  const claim = await store.claim(keyOf(deviceName), { holdMs });
  assert.ok(claim.held, `${deviceName} is free`);
  return claim;
}

const settledWithin = async <T>(promise: Promise<T>, ms: number): Promise<T | 'pending'> =>
  Promise.race([promise, new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms))]);

describe('credential store: Redis claims (single flight across processes)', function () {
  this.timeout(20_000);
  let server: RedisServer;
  let raw: RedisConnection;
  const open: RedisCredentialStore[] = [];
  const handle = (): RedisCredentialStore => {
    const store = openRedisStore({ url: server.url });
    open.push(store);
    return store;
  };

  before(async function () {
    server = await RedisServer.start();
    raw = new RedisConnection(redisEndpoint({ url: server.url }));
  });
  afterEach(async function () {
    await Promise.all(open.splice(0).map((store) => store.release()));
    await raw.command(['FLUSHALL']);
  });
  after(async function () {
    raw.close();
    await server.stop();
  });

  it('holds a free device at once, under a random token that expires, and reads its entry in the same step', async function () {
    const a = handle();
    const claim = await take(a, 'free', 5000);
    assert.equal(claim.entry, undefined);
    assert.equal(claim.unanswered, undefined);
    assert.match((await raw.get(claimKey('free'))) ?? '', /^[0-9a-f]{32}$/);
    const pttl = Number(await raw.command(['PTTL', claimKey('free')]));
    assert.ok(pttl > 4000 && pttl <= 5000, `expires: ${pttl}`);
    await claim.release();
    assert.equal(await raw.get(claimKey('free')), null);

    await a.put(storedEntry('free'));
    const again = await take(a, 'free', 5000);
    assert.deepEqual(again.entry, storedEntry('free'));
    await again.release();
  });

  it('tells another process the device is held, and wakes it at the release to find the answer kept', async function () {
    const [a, b] = [handle(), handle()];
    const held = await take(a, 'shared', 10_000);
    const elsewhere = await b.claim(keyOf('shared'), { holdMs: 10_000 });
    assert.equal(elsewhere.held, false, 'one holder at a time');
    assert.ok(!elsewhere.held);
    const released = elsewhere.released(never);
    assert.equal(await settledWithin(released, 300), 'pending');
    await a.put(storedEntry('shared'));
    const releasedAt = Date.now();
    await held.release();
    await released;
    // Woken by the notice, well before a waiter would look again by itself (2 s).
    assert.ok(Date.now() - releasedAt < 1000, `woken after ${Date.now() - releasedAt} ms`);
    const taken = await take(b, 'shared', 10_000);
    assert.deepEqual(taken.entry, storedEntry('shared'));
    await taken.release();
  });

  it('wakes hundreds of waiters as their devices are released', async function () {
    const [a, b] = [handle(), handle()];
    const names = Array.from({ length: 300 }, (_, i) => `many-${i}`);
    const held = await Promise.all(names.map((name) => take(a, name, 10_000)));
    const waiting = await Promise.all(
      names.map(async (name) => {
        const elsewhere = await b.claim(keyOf(name), { holdMs: 10_000 });
        assert.ok(!elsewhere.held, name);
        return elsewhere.released(never);
      }),
    );
    const started = Date.now();
    await Promise.all(
      held.map(async (claim, i) => {
        await a.put(storedEntry(names[i]));
        await claim.release();
      }),
    );
    await Promise.all(waiting);
    assert.ok(Date.now() - started < 1900, `all woken after ${Date.now() - started} ms`);
    const taken = await Promise.all(names.map((name) => take(b, name, 10_000)));
    taken.forEach((claim, i) => assert.deepEqual(claim.entry, storedEntry(names[i])));
    await Promise.all(taken.map((claim) => claim.release()));
  });

  it('renews a hold while it lasts, so a long flight keeps its device', async function () {
    const [a, b] = [handle(), handle()];
    const held = await take(a, 'long', 400);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.ok(Number(await raw.command(['PTTL', claimKey('long')])) > 0);
    assert.equal((await b.claim(keyOf('long'), { holdMs: 400 })).held, false);
    await held.sending(SENT);
    await held.release();
  });

  it('a wait for a release ends at once when its signal aborts', async function () {
    const [a, b] = [handle(), handle()];
    const held = await take(a, 'aborted', 10_000);
    const elsewhere = await b.claim(keyOf('aborted'), { holdMs: 10_000 });
    assert.ok(!elsewhere.held);
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 50);
    const started = Date.now();
    await elsewhere.released(stop.signal);
    assert.ok(Date.now() - started < 500);
    assert.equal((await b.claim(keyOf('aborted'), { holdMs: 10_000 })).held, false);
    await held.release();
  });

  it('a holder that died lets go when its hold expires; the next one gets the credentials it was sending', async function () {
    const [dead, b] = [handle(), handle()];
    const held = await take(dead, 'orphan', 600);
    await held.sending({
      credentials: { type: 'X509_CERTIFICATE', certificate: 'PEM' },
      generated: { certificate: 'PEM', privateKey: 'KEY' },
    });
    // Released without letting go of its hold, as a killed process: nothing renews it now.
    await dead.release();
    const elsewhere = await b.claim(keyOf('orphan'), { holdMs: 5000 });
    assert.ok(!elsewhere.held);
    const started = Date.now();
    await elsewhere.released(never);
    assert.ok(Date.now() - started < 1500, `looked again after ${Date.now() - started} ms`);
    const taken = await take(b, 'orphan', 5000);
    assert.deepEqual(taken.unanswered, {
      credentials: { type: 'X509_CERTIFICATE', certificate: 'PEM' },
      generated: { certificate: 'PEM', privateKey: 'KEY' },
    });
    // Keeping the answer forgets what was being sent.
    await b.put(storedEntry('orphan'));
    assert.equal(await raw.get(sendingKey('orphan')), null);
    await taken.release();
  });

  it('keeping the answer lets go of the hold in the same step, and tells only a process that waits', async function () {
    const listener = new RedisConnection(redisEndpoint({ url: server.url }), true);
    const published: string[] = [];
    listener.subscribe('tb-provision:released', (message) => published.push(message));
    try {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const [a, b] = [handle(), handle()];
      const alone = await take(a, 'kept-alone', 10_000);
      await a.put(storedEntry('kept-alone'));
      assert.equal(await raw.get(claimKey('kept-alone')), null, 'let go by the put');
      await alone.release();
      const watched = await take(a, 'kept-watched', 10_000);
      const elsewhere = await b.claim(keyOf('kept-watched'), { holdMs: 10_000 });
      assert.ok(!elsewhere.held);
      const woken = elsewhere.released(never);
      await a.put(storedEntry('kept-watched'));
      await woken;
      await watched.release();
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.deepEqual(published, [keyOf('kept-watched')]);
      assert.deepEqual(((await raw.command(['KEYS', '*'])) as string[]).sort(), [
        `tb-provision:device:${keyOf('kept-alone')}`,
        `tb-provision:device:${keyOf('kept-watched')}`,
      ]);
    } finally {
      listener.close();
    }
  });

  it('releases only its own hold: one that expired and went to another process stays with it', async function () {
    const a = handle();
    const held = await take(a, 'expired', 10_000);
    await raw.command(['SET', claimKey('expired'), 'another-process-token', 'PX', '10000']);
    await assert.rejects(held.sending(SENT), /lost its hold on the device in Redis/);
    assert.equal(await raw.get(sendingKey('expired')), null, 'nothing recorded: nothing sent');
    await held.release();
    assert.equal(await raw.get(claimKey('expired')), 'another-process-token');
  });

  it('a damaged entry fails the claim with a clear text and lets go of the device', async function () {
    await raw.command(['SET', `tb-provision:device:${keyOf('damaged')}`, '[]']);
    await assert.rejects(
      handle().claim(keyOf('damaged'), { holdMs: 5000 }),
      /the Redis key tb-provision:device:.*damaged.* is not written by this package/,
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(await raw.get(claimKey('damaged')), null);
  });

  it('Redis unreachable: a claim rejects with a clear text, and works again once Redis is back', async function () {
    const a = handle();
    await server.kill();
    try {
      await assert.rejects(
        a.claim(keyOf('offline'), { holdMs: 5000 }),
        /^RedisUnavailableError: Redis at 127\.0\.0\.1:\d+ cannot be reached/,
      );
    } finally {
      await server.restart();
    }
    const claim = await take(a, 'offline', 5000);
    await claim.release();
  });
});
