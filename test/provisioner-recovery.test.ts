import assert from 'node:assert/strict';
import { ProvisionError } from '../src/protocol/errors';
import type { VerifyCredentials } from '../src/provisioner/recovery';
import type { Transport } from '../src/transports/types';
import {
  SECRET,
  fakeTransport,
  job,
  provisionerBench,
  storedFor,
  token,
  transient,
  type Call,
} from './support/provisioner';

describe('provisioner: lost answer recovery', () => {
  const { make, store } = provisionerBench();

  /** First attempt: the request reached the server, the answer was lost. Then: FAILURE. */
  const lostThenFailure = (): Transport & { calls: Call[] } =>
    fakeTransport(async (_r, _o, call) => {
      if (call === 1) throw transient(true);
      throw new ProvisionError('FAILURE', 'The server refused: Failed to provision device!', {
        serverMessage: 'Failed to provision device!',
      });
    });

  it('recovers device-chosen credentials that the device API accepts', async () => {
    const checks: Array<Parameters<VerifyCredentials>> = [];
    const verifyCredentials: VerifyCredentials = async (...args) => {
      checks.push(args);
      return true;
    };
    const transport = lostThenFailure();
    const credentials = store();
    const result = await make(transport, { verifyCredentials, store: credentials }).provision(
      job({ credentialsMode: 'ACCESS_TOKEN', persist: true }),
    );
    const sent = transport.calls[0].request.token;
    assert.ok(sent);
    assert.equal(transport.calls[1].request.token, sent);
    assert.equal(result.recovered, true);
    assert.equal(result.cached, false);
    assert.deepEqual(result.answer, token(sent));
    assert.equal(checks.length, 1);
    assert.equal(checks[0][0], 'http');
    assert.deepEqual(checks[0][1], { host: 'tb.example.com', port: 8080 });
    assert.deepEqual(checks[0][2], token(sent));
    assert.ok(checks[0][3].deadline > Date.now());
    assert.deepEqual((await storedFor(credentials))?.answer, token(sent));
  });

  it('recovers MQTT basic credentials it generated with the answer ThingsBoard would have sent', async () => {
    const transport = lostThenFailure();
    const result = await make(transport, { verifyCredentials: async () => true }).provision(
      job({ credentialsMode: 'MQTT_BASIC' }),
    );
    const { clientId, username, password } = transport.calls[0].request;
    assert.ok(clientId && username && password);
    assert.equal(result.recovered, true);
    assert.deepEqual(result.answer, {
      status: 'SUCCESS',
      credentialsType: 'MQTT_BASIC',
      credentialsValue: { clientId, userName: username, password },
    });
  });

  it('passes the FAILURE on when the device API refuses the credentials', async () => {
    const transport = lostThenFailure();
    await assert.rejects(
      make(transport, { verifyCredentials: async () => false }).provision(
        job({ credentialsMode: 'ACCESS_TOKEN' }),
      ),
      { status: 'FAILURE', message: /The server refused/ },
    );
  });

  it('explains how to recover when the check cannot be made', async () => {
    const transport = lostThenFailure();
    await assert.rejects(
      make(transport, {
        verifyCredentials: async () => {
          throw new ProvisionError('CONNECTION_ERROR', 'unreachable');
        },
      }).provision(job({ credentialsMode: 'ACCESS_TOKEN' })),
      { status: 'FAILURE', message: /answer was lost.*delete the device in ThingsBoard/s },
    );
  });

  it('explains that server-chosen credentials are lost and how to recover', async () => {
    let verified = false;
    const transport = lostThenFailure();
    await assert.rejects(
      make(transport, {
        verifyCredentials: async () => {
          verified = true;
          return true;
        },
      }).provision(job()),
      (err: ProvisionError) => {
        assert.equal(err.status, 'FAILURE');
        assert.match(err.message, /earlier attempt probably created device "dev-1"/);
        assert.match(err.message, /delete the device in ThingsBoard and provision it again/);
        assert.match(err.message, /copy its credentials from the device in ThingsBoard/);
        assert.match(err.message, /ACCESS_TOKEN/);
        assert.ok(!err.message.includes(SECRET));
        return true;
      },
    );
    assert.equal(verified, false);
  });

  for (const [mode, credentials] of [
    ['ACCESS_TOKEN', { token: 'flow-chosen-token-0001' }],
    ['MQTT_BASIC', { clientId: 'c-1', username: 'u-1', password: 'p-secret-1' }],
  ] as const) {
    it(`never checks ${mode} credentials the flow supplied: FAILURE with advice, nothing kept`, async () => {
      let verified = false;
      const transport = lostThenFailure();
      const credentialsStore = store();
      await assert.rejects(
        make(transport, {
          store: credentialsStore,
          verifyCredentials: async () => {
            verified = true;
            return true;
          },
        }).provision(job({ credentialsMode: mode, credentials, persist: true })),
        (err: ProvisionError) => {
          assert.equal(err.status, 'FAILURE');
          assert.match(err.message, /earlier attempt probably created device "dev-1"/);
          assert.match(err.message, /came from msg\.credentials/);
          assert.match(err.message, /may be another device/);
          assert.match(err.message, /delete the device in ThingsBoard and provision it again/);
          assert.ok(!err.message.includes('flow-chosen-token-0001'));
          assert.ok(!err.message.includes('p-secret-1'));
          return true;
        },
      );
      assert.equal(verified, false, 'flow-supplied credentials are never used to probe');
      assert.equal(await storedFor(credentialsStore), undefined);
    });
  }

  it('explains that a certificate cannot be checked', async () => {
    const transport = lostThenFailure();
    await assert.rejects(
      make(transport, { verifyCredentials: async () => true }).provision(
        job({ credentialsMode: 'X509_CERTIFICATE' }),
      ),
      { status: 'FAILURE', message: /cannot check a certificate/ },
    );
  });

  it('does not check anything when no earlier attempt may have reached the server', async () => {
    let verified = false;
    const transport = fakeTransport(async (_r, _o, call) => {
      if (call === 1) throw transient(false);
      throw new ProvisionError('FAILURE', 'Failed to provision device');
    });
    await assert.rejects(
      make(transport, {
        verifyCredentials: async () => {
          verified = true;
          return true;
        },
      }).provision(job({ credentialsMode: 'ACCESS_TOKEN' })),
      { status: 'FAILURE', message: 'Failed to provision device' },
    );
    assert.equal(verified, false);
  });
});
