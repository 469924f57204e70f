/**
 * A job answered with credentials it did not ask for (stored ones, or another message's request
 * for the same device) is told which of its own fields were not applied.
 */
import assert from 'node:assert/strict';
import type { ProvisionAnswer } from '../src/protocol/types';
import { deviceKey } from '../src/store/entry';
import type { CredentialStore, StoredEntry } from '../src/store/types';
import {
  deferred,
  echo,
  fakeTransport,
  job,
  provisionerBench,
  ticks,
  token,
} from './support/provisioner';

function storeWith(entry: StoredEntry): CredentialStore {
  return {
    ready: async () => undefined,
    get: async (key) =>
      key === deviceKey(entry.host, entry.provisionDeviceKey, entry.deviceName)
        ? structuredClone(entry)
        : undefined,
    writable: async () => false,
    put: async () => undefined,
    flush: async () => undefined,
    release: async () => undefined,
    describe: () => 'a store with one entry',
  };
}

const stored = (gateway?: boolean): StoredEntry => ({
  host: 'tb.example.com',
  provisionDeviceKey: 'profile-key',
  deviceName: 'dev-1',
  answer: token('stored-token-0001'),
  provisionedAt: '2024-05-01T12:00:00.000Z',
  ...(gateway === undefined ? {} : { gateway }),
});

describe('provisioner: fields an answer does not reflect', () => {
  const { make } = provisionerBench();

  it('names msg.credentials and the gateway flag that a stored answer ignores', async () => {
    const transport = fakeTransport(async (r) => echo(r));
    const provisioner = make(transport, { store: storeWith(stored(true)) });
    const other = await provisioner.provision(
      job({
        persist: true,
        credentialsMode: 'ACCESS_TOKEN',
        credentials: { token: 'another-token-0002' },
        gateway: false,
      }),
    );
    assert.equal(other.cached, true);
    assert.equal(other.answer.credentialsValue, 'stored-token-0001');
    assert.deepEqual(other.ignored, ['credentials', 'gateway']);
    const same = await provisioner.provision(
      job({
        persist: true,
        credentialsMode: 'ACCESS_TOKEN',
        credentials: { token: 'stored-token-0001' },
        gateway: true,
      }),
    );
    assert.equal(same.ignored, undefined, 'nothing to say when they match');
    assert.equal(transport.calls.length, 0);
  });

  it('claims nothing about the gateway flag of an entry stored before it was kept', async () => {
    const provisioner = make(
      fakeTransport(async (r) => echo(r)),
      { store: storeWith(stored()) },
    );
    const result = await provisioner.provision(job({ persist: true, gateway: true }));
    assert.equal(result.cached, true);
    assert.equal(result.ignored, undefined);
  });

  it('tells a job that joined another one’s request which of its own fields were not sent', async () => {
    const answer = deferred<ProvisionAnswer>();
    const transport = fakeTransport(() => answer.promise);
    const provisioner = make(transport);
    const opener = provisioner.provision(
      job({ credentialsMode: 'ACCESS_TOKEN', credentials: { token: 'first-token-0001' } }),
    );
    const joiner = provisioner.provision(
      job({
        credentialsMode: 'ACCESS_TOKEN',
        credentials: { token: 'second-token-0002' },
        gateway: true,
      }),
    );
    await ticks();
    answer.resolve(token('first-token-0001'));
    const [a, b] = await Promise.all([opener, joiner]);
    assert.equal(transport.calls.length, 1);
    assert.equal(a.ignored, undefined);
    assert.equal(a.gateway, false);
    assert.deepEqual(b.ignored, ['credentials', 'gateway']);
    assert.equal(b.answer.credentialsValue, 'first-token-0001');
  });
});
