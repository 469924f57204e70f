/** The job layer over the real transports against the emulator, on loopback sockets. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Emulator } from '../src/emulator';
import type { ProvisionError } from '../src/protocol/errors';
import { Provisioner, type ProvisionerOptions } from '../src/provisioner/provisioner';
import { deviceKey } from '../src/store/entry';
import { openFileStore } from '../src/store/file';
import type { CredentialStore } from '../src/store/types';
import type { ProvisionJob } from '../src/provisioner/types';
import { closeHttpAgents } from '../src/transports';
import type { TransportName } from '../src/transports/types';
import { TRANSPORTS } from './support/common';

const KEY = 'emulator-profile-key';
const SECRET = 'emulator-profile-secret';

describe('provisioner over the real transports (emulator)', function () {
  this.timeout(20_000);
  let emulator: Emulator;
  let root: string;
  let store: CredentialStore;
  let provisioner: Provisioner;
  let deviceCount = 0;

  function make(options: Partial<ProvisionerOptions> = {}): Provisioner {
    provisioner = new Provisioner({
      concurrency: 8,
      store,
      backoff: { baseMs: 10, maxMs: 50 },
      ...options,
    });
    return provisioner;
  }

  function job(transport: TransportName, overrides: Partial<ProvisionJob> = {}): ProvisionJob {
    return {
      transport,
      target: { host: emulator.host, port: emulator.ports[transport] },
      provisionDeviceKey: KEY,
      provisionDeviceSecret: SECRET,
      deviceName: `device-${++deviceCount}`,
      credentialsMode: 'server',
      timeoutMs: 3_000,
      retries: 2,
      persist: true,
      ...overrides,
    };
  }

  before(async () => {
    emulator = await Emulator.start({
      mqttPort: 0,
      httpPort: 0,
      coapPort: 0,
      mqttCloseAfterAnswerMs: 200,
      profiles: [
        {
          name: 'Sensors',
          provisionDeviceKey: KEY,
          provisionDeviceSecret: SECRET,
          strategy: 'allow-create',
        },
      ],
    });
  });

  after(async () => {
    await emulator.stop();
  });

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-provisioner-emulator-'));
    store = openFileStore({ filePath: path.join(root, 'credentials.json') });
    emulator.setFaults({});
    emulator.resetStats();
  });

  afterEach(async () => {
    await provisioner?.close();
    await store.release();
    closeHttpAgents();
    fs.rmSync(root, { recursive: true, force: true });
  });

  for (const transport of TRANSPORTS) {
    it(`provisions over ${transport}, stores the answer, and answers the next request from the store`, async () => {
      const p = make();
      const first = await p.provision(job(transport, { deviceName: `stored-${transport}` }));
      const device = emulator.device(`stored-${transport}`);
      assert.ok(device?.provisioned);
      assert.equal(device.credentials.credentialsType, 'ACCESS_TOKEN');
      assert.deepEqual(first.answer, {
        status: 'SUCCESS',
        credentialsType: 'ACCESS_TOKEN',
        credentialsValue:
          device.credentials.credentialsType === 'ACCESS_TOKEN' && device.credentials.token,
      });
      const requests = emulator.requests.length;
      const second = await p.provision(job(transport, { deviceName: `stored-${transport}` }));
      assert.equal(second.cached, true);
      assert.deepEqual(second.answer, first.answer);
      assert.equal(emulator.requests.length, requests, 'the cached answer touched the network');
    });
  }

  it('keeps at most `concurrency` requests at the server at once', async () => {
    emulator.setFaults({ answerDelayMs: 60 });
    const p = make({ concurrency: 3 });
    const results = await Promise.all(Array.from({ length: 9 }, () => p.provision(job('http'))));
    assert.equal(results.length, 9);
    assert.equal(emulator.maxConcurrent, 3);
  });

  it('sends one request for two simultaneous jobs for the same device', async () => {
    emulator.setFaults({ answerDelayMs: 50 });
    const p = make();
    const [a, b] = await Promise.all([
      p.provision(job('mqtt', { deviceName: 'twice' })),
      p.provision(job('mqtt', { deviceName: 'twice', persist: false })),
    ]);
    assert.deepEqual(a.answer, b.answer);
    assert.equal(emulator.requests.length, 1);
  });

  it('retries after a connection lost before the answer and then succeeds', async () => {
    emulator.setFaults({ closeWithoutAnswerFirst: 1 });
    const result = await make().provision(job('http'));
    assert.equal(result.answer.status, 'SUCCESS');
    assert.equal(emulator.requests.length, 2);
  });

  for (const transport of ['http', 'mqtt'] as const) {
    it(`recovers a lost answer over ${transport} by checking the token it chose itself`, async () => {
      emulator.setFaults({ loseAnswerFirst: 1 });
      const result = await make().provision(
        job(transport, { deviceName: `lost-${transport}`, credentialsMode: 'ACCESS_TOKEN' }),
      );
      const device = emulator.device(`lost-${transport}`);
      assert.equal(result.recovered, true);
      assert.equal(device?.credentials.credentialsType, 'ACCESS_TOKEN');
      assert.equal(
        result.answer.credentialsValue,
        device.credentials.credentialsType === 'ACCESS_TOKEN' && device.credentials.token,
      );
      assert.equal(emulator.requests.length, 2);
      assert.deepEqual(
        (await store.get(deviceKey(emulator.host, KEY, `lost-${transport}`)))?.answer,
        result.answer,
      );
    });
  }

  it('explains a lost answer it cannot recover when the server chose the credentials', async () => {
    emulator.setFaults({ loseAnswerFirst: 1 });
    await assert.rejects(
      make().provision(job('http', { deviceName: 'lost-server' })),
      (err: ProvisionError) => {
        assert.equal(err.status, 'FAILURE');
        assert.match(err.message, /answer was lost/);
        assert.match(err.message, /delete the device in ThingsBoard/);
        assert.ok(!err.message.includes(SECRET));
        return true;
      },
    );
    assert.ok(emulator.device('lost-server'), 'the first attempt did create the device');
  });

  it('reports NOT_FOUND for a wrong secret after one request', async () => {
    await assert.rejects(
      make().provision(job('coap', { provisionDeviceSecret: 'wrong-secret' })),
      (err: ProvisionError) => {
        assert.equal(err.status, 'NOT_FOUND');
        assert.ok(!err.message.includes('wrong-secret'));
        return true;
      },
    );
    assert.equal(emulator.requests.length, 1);
  });
});
