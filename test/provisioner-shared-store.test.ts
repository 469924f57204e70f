/**
 * The job layer with a shared store (Redis), as several processes use it: each provisioner has its
 * own store handle, as each process has. Over the real HTTP transport against the emulator.
 */
import assert from 'node:assert/strict';
import { Emulator } from '../src/emulator';
import { Provisioner } from '../src/provisioner/provisioner';
import type { ProvisionJob, ProvisionResult } from '../src/provisioner/types';
import { deviceKey, openRedisStore, type RedisCredentialStore } from '../src/store';
import { RedisConnection } from '../src/store/redis/connection';
import { redisEndpoint } from '../src/store/redis/options';
import { closeHttpAgents, getTransport } from '../src/transports';
import type { Transport } from '../src/transports/types';
import { untilAborted } from './support/provisioner';
import { RedisServer } from './support/redis-server';

const KEY = 'shared-profile-key';
const SECRET = 'shared-profile-secret';

describe('provisioner with a store shared by several processes (Redis)', function () {
  this.timeout(30_000);
  let emulator: Emulator;
  let redis: RedisServer;
  const provisioners: Provisioner[] = [];
  const stores: RedisCredentialStore[] = [];

  /** One process: its own store handle and provisioner. */
  function instance(transport?: Transport, concurrency = 8): Provisioner {
    const store = openRedisStore({ url: redis.url });
    stores.push(store);
    const provisioner = new Provisioner({
      concurrency,
      store,
      backoff: { baseMs: 10, maxMs: 50 },
      ...(transport ? { transports: { http: transport } } : {}),
    });
    provisioners.push(provisioner);
    return provisioner;
  }

  function job(deviceName: string, overrides: Partial<ProvisionJob> = {}): ProvisionJob {
    return {
      transport: 'http',
      target: { host: emulator.host, port: emulator.ports.http },
      provisionDeviceKey: KEY,
      provisionDeviceSecret: SECRET,
      deviceName,
      credentialsMode: 'ACCESS_TOKEN',
      timeoutMs: 2000,
      retries: 1,
      persist: true,
      ...overrides,
    };
  }

  const requestsFor = (name: string) =>
    emulator.requests.filter((r) => (r.body as { deviceName?: string }).deviceName === name);

  before(async () => {
    redis = await RedisServer.start();
    emulator = await Emulator.start({
      mqttPort: 0,
      httpPort: 0,
      coapPort: 0,
      profiles: [
        {
          name: 'shared',
          provisionDeviceKey: KEY,
          provisionDeviceSecret: SECRET,
          strategy: 'allow-create',
        },
      ],
    });
  });
  afterEach(async () => {
    await Promise.all(provisioners.splice(0).map((p) => p.close()));
    await Promise.all(stores.splice(0).map((s) => s.release()));
    closeHttpAgents();
  });
  after(async () => {
    await emulator.stop();
    await redis.stop();
  });

  it('two processes given overlapping devices ask the server once per device and answer alike', async () => {
    const [a, b] = [instance(), instance()];
    const names = (from: number, to: number) =>
      Array.from({ length: to - from }, (_, i) => `overlap-${from + i}`);
    const modes = ['ACCESS_TOKEN', 'server', 'MQTT_BASIC'] as const;
    const run = (p: Provisioner, list: string[]) =>
      Promise.all(list.map((name, i) => p.provision(job(name, { credentialsMode: modes[i % 3] }))));
    const [fromA, fromB] = await Promise.all([run(a, names(0, 150)), run(b, names(50, 200))]);
    const byName = (results: ProvisionResult[]) => new Map(results.map((r) => [r.deviceName, r]));
    const [mapA, mapB] = [byName(fromA), byName(fromB)];
    for (let i = 0; i < 200; i++) {
      const name = `overlap-${i}`;
      assert.equal(requestsFor(name).length, 1, `${name} asked once`);
      if (i >= 50 && i < 150) {
        assert.deepEqual(mapA.get(name)?.answer, mapB.get(name)?.answer, name);
        // One of the two asked the server; the other took its answer from the store.
        assert.equal([mapA.get(name)?.cached, mapB.get(name)?.cached].filter(Boolean).length, 1);
      }
    }
  });

  it('a flight waiting for a device another process holds takes no slot', async () => {
    const raw = new RedisConnection(redisEndpoint({ url: redis.url }));
    const claimKey = `tb-provision:claim:${deviceKey(emulator.host, KEY, 'held-elsewhere')}`;
    await raw.command(['SET', claimKey, 'another-process', 'PX', '1500']);
    const p = instance(undefined, 1);
    const held = p.provision(job('held-elsewhere'));
    const free = await p.provision(job('free-meanwhile'));
    assert.equal(free.cached, false);
    assert.equal(requestsFor('held-elsewhere').length, 0, 'waits while held');
    const result = await held;
    assert.equal(result.cached, false);
    assert.equal(requestsFor('held-elsewhere').length, 1);
    raw.close();
  });

  it('a process that died mid-request leaves its device to the next, which recovers the lost answer', async () => {
    const http = getTransport('http');
    // Delivers the request, then never hears back: the process dies with the answer.
    const dying: Transport = async (target, request, options) => {
      await http(target, request, options);
      return untilAborted(options);
    };
    const dead = instance(dying);
    const lost = dead.provision(job('lost-with-a-process', { timeoutMs: 500, retries: 0 }));
    lost.catch(() => undefined);
    const until = Date.now() + 5000;
    while (requestsFor('lost-with-a-process').length === 0) {
      assert.ok(Date.now() < until, 'the request reached the server');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const created = emulator.device('lost-with-a-process');
    assert.equal(created?.credentials.credentialsType, 'ACCESS_TOKEN');
    // Its store stops renewing the hold, as a killed process's would; the hold expires.
    await stores[0].release();
    const started = Date.now();
    const result = await instance().provision(job('lost-with-a-process'));
    assert.ok(Date.now() - started < 6000);
    assert.equal(result.recovered, true);
    assert.deepEqual(result.answer, {
      status: 'SUCCESS',
      credentialsType: 'ACCESS_TOKEN',
      credentialsValue: created.credentials.token,
    });
    assert.equal(requestsFor('lost-with-a-process').length, 2);
  });

  it('Redis unreachable: fails with a clear text, sends nothing, and goes on once Redis is back', async () => {
    const p = instance();
    await p.provision(job('before-the-outage'));
    await redis.kill();
    try {
      await assert.rejects(p.provision(job('during-the-outage')), (err: Error) => {
        assert.match(
          err.message,
          new RegExp(
            `^The Redis store redis://127\\.0\\.0\\.1:${redis.port}/0 \\(prefix "tb-provision:"\\) ` +
              'could not be read: Redis at .* cannot be reached \\(.*\\)\\. Nothing was sent to ' +
              'the server; check that Redis is running and reachable \\(the node reconnects by ' +
              'itself\\), then send the message again\\.$',
          ),
        );
        return true;
      });
      assert.equal(requestsFor('during-the-outage').length, 0);
    } finally {
      await redis.restart();
    }
    const after = await p.provision(job('during-the-outage'));
    assert.equal(after.cached, false);
    assert.equal(requestsFor('during-the-outage').length, 1);
  });
});
