import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { ProvisionError } from '../src/protocol/errors';
import { backoffDelay } from '../src/provisioner/backoff';
import { ProvisionCancelledError } from '../src/provisioner/errors';
import {
  echo,
  fakeTransport,
  job,
  provisionerBench,
  token,
  transient,
} from './support/provisioner';

describe('provisioner: retries', () => {
  const { make } = provisionerBench();

  it('makes exactly 1 + retries attempts after transient failures, with bounded full-jitter backoff', async () => {
    const delays: number[] = [];
    const transport = fakeTransport(async () => {
      throw transient();
    });
    const provisioner = make(transport, {
      backoff: { baseMs: 100, maxMs: 350 },
      random: () => 0.999,
      sleep: async (ms) => {
        delays.push(ms);
      },
    });
    await assert.rejects(provisioner.provision(job({ retries: 4 })), {
      status: 'CONNECTION_ERROR',
    });
    assert.equal(transport.calls.length, 5);
    assert.equal(delays.length, 4);
    const caps = [100, 200, 350, 350];
    delays.forEach((d, i) =>
      assert.ok(d >= 0 && d < caps[i] && d > caps[i] * 0.99, `${d} vs ${caps[i]}`),
    );
  });

  it('draws each wait uniformly below its cap (full jitter)', async () => {
    const delays: number[] = [];
    const draws = [0.5, 0, 0.25];
    let n = 0;
    const transport = fakeTransport(async () => {
      throw transient();
    });
    const provisioner = make(transport, {
      random: () => draws[n++],
      sleep: async (ms) => {
        delays.push(ms);
      },
    });
    await assert.rejects(provisioner.provision(job({ retries: 3 })));
    assert.deepEqual(delays, [250, 0, 500]);
  });

  it('computes the wait from the retry number alone', () => {
    const backoff = { baseMs: 500, maxMs: 10_000 };
    assert.equal(
      backoffDelay(0, backoff, () => 1),
      500,
    );
    assert.equal(
      backoffDelay(3, backoff, () => 0.5),
      2_000,
    );
    assert.equal(
      backoffDelay(10, backoff, () => 1),
      10_000,
    );
  });

  it('gives every attempt its own fresh deadline', async () => {
    const transport = fakeTransport(async (_r, _o, call) => {
      if (call < 3) throw transient();
      return token('t-000002');
    });
    const provisioner = make(transport, {
      sleep: () => new Promise((resolve) => setTimeout(resolve, 20)),
    });
    await provisioner.provision(job({ timeoutMs: 1_000 }));
    assert.equal(transport.calls.length, 3);
    for (const call of transport.calls) {
      const allowed = call.options.deadline - call.startedAt;
      assert.ok(
        allowed > 990 && allowed <= 1_000,
        `deadline ${allowed} ms after the attempt started`,
      );
    }
    // Each attempt starts after a 20 ms backoff, so each deadline is later than the one before
    // (by less than 20 ms of Date.now() at times: a timer counts from the loop's cached clock).
    for (let k = 1; k < transport.calls.length; k++) {
      const later = transport.calls[k].options.deadline - transport.calls[k - 1].options.deadline;
      assert.ok(later >= 15, `attempt ${k + 1}'s deadline only ${later} ms after the one before`);
    }
  });

  it('retries zero times when told so', async () => {
    const transport = fakeTransport(async () => {
      throw transient();
    });
    await assert.rejects(make(transport).provision(job({ retries: 0 })));
    assert.equal(transport.calls.length, 1);
  });

  for (const error of [
    new ProvisionError('NOT_FOUND', 'Provision data was not found', { serverMessage: 'x' }),
    new ProvisionError('FAILURE', 'Failed to provision device', { serverMessage: 'x' }),
    new ProvisionError('PROTOCOL_ERROR', 'The answer was not JSON'),
    new ProvisionError('INVALID_INPUT', 'bad'),
  ]) {
    it(`never retries ${error.status}`, async () => {
      const transport = fakeTransport(async () => {
        throw error;
      });
      await assert.rejects(make(transport).provision(job({ retries: 5 })), {
        status: error.status,
      });
      assert.equal(transport.calls.length, 1);
    });
  }

  it('succeeds on a later attempt', async () => {
    const transport = fakeTransport(async (r, _o, call) => {
      if (call === 1) throw transient();
      return echo(r);
    });
    const result = await make(transport).provision(job());
    assert.equal(result.answer.credentialsValue, 'server-chosen-token-0001');
    assert.equal(transport.calls.length, 2);
  });

  it('sends the same generated credentials on every retry', async function () {
    this.timeout(10_000);
    for (const mode of ['ACCESS_TOKEN', 'MQTT_BASIC', 'X509_CERTIFICATE'] as const) {
      const transport = fakeTransport(async (r, _o, call) => {
        if (call < 3) throw transient();
        return echo(r);
      });
      const result = await make(transport).provision(job({ credentialsMode: mode }));
      const [first, ...rest] = transport.calls.map((c) => c.request);
      for (const later of rest) assert.deepEqual(later, first, mode);
      assert.equal(first.credentialsType, mode);
      if (mode === 'ACCESS_TOKEN') {
        assert.match(first.token ?? '', /^[A-Za-z0-9]{24}$/);
        assert.equal(result.answer.credentialsValue, first.token);
      }
      if (mode === 'MQTT_BASIC') {
        assert.ok(first.clientId && first.username && (first.password ?? '').length >= 24);
      }
      if (mode === 'X509_CERTIFICATE') {
        assert.ok(result.generated?.certificate && result.generated.privateKey);
        const cert = new X509Certificate(result.generated.certificate);
        assert.equal(cert.toLegacyObject().subject.CN, 'dev-1');
        assert.match(first.hash ?? '', /BEGIN CERTIFICATE/);
      }
    }
  });

  it('stops the backoff wait at once', async () => {
    const transport = fakeTransport(async () => {
      throw transient();
    });
    const provisioner = make(transport, {
      backoff: { baseMs: 60_000, maxMs: 60_000 },
      random: () => 1,
      sleep: undefined,
    });
    const controller = new AbortController();
    const started = Date.now();
    const pending = provisioner.provision(job({ signal: controller.signal }));
    await new Promise((resolve) => setTimeout(resolve, 20));
    controller.abort();
    await assert.rejects(pending, ProvisionCancelledError);
    assert.ok(Date.now() - started < 1_000);
    assert.equal(transport.calls.length, 1);
  });
});
