import assert from 'node:assert/strict';
import { ProvisionError } from '../src/protocol/errors';
import { scrub, secretsOf } from '../src/provisioner/scrub';
import { SECRET, fakeTransport, job, provisionerBench } from './support/provisioner';

describe('provisioner: secrets in error texts', () => {
  const { make } = provisionerBench();

  it('never lets a secret through in an error text', async () => {
    const transport = fakeTransport(async (r) => {
      throw new ProvisionError('PROTOCOL_ERROR', `Odd answer to ${JSON.stringify(r)}`, {
        serverMessage: `echo ${r.provisionDeviceSecret} ${r.token}`,
      });
    });
    await assert.rejects(
      make(transport).provision(
        job({ credentialsMode: 'ACCESS_TOKEN', credentials: { token: 'tok-SECRET-99' } }),
      ),
      (err: ProvisionError) => {
        for (const text of [err.message, err.serverMessage ?? '', err.stack ?? '']) {
          assert.ok(!text.includes(SECRET), text);
          assert.ok(!text.includes('tok-SECRET-99'), text);
        }
        assert.match(err.message, /\*\*\*/);
        return true;
      },
    );
  });

  it('scrubs the secret of every job that shares a request', async () => {
    const transport = fakeTransport(async () => {
      await new Promise((resolve) => setImmediate(resolve));
      throw new ProvisionError('PROTOCOL_ERROR', 'Odd answer: pass-of-the-joiner-77');
    });
    const provisioner = make(transport);
    const first = provisioner.provision(job({ credentialsMode: 'MQTT_BASIC' }));
    const joiner = provisioner.provision(
      job({
        credentialsMode: 'MQTT_BASIC',
        credentials: { clientId: 'c', username: 'u', password: 'pass-of-the-joiner-77' },
      }),
    );
    for (const pending of [first, joiner]) {
      await assert.rejects(pending, (err: Error) => !err.message.includes('pass-of-the-joiner-77'));
    }
    assert.equal(transport.calls.length, 1);
  });

  it('finds the secrets of each kind of credentials, and leaves short values alone', () => {
    assert.deepEqual(secretsOf({ type: 'ACCESS_TOKEN', token: 'abcd1234' }), ['abcd1234']);
    assert.deepEqual(secretsOf({ type: 'MQTT_BASIC', clientId: 'c', password: 'pw-12345' }), [
      'pw-12345',
    ]);
    assert.deepEqual(
      secretsOf({ type: 'X509_CERTIFICATE', certificate: 'PEM' }, { privateKey: 'KEY-PEM' }),
      ['KEY-PEM'],
    );
    const err = scrub(new Error('token abcd1234 and id abc'), ['abcd1234', 'abc']);
    assert.equal(err.message, 'token *** and id abc');
  });
});
