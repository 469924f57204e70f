/** The provisioner with a credential store: answers from it, keeps into it, says when it cannot. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { ProvisionAnswer } from '../src/protocol/types';
import { CredentialsNotSavedError } from '../src/provisioner/errors';
import { deviceKey } from '../src/store/entry';
import { openFileStore } from '../src/store/file';
import type { CredentialStore, DeviceKey, StoredEntry } from '../src/store/types';
import {
  SECRET,
  deferred,
  echo,
  fakeTransport,
  job,
  provisionerBench,
  storedFor,
  ticks,
  token,
} from './support/provisioner';

describe('provisioner: stored credentials', () => {
  const bench = provisionerBench();
  const { make, store } = bench;

  it('answers a second request from the store without touching the network', async () => {
    const transport = fakeTransport(async (r) => echo(r));
    const provisioner = make(transport, { store: store() });
    const first = await provisioner.provision(job({ persist: true }));
    const second = await provisioner.provision(
      job({ persist: true, target: { host: 'TB.EXAMPLE.COM', port: 1883 }, transport: 'mqtt' }),
    );
    assert.equal(transport.calls.length, 1);
    assert.equal(first.cached, false);
    assert.equal(second.cached, true);
    assert.deepEqual(second.answer, first.answer);
    assert.equal(second.provisionedAt, first.provisionedAt);
  });

  it('misses for another device, another profile key or another host', async () => {
    const transport = fakeTransport(async (r) => echo(r));
    const provisioner = make(transport, { store: store() });
    await provisioner.provision(job({ persist: true }));
    for (const overrides of [
      { deviceName: 'dev-2' },
      { provisionDeviceKey: 'other-key' },
      { target: { host: 'other.example.com', port: 8080 } },
    ]) {
      const result = await provisioner.provision(job({ persist: true, ...overrides }));
      assert.equal(result.cached, false);
    }
    assert.equal(transport.calls.length, 4);
  });

  it('asks again on reprovision and replaces the stored entry', async () => {
    let n = 0;
    const transport = fakeTransport(async () => token(`token-${++n}`));
    const credentials = store();
    const provisioner = make(transport, { store: credentials });
    await provisioner.provision(job({ persist: true }));
    const again = await provisioner.provision(job({ persist: true, reprovision: true }));
    assert.equal(again.cached, false);
    assert.equal(again.answer.credentialsValue, 'token-2');
    assert.equal((await storedFor(credentials))?.answer.credentialsValue, 'token-2');
    const cached = await provisioner.provision(job({ persist: true }));
    assert.equal(cached.answer.credentialsValue, 'token-2');
    assert.equal(transport.calls.length, 2);
  });

  it('neither reads nor writes the store without persist', async () => {
    const transport = fakeTransport(async (r) => echo(r));
    const credentials = store();
    await credentials.ready();
    const provisioner = make(transport, { store: credentials });
    await provisioner.provision(job());
    await provisioner.provision(job());
    assert.equal(transport.calls.length, 2);
    assert.equal(credentials.stats().entries, 0);
  });

  it('resolves only after the store write has completed', async () => {
    const written = deferred<undefined>();
    const puts: StoredEntry[] = [];
    const slowStore: CredentialStore = {
      ready: async () => undefined,
      get: async () => undefined,
      writable: async () => false,
      put: async (entry) => {
        puts.push(entry);
        await written.promise;
      },
      flush: async () => undefined,
      release: async () => undefined,
      describe: () => 'the credentials file /var/lib/nr/credentials.json',
    };
    const transport = fakeTransport(async (r) => echo(r));
    let settled = false;
    const pending = make(transport, { store: slowStore })
      .provision(job({ persist: true }))
      .finally(() => {
        settled = true;
      });
    await ticks();
    assert.equal(puts.length, 1);
    assert.equal(settled, false, 'resolved before the credentials were durable');
    written.resolve(undefined);
    const result = await pending;
    assert.deepEqual(puts[0], {
      host: 'tb.example.com',
      provisionDeviceKey: 'profile-key',
      deviceName: 'dev-1',
      answer: result.answer,
      provisionedAt: result.provisionedAt,
      gateway: false,
    });
  });

  it('rejects with the credentials attached when a write fails after the check', async () => {
    const filePath = '/var/lib/nr/thingsboard-provision/credentials.json';
    const full: CredentialStore = {
      ready: async () => undefined,
      get: async () => undefined,
      writable: async () => false,
      put: async () => {
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), {
          code: 'ENOSPC',
        });
      },
      flush: async () => undefined,
      release: async () => undefined,
      describe: () => `the credentials file ${filePath}`,
    };
    const transport = fakeTransport(async () => token('precious-token-Abc123'));
    const provisioner = make(transport, { store: full });
    await assert.rejects(provisioner.provision(job({ persist: true })), (err: unknown) => {
      assert.ok(err instanceof CredentialsNotSavedError);
      assert.equal(err.status, 'FAILURE');
      assert.equal(err.result.answer.credentialsValue, 'precious-token-Abc123');
      assert.equal(err.result.deviceName, 'dev-1');
      assert.ok(err.message.includes(filePath), err.message);
      assert.match(err.message, /could not be saved/);
      assert.ok(!err.message.includes('precious-token-Abc123'));
      assert.ok(!err.message.includes(SECRET));
      return true;
    });
  });

  it('sends nothing while the store cannot be written, and goes on once it can', async () => {
    fs.writeFileSync(path.join(bench.root, 'blocker'), 'a file where a folder should be');
    const blocked = bench.adopt(
      openFileStore({ filePath: path.join(bench.root, 'blocker', 'tb', 'credentials.json') }),
    );
    const transport = fakeTransport(async (r) => echo(r));
    const provisioner = make(transport, { store: blocked });
    await assert.rejects(provisioner.provision(job({ persist: true })), (err: unknown) => {
      assert.ok(!(err instanceof CredentialsNotSavedError));
      assert.equal((err as { status?: string }).status, 'FAILURE');
      assert.match(String((err as Error).message), /^Nothing was sent to the server/);
      assert.ok(String((err as Error).message).includes(blocked.filePath));
      return true;
    });
    // Without the store the job goes on: the flow keeps the credentials itself.
    await provisioner.provision(job({ persist: false, deviceName: 'unkept' }));
    assert.equal(transport.calls.length, 1);
    fs.rmSync(path.join(bench.root, 'blocker'));
    const result = await provisioner.provision(job({ persist: true }));
    assert.equal(transport.calls.length, 2);
    assert.deepEqual((await storedFor(blocked))?.answer, result.answer);
  });

  it('reports a credentials file that cannot be read, without sending anything', async () => {
    fs.mkdirSync(path.join(bench.root, 'unreadable', 'credentials.json'), { recursive: true });
    const broken = bench.adopt(
      openFileStore({ filePath: path.join(bench.root, 'unreadable', 'credentials.json') }),
    );
    const transport = fakeTransport(async (r) => echo(r));
    await assert.rejects(make(transport, { store: broken }).provision(job({ persist: true })), {
      status: 'FAILURE',
      message: /^The credentials file .*credentials\.json could not be read/,
    });
    assert.equal(transport.calls.length, 0);
  });

  it('keeps a generated certificate and its key in the store', async function () {
    this.timeout(10_000);
    const credentials = store();
    const transport = fakeTransport(async (r) => echo(r));
    const result = await make(transport, { store: credentials }).provision(
      job({ credentialsMode: 'X509_CERTIFICATE', persist: true }),
    );
    const stored = await storedFor(credentials);
    assert.ok(stored?.generated?.privateKey);
    assert.deepEqual(stored.generated, result.generated);
  });

  describe('a store that answers slowly', () => {
    /** A store whose every get() waits until let go, counting the lookups. */
    function slowLookups(entries = new Map<DeviceKey, StoredEntry>()) {
      const letGo = deferred<undefined>();
      const lookups: DeviceKey[] = [];
      const puts: StoredEntry[] = [];
      const slow: CredentialStore = {
        ready: async () => undefined,
        get: async (key) => {
          lookups.push(key);
          await letGo.promise;
          return structuredClone(entries.get(key));
        },
        writable: async () => false,
        put: async (entry) => {
          puts.push(entry);
        },
        flush: async () => undefined,
        release: async () => undefined,
        describe: () => 'a slow store',
      };
      return { slow, lookups, puts, letGo };
    }

    it('sends one request for jobs that come for one device while the lookup is under way', async () => {
      const answer = deferred<ProvisionAnswer>();
      const transport = fakeTransport(() => answer.promise);
      const { slow, lookups, puts, letGo } = slowLookups();
      const provisioner = make(transport, { store: slow });
      const jobs = [1, 2, 3].map(() => provisioner.provision(job({ persist: true })));
      await ticks();
      assert.equal(lookups.length, 1, 'one lookup for the device');
      assert.equal(transport.calls.length, 0, 'nothing sent before the lookup answered');
      letGo.resolve(undefined);
      await ticks();
      const late = provisioner.provision(job({ persist: true }));
      answer.resolve(token('one-token-0001'));
      const results = await Promise.all([...jobs, late]);
      assert.equal(transport.calls.length, 1);
      assert.equal(lookups.length, 1);
      assert.equal(puts.length, 1);
      for (const result of results) assert.equal(result.answer.credentialsValue, 'one-token-0001');
    });

    it('answers the jobs that take stored credentials from the store, and asks for the others', async () => {
      const entries = new Map<DeviceKey, StoredEntry>();
      const kept: StoredEntry = {
        host: 'tb.example.com',
        provisionDeviceKey: 'profile-key',
        deviceName: 'dev-1',
        answer: token('kept-token-0001'),
        provisionedAt: '2024-05-01T12:00:00.000Z',
      };
      entries.set(deviceKey('tb.example.com', 'profile-key', 'dev-1'), kept);
      const { slow, lookups, puts, letGo } = slowLookups(entries);
      const transport = fakeTransport(async () => token('fresh-token-0002'));
      const provisioner = make(transport, { store: slow });
      const fromStore = provisioner.provision(job({ persist: true }));
      const again = provisioner.provision(job({ persist: true, reprovision: true }));
      const unkept = provisioner.provision(job({ persist: false }));
      await ticks();
      letGo.resolve(undefined);
      const [a, b, c] = await Promise.all([fromStore, again, unkept]);
      assert.equal(lookups.length, 1);
      assert.equal(a.cached, true);
      assert.equal(a.answer.credentialsValue, 'kept-token-0001');
      for (const fresh of [b, c]) {
        assert.equal(fresh.cached, false);
        assert.equal(fresh.answer.credentialsValue, 'fresh-token-0002');
      }
      assert.equal(transport.calls.length, 1, 'one request for the two that asked for it');
      assert.equal(puts.length, 1, 'kept for the reprovisioning job');
    });
  });
});
