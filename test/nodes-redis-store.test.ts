/**
 * The config node's Redis credential store in Node-RED: its properties, its password as a
 * credential, TLS through a core tls-config node, and what a flow sees when Redis is away.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Emulator } from '../src/emulator';
import { deviceKey } from '../src/store';
import { RedisConnection } from '../src/store/redis/connection';
import { redisEndpoint } from '../src/store/redis/options';
import {
  Collector,
  KEY,
  keys,
  loadFlow,
  provisionFlow,
  send,
  startEmulator,
  tearDown,
  tempUserDir,
  type FlowNode,
  type Message,
} from './support/flows';
import { coreNodeModule, helper } from './support/node-red';
import { RedisServer } from './support/redis-server';
import { TEST_CA_CERT, TEST_SERVER_CERT, TEST_SERVER_KEY } from './support/transport-certificates';

const PASSWORD = 'redis-pass-Zk4';

describe('config node: the Redis credential store', function () {
  this.timeout(20_000);
  let emulator: Emulator;
  let userDir: string;
  let redis: RedisServer;
  let raw: RedisConnection;

  before(async function () {
    redis = await RedisServer.start({ password: PASSWORD });
    raw = new RedisConnection(redisEndpoint({ url: redis.url, password: PASSWORD }));
  });
  after(async function () {
    raw.close();
    await redis.stop();
  });
  beforeEach(async function () {
    emulator = await startEmulator();
    userDir = tempUserDir();
  });
  afterEach(async function () {
    await tearDown(emulator, userDir);
    if (!redis.running) await redis.restart();
    await raw.command(['FLUSHALL']);
  });

  const redisConfig = (extra: Record<string, unknown> = {}) => ({
    store: 'redis',
    redisUrl: redis.url,
    redisPrefix: 'plant-7:',
    ...extra,
  });
  const credentials = () => {
    const all = keys();
    all.cfg.redisPassword = PASSWORD;
    return all;
  };
  const requestsFor = (name: string) =>
    emulator.requests.filter((r) => (r.body as { deviceName?: string }).deviceName === name);

  it('keeps credentials in Redis under its prefix, and another instance answers from them', async function () {
    const flow = provisionFlow(emulator, { transport: 'http' }, redisConfig());
    await loadFlow(flow, credentials(), userDir);
    const out = new Collector('out');
    send({ deviceName: 'shared-lamp' });
    const [first] = await out.waitFor(1);
    const payload = first.payload as Record<string, unknown>;
    const stored = await raw.get(`plant-7:device:${deviceKey(emulator.host, KEY, 'shared-lamp')}`);
    assert.ok(stored, 'kept in Redis');
    assert.deepEqual((JSON.parse(stored) as { entry: { answer: unknown } }).entry.answer, {
      status: 'SUCCESS',
      credentialsType: 'ACCESS_TOKEN',
      credentialsValue: payload.credentialsValue,
    });
    assert.doesNotMatch(stored, /test-provision-secret/);
    await helper.unload();

    // Another instance: another user directory, the same Redis and prefix.
    const otherDir = tempUserDir();
    try {
      await loadFlow(
        provisionFlow(emulator, { transport: 'mqtt' }, redisConfig()),
        credentials(),
        otherDir,
      );
      const again = new Collector('out');
      send({ deviceName: 'shared-lamp' });
      const [second] = await again.waitFor(1);
      assert.equal((second.thingsboard as { cached: boolean }).cached, true);
      assert.equal(
        (second.payload as Record<string, unknown>).credentialsValue,
        payload.credentialsValue,
      );
      assert.equal(requestsFor('shared-lamp').length, 1);
    } finally {
      await helper.unload();
      fs.rmSync(otherDir, { recursive: true, force: true });
    }
  });

  it('reaches Redis over rediss:// with the CA of a tls-config node', async function () {
    const secure = await RedisServer.start({
      tls: { cert: TEST_SERVER_CERT, key: TEST_SERVER_KEY },
    });
    try {
      const flow: FlowNode[] = [
        ...provisionFlow(
          emulator,
          { transport: 'http' },
          redisConfig({ redisUrl: secure.url, redisTls: 'redisTls' }),
        ),
        {
          id: 'redisTls',
          type: 'tls-config',
          name: 'Redis CA',
          cert: '',
          key: '',
          ca: '',
          certname: '',
          keyname: '',
          caname: '',
          servername: '',
          alpnprotocol: '',
          verifyservercert: true,
        },
      ];
      const creds = keys();
      creds.redisTls = { cadata: TEST_CA_CERT };
      await loadFlow(flow, creds, userDir, [coreNodeModule('core/network/05-tls.js')]);
      const out = new Collector('out');
      send({ deviceName: 'tls-lamp' });
      const [msg] = await out.waitFor(1);
      assert.equal((msg.payload as Record<string, unknown>).status, 'SUCCESS');
    } finally {
      await helper.unload();
      await secure.stop();
    }
  });

  it('refuses a Redis URL with a password in it at deploy, never repeating the password', async function () {
    const flow = provisionFlow(
      emulator,
      { transport: 'http' },
      redisConfig({ redisUrl: `redis://:${PASSWORD}@127.0.0.1:${redis.port}/0` }),
    );
    await loadFlow(flow, keys(), userDir);
    const errors = (helper.getNode('prov') as unknown as { error: { args: unknown[][] } }).error
      .args;
    const texts = errors.map((args) => String(args[0]));
    assert.ok(
      texts.some((text) => /The Redis URL contains a password: remove it/.test(text)),
      texts.join('\n'),
    );
    const caught = new Collector('caught');
    send({ deviceName: 'never-sent' });
    const [msg] = await caught.waitFor(1);
    assert.equal((msg.payload as Record<string, unknown>).status, 'FAILURE');
    for (const text of [...texts, JSON.stringify(msg)]) assert.ok(!text.includes(PASSWORD));
    assert.equal(requestsFor('never-sent').length, 0);
  });

  it('Redis unreachable: nothing is sent, the Catch node is told why, and the next message goes through once Redis is back', async function () {
    await loadFlow(
      provisionFlow(emulator, { transport: 'http' }, redisConfig()),
      credentials(),
      userDir,
    );
    const out = new Collector('out');
    const caught = new Collector('caught');
    await redis.kill();
    send({ deviceName: 'during-outage' });
    const [msg] = await caught.waitFor(1, 10_000);
    const payload = msg.payload as Record<string, unknown>;
    assert.equal(payload.status, 'FAILURE');
    assert.match(
      String(payload.errorMsg),
      /^The Redis store redis:\/\/127\.0\.0\.1:\d+\/0 \(prefix "plant-7:"\) could not be read: Redis at 127\.0\.0\.1:\d+ cannot be reached .*Nothing was sent to the server; check that Redis is running/,
    );
    assert.ok(!JSON.stringify(msg).includes(PASSWORD));
    assert.equal(requestsFor('during-outage').length, 0);
    await redis.restart();
    send({ deviceName: 'during-outage' });
    const [later]: Message[] = await out.waitFor(1, 10_000);
    assert.equal((later.payload as Record<string, unknown>).status, 'SUCCESS');
    assert.equal(requestsFor('during-outage').length, 1);
  });
});
