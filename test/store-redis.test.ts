/**
 * The Redis backend against a real redis-server: what it keeps and how, what it answers, what it
 * says when Redis is away or refuses, and that it goes on by itself when Redis is back.
 */

import assert from 'node:assert/strict';
import { deviceKey, openRedisStore, type RedisCredentialStore } from '../src/store';
import { RedisConnection } from '../src/store/redis/connection';
import { redisEndpoint } from '../src/store/redis/options';
import { RedisServer } from './support/redis-server';
import { ENTRY_HOST, ENTRY_PROFILE_KEY, storedEntry } from './support/stored-entries';
import { TEST_CA_CERT, TEST_SERVER_CERT, TEST_SERVER_KEY } from './support/transport-certificates';

const HOST = ENTRY_HOST;
const PROFILE_KEY = ENTRY_PROFILE_KEY;

const keyOf = (deviceName: string) => deviceKey(HOST, PROFILE_KEY, deviceName);

/** A plain connection to look at what Redis holds, beside the store. */
function inspector(server: RedisServer): RedisConnection {
  return new RedisConnection(redisEndpoint({ url: server.url }));
}

describe('credential store: Redis backend', function () {
  this.timeout(20_000);
  let server: RedisServer;
  const open: RedisCredentialStore[] = [];
  const connections: RedisConnection[] = [];

  const store = (options: Parameters<typeof openRedisStore>[0] = {}): RedisCredentialStore => {
    const handle = openRedisStore({ url: server.url, ...options });
    open.push(handle);
    return handle;
  };
  const look = (target = server): RedisConnection => {
    const connection = inspector(target);
    connections.push(connection);
    return connection;
  };

  before(async function () {
    server = await RedisServer.start({ durable: true });
  });
  afterEach(async function () {
    await Promise.all(open.splice(0).map((handle) => handle.release()));
    for (const connection of connections.splice(0)) connection.close();
    if (!server.running) await server.restart();
    const flush = inspector(server);
    await flush.command(['FLUSHALL']);
    flush.close();
  });
  after(async function () {
    await server.stop();
  });

  it('keeps an entry under the prefix, keyed as every backend keys devices, without the secret', async function () {
    const a = store({ prefix: 'fleet-a:' });
    await a.ready();
    assert.equal(await a.get(keyOf('dev-1')), undefined);
    await a.put(storedEntry('dev-1'));
    assert.deepEqual(await a.get(keyOf('dev-1')), storedEntry('dev-1'));
    // Host compared case-insensitively, as deviceKey() says.
    assert.deepEqual(
      await a.get(deviceKey('TB.EXAMPLE', PROFILE_KEY, 'dev-1')),
      storedEntry('dev-1'),
    );

    const raw = look();
    const keys = (await raw.command(['KEYS', '*'])) as string[];
    assert.deepEqual(keys, [`fleet-a:device:${keyOf('dev-1')}`]);
    const value = JSON.parse((await raw.get(keys[0])) ?? '') as Record<string, unknown>;
    assert.deepEqual(value, {
      format: 'thingsboard-provision-entry',
      version: 1,
      entry: storedEntry('dev-1'),
    });
    assert.doesNotMatch(JSON.stringify(value), /secret/i);
    // Another prefix is another fleet.
    assert.equal(await store({ prefix: 'fleet-b:' }).get(keyOf('dev-1')), undefined);
  });

  it('answers what Redis holds: another handle sees a put at once, and nothing once Redis lost it', async function () {
    const a = store();
    const b = store();
    await a.put(storedEntry('dev-2', 'first'));
    assert.deepEqual(await b.get(keyOf('dev-2')), storedEntry('dev-2', 'first'));
    await b.put(storedEntry('dev-2', 'second'));
    assert.deepEqual(await a.get(keyOf('dev-2')), storedEntry('dev-2', 'second'));
    await look().command(['FLUSHALL']);
    assert.equal(await a.get(keyOf('dev-2')), undefined);
  });

  it('an acknowledged put survives Redis killed at once (appendfsync always), and the handle goes on', async function () {
    const a = store();
    await Promise.all(Array.from({ length: 50 }, (_, i) => a.put(storedEntry(`durable-${i}`))));
    await server.kill('SIGKILL');
    await server.restart();
    for (let i = 0; i < 50; i++) {
      assert.deepEqual(await a.get(keyOf(`durable-${i}`)), storedEntry(`durable-${i}`));
    }
  });

  it('Redis unreachable: get() rejects with a clear text; after Redis is back the same handle answers', async function () {
    const a = store();
    await a.put(storedEntry('dev-3'));
    await server.kill();
    const started = Date.now();
    await assert.rejects(a.get(keyOf('dev-3')), (err: Error) => {
      assert.equal(err.name, 'RedisUnavailableError');
      assert.match(
        err.message,
        new RegExp(
          `^Redis at 127\\.0\\.0\\.1:${server.port} cannot be reached \\((.*ECONNREFUSED|Socket closed unexpectedly)`,
        ),
      );
      return true;
    });
    assert.ok(Date.now() - started < 6000, 'fails within seconds, not forever');
    assert.match(
      a.describe(),
      new RegExp(
        `^the Redis store redis://127\\.0\\.0\\.1:${server.port}/0 \\(prefix "tb-provision:"\\)$`,
      ),
    );
    // Nothing may be sent while an answer could not be kept: the provisioner asks first.
    await assert.rejects(a.writable(), (err: Error) => {
      assert.equal(err.name, 'StoreUnavailableError');
      assert.equal((err as Error & { reason: string }).reason, 'notWritable');
      assert.match(
        err.message,
        /^The Redis store redis:\/\/.* \(prefix "tb-provision:"\): Redis at .* cannot be reached \(.*\)\. Check that Redis is running and reachable \(the node reconnects by itself\), then send the message again\.$/,
      );
      return true;
    });
    await server.restart();
    assert.equal(await a.writable(), false);
    // Reconnects by itself: waits for the connection being made rather than failing.
    assert.deepEqual(await a.get(keyOf('dev-3')), storedEntry('dev-3'));
  });

  it('a put waits out a short outage instead of dropping an answer in hand', async function () {
    const a = store();
    await a.get(keyOf('warm-up'));
    await server.kill();
    const put = a.put(storedEntry('dev-4'));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await server.restart();
    await put;
    assert.deepEqual(await store().get(keyOf('dev-4')), storedEntry('dev-4'));
  });

  it('reports a value it did not write and leaves it as it is', async function () {
    const raw = look();
    const redisKey = `tb-provision:device:${keyOf('dev-5')}`;
    await raw.command(['SET', redisKey, 'not json']);
    const a = store();
    await assert.rejects(
      a.get(keyOf('dev-5')),
      /the Redis key .*dev-5.* is not valid JSON; it was left as it is/,
    );
    await raw.command([
      'SET',
      redisKey,
      JSON.stringify({ format: 'thingsboard-provision-entry', version: 2, entry: {} }),
    ]);
    await assert.rejects(a.get(keyOf('dev-5')), /format version 2 was written by a newer version/);
    assert.match((await raw.get(redisKey)) ?? '', /"version":2/);
  });

  it('lists every entry under its prefix (for copying a store), telling of damaged ones', async function () {
    const a = store({ prefix: 'list:' });
    for (let i = 0; i < 1200; i++) await a.put(storedEntry(`listed-${i}`));
    await store({ prefix: 'other:' }).put(storedEntry('elsewhere'));
    await look().command(['SET', `list:device:${keyOf('bad')}`, '{}']);
    const damaged: string[] = [];
    const names: string[] = [];
    for await (const entry of a.entries((key) => damaged.push(key))) names.push(entry.deviceName);
    assert.equal(names.length, 1200);
    assert.equal(new Set(names).size, 1200);
    assert.deepEqual(damaged, [`list:device:${keyOf('bad')}`]);
  });

  it('refuses a URL with a password, another scheme, a bad database or an unknown parameter', function () {
    const cases: Array<[string, RegExp]> = [
      ['redis://:hunter2@127.0.0.1:6379/0', /contains a password: remove it from the URL/],
      ['redis://user:hunter2@127.0.0.1:6379/0', /contains a password/],
      ['http://127.0.0.1:6379/0', /must start with redis:\/\/ or rediss:\/\/, not http:\/\//],
      ['redis://127.0.0.1:6379/x', /database \(after \/\) must be a whole number/],
      ['redis://127.0.0.1:6379/0?wait=x', /wait \(replicas\) must be a whole number/],
      ['redis://127.0.0.1:6379/0?tls=1', /unknown parameter "tls"/],
      ['not a url', /is not a URL/],
    ];
    for (const [url, message] of cases) {
      assert.throws(
        () => openRedisStore({ url }),
        (err: Error) => {
          assert.equal(err.name, 'RedisOptionsError');
          assert.match(err.message, message);
          assert.doesNotMatch(err.message, /hunter2/);
          return true;
        },
        url,
      );
    }
    assert.throws(
      () => openRedisStore({ url: 'redis://127.0.0.1/0', tls: { ca: TEST_CA_CERT } }),
      /TLS configuration is chosen .* use rediss:\/\//,
    );
    assert.throws(
      () => openRedisStore({ prefix: 'two words' }),
      /prefix must be set and contain no spaces/,
    );
    const endpoint = redisEndpoint({});
    assert.equal(endpoint.shown, 'redis://127.0.0.1:6379/0');
    assert.equal(endpoint.prefix, 'tb-provision:');
  });

  it('authenticates with the password given apart from the URL, and never tells it', async function () {
    const locked = await RedisServer.start({ password: 'redis-pass-Q7' });
    try {
      const good = store({ url: locked.url, password: 'redis-pass-Q7' });
      await good.put(storedEntry('dev-6'));
      assert.deepEqual(await good.get(keyOf('dev-6')), storedEntry('dev-6'));
      const wrong = store({ url: locked.url, password: 'not-the-pass' });
      await assert.rejects(wrong.get(keyOf('dev-6')), (err: Error) => {
        assert.match(err.message, /cannot be reached \(.*(WRONGPASS|invalid)/i);
        assert.doesNotMatch(err.message, /not-the-pass|redis-pass-Q7/);
        return true;
      });
      await assert.rejects(
        store({ url: locked.url }).get(keyOf('dev-6')),
        /NOAUTH|Authentication required/i,
      );
    } finally {
      await Promise.all(open.splice(0).map((handle) => handle.release()));
      await locked.stop();
    }
  });

  it('rediss:// verifies the server certificate against the CA given, and refuses one it cannot verify', async function () {
    const secure = await RedisServer.start({
      tls: { cert: TEST_SERVER_CERT, key: TEST_SERVER_KEY },
    });
    try {
      const trusted = store({ url: secure.url, tls: { ca: TEST_CA_CERT } });
      await trusted.put(storedEntry('dev-7'));
      assert.deepEqual(await trusted.get(keyOf('dev-7')), storedEntry('dev-7'));
      const untrusted = store({ url: secure.url });
      await assert.rejects(
        untrusted.get(keyOf('dev-7')),
        /cannot be reached \(.*(self.signed|unable to (get|verify))/i,
      );
    } finally {
      await Promise.all(open.splice(0).map((handle) => handle.release()));
      await secure.stop();
    }
  });

  it('?wait=1 resolves a put once a replica has it, and rejects when no replica confirms in time', async function () {
    const replica = await RedisServer.start({ replicaOf: server });
    try {
      const raw = look();
      const until = Date.now() + 10_000;
      while (!/slave0:.*state=online/.test(String(await raw.command(['INFO', 'replication'])))) {
        assert.ok(Date.now() < until, 'the replica never connected');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      // Generous here: a busy machine may take a while to let the replica acknowledge.
      const waited = store({ url: `${server.url}?wait=1&waitTimeout=5000` });
      assert.match(waited.describe(), /\?wait=1/);
      await waited.put(storedEntry('dev-8'));
      const onReplica = look(replica);
      assert.match((await onReplica.get(`tb-provision:device:${keyOf('dev-8')}`)) ?? '', /dev-8/);
      await replica.kill();
      const started = Date.now();
      const impatient = store({ url: `${server.url}?wait=1&waitTimeout=500` });
      await assert.rejects(
        impatient.put(storedEntry('dev-9')),
        /Redis kept the entry, but only 0 of 1 replicas confirmed it within 500 ms/,
      );
      assert.ok(Date.now() - started >= 450);
    } finally {
      await replica.stop();
    }
  });

  it('a released handle refuses puts and claims, and releasing twice is harmless', async function () {
    const a = store();
    await a.put(storedEntry('dev-10'));
    await a.release();
    await a.release();
    await assert.rejects(a.put(storedEntry('dev-11')), /released/);
    await assert.rejects(a.claim(keyOf('dev-11'), { holdMs: 1000 }), /released/);
  });
});
