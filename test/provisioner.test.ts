/**
 * The job layer on its own. It has no sockets by design, so an in-process transport stands in
 * for the network here; test/provisioner-emulator.test.ts runs it over the real transports.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { getEventListeners } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ProvisionError } from '../src/protocol/errors';
import type { ProvisionAnswer, ProvisionRequest } from '../src/protocol/types';
import {
  CredentialsNotSavedError,
  ProvisionCancelledError,
  Provisioner,
  type ProvisionerOptions,
  type VerifyCredentials,
} from '../src/provisioner/provisioner';
import { openCredentialStore, type CredentialStore } from '../src/provisioner/store';
import type { ProvisionJob, StoredEntry } from '../src/provisioner/types';
import type { Transport, TransportOptions } from '../src/transports/types';

const SECRET = 'provision-secret-Zq81';

interface Call {
  request: ProvisionRequest;
  options: TransportOptions;
  startedAt: number;
}

type Handler = (
  request: ProvisionRequest,
  options: TransportOptions,
  call: number,
) => Promise<ProvisionAnswer>;

function fakeTransport(handler: Handler): Transport & { calls: Call[] } {
  const calls: Call[] = [];
  const transport = (async (_target, request, options) => {
    calls.push({ request: structuredClone(request), options, startedAt: Date.now() });
    return handler(request, options, calls.length);
  }) as Transport & { calls: Call[] };
  transport.calls = calls;
  return transport;
}

function token(value: string): ProvisionAnswer {
  return { status: 'SUCCESS', credentialsType: 'ACCESS_TOKEN', credentialsValue: value };
}

/** Echoes device-chosen credentials as ThingsBoard does; server-chosen: a fixed token. */
function echo(request: ProvisionRequest): ProvisionAnswer {
  if (request.token) return token(request.token);
  if (request.clientId || request.username) {
    return {
      status: 'SUCCESS',
      credentialsType: 'MQTT_BASIC',
      credentialsValue: {
        clientId: request.clientId,
        userName: request.username,
        password: request.password,
      },
    };
  }
  if (request.hash) {
    const body = request.hash.replace(/-----[A-Z ]+-----|\s/g, '');
    return { status: 'SUCCESS', credentialsType: 'X509_CERTIFICATE', credentialsValue: body };
  }
  return token('server-chosen-token-0001');
}

const transient = (maybeDelivered = false): ProvisionError =>
  new ProvisionError('CONNECTION_ERROR', 'Connection refused by tb.example.com:8080 (HTTP)', {
    transient: true,
    maybeDelivered,
  });

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Rejects like the real transports when the signal aborts. */
function untilAborted(options: TransportOptions): Promise<never> {
  return new Promise((_, reject) => {
    const fail = (): void =>
      reject(new ProvisionError('CONNECTION_ERROR', 'Provisioning was cancelled'));
    if (options.signal?.aborted) fail();
    options.signal?.addEventListener('abort', fail, { once: true });
  });
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function job(overrides: Partial<ProvisionJob> = {}): ProvisionJob {
  return {
    transport: 'http',
    target: { host: 'tb.example.com', port: 8080 },
    provisionDeviceKey: 'profile-key',
    provisionDeviceSecret: SECRET,
    deviceName: 'dev-1',
    credentialsMode: 'server',
    timeoutMs: 5_000,
    retries: 2,
    persist: false,
    ...overrides,
  };
}

describe('provisioner', () => {
  const provisioners: Provisioner[] = [];
  const stores: CredentialStore[] = [];
  let root: string;

  function make(transport: Transport, options: Partial<ProvisionerOptions> = {}): Provisioner {
    const provisioner = new Provisioner({
      concurrency: 8,
      transports: { http: transport, mqtt: transport, coap: transport },
      sleep: async () => undefined,
      ...options,
    });
    provisioners.push(provisioner);
    return provisioner;
  }

  function store(): CredentialStore {
    const opened = openCredentialStore(
      path.join(root, `store-${stores.length}`, 'credentials.json'),
    );
    stores.push(opened);
    return opened;
  }

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-provisioner-test-'));
  });

  afterEach(async () => {
    await Promise.all(provisioners.splice(0).map((p) => p.close()));
    await Promise.all(stores.splice(0).map((s) => s.release()));
    fs.rmSync(root, { recursive: true, force: true });
  });

  describe('validation', () => {
    for (const [label, overrides] of [
      ['a missing device name', { deviceName: undefined }],
      ['an empty device name', { deviceName: '' }],
      ['a whitespace-only device name', { deviceName: ' \t ' }],
      ['a missing secret', { provisionDeviceSecret: '' }],
      ['a missing key', { provisionDeviceKey: '' }],
      [
        'credentials of the wrong shape',
        { credentialsMode: 'ACCESS_TOKEN', credentials: { password: 'x' } },
      ],
      ['credentials that are not an object', { credentialsMode: 'MQTT_BASIC', credentials: 'abc' }],
      ['an unknown credentials mode', { credentialsMode: 'PSK' }],
      ['an unknown transport', { transport: 'ws' }],
      ['a negative retry count', { retries: -1 }],
      ['a zero timeout', { timeoutMs: 0 }],
    ] as Array<[string, Partial<ProvisionJob>]>) {
      it(`rejects ${label} with INVALID_INPUT before anything is sent`, async () => {
        const transport = fakeTransport(async (r) => echo(r));
        const provisioner = make(transport);
        await assert.rejects(provisioner.provision(job(overrides)), (err: ProvisionError) => {
          assert.equal(err.status, 'INVALID_INPUT');
          assert.ok(!err.message.includes(SECRET));
          return true;
        });
        assert.equal(transport.calls.length, 0);
      });
    }

    it('ignores msg.credentials when the server chooses the credentials', async () => {
      const transport = fakeTransport(async (r) => echo(r));
      const result = await make(transport).provision(
        job({ credentials: { token: 'mine-123456' } }),
      );
      assert.equal(result.answer.credentialsValue, 'server-chosen-token-0001');
      assert.equal(transport.calls[0].request.token, undefined);
      assert.equal(transport.calls[0].request.credentialsType, undefined);
    });

    it('sends the trimmed name, key, secret, gateway flag and supplied credentials', async () => {
      const transport = fakeTransport(async (r) => echo(r));
      const result = await make(transport).provision(
        job({
          deviceName: '  dev-7 ',
          gateway: true,
          credentialsMode: 'ACCESS_TOKEN',
          credentials: { token: 'my-own-token-42' },
        }),
      );
      assert.deepEqual(transport.calls[0].request, {
        provisionDeviceKey: 'profile-key',
        provisionDeviceSecret: SECRET,
        deviceName: 'dev-7',
        credentialsType: 'ACCESS_TOKEN',
        token: 'my-own-token-42',
        gateway: true,
      });
      assert.equal(result.deviceName, 'dev-7');
      assert.deepEqual(result.answer, token('my-own-token-42'));
      assert.equal(result.cached, false);
      assert.ok(Math.abs(Date.parse(result.provisionedAt) - Date.now()) < 5_000);
      assert.equal(result.generated, undefined);
    });
  });

  describe('stored credentials', () => {
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
      assert.equal(
        credentials.get('tb.example.com', 'profile-key', 'dev-1')?.answer.credentialsValue,
        'token-2',
      );
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
        filePath: '/var/lib/nr/credentials.json',
        ready: async () => undefined,
        get: () => undefined,
        put: async (entry) => {
          puts.push(entry);
          await written.promise;
        },
        flush: async () => undefined,
        release: async () => undefined,
        close: async () => undefined,
        stats: () => ({ entries: 0, journals: 0, commits: 0, compactions: 0 }),
      };
      const transport = fakeTransport(async (r) => echo(r));
      let settled = false;
      const pending = make(transport, { store: slowStore })
        .provision(job({ persist: true }))
        .finally(() => {
          settled = true;
        });
      for (let i = 0; i < 5; i++) await tick();
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
      });
    });

    it('rejects with the credentials attached when they cannot be saved', async () => {
      fs.writeFileSync(path.join(root, 'blocker'), 'a file where a folder should be');
      const blocked = openCredentialStore(path.join(root, 'blocker', 'tb', 'credentials.json'));
      stores.push(blocked);
      const transport = fakeTransport(async () => token('precious-token-Abc123'));
      const provisioner = make(transport, { store: blocked });
      await assert.rejects(provisioner.provision(job({ persist: true })), (err: unknown) => {
        assert.ok(err instanceof CredentialsNotSavedError);
        assert.equal(err.status, 'FAILURE');
        assert.equal(err.result.answer.credentialsValue, 'precious-token-Abc123');
        assert.equal(err.result.deviceName, 'dev-1');
        assert.ok(err.message.includes(blocked.filePath), err.message);
        assert.match(err.message, /could not be saved/);
        assert.ok(!err.message.includes('precious-token-Abc123'));
        assert.ok(!err.message.includes(SECRET));
        return true;
      });
    });

    it('reports a credentials file that cannot be read, without sending anything', async () => {
      fs.mkdirSync(path.join(root, 'unreadable', 'credentials.json'), { recursive: true });
      const broken = openCredentialStore(path.join(root, 'unreadable', 'credentials.json'));
      stores.push(broken);
      const transport = fakeTransport(async (r) => echo(r));
      await assert.rejects(make(transport, { store: broken }).provision(job({ persist: true })), {
        status: 'FAILURE',
        message: /could not be read/,
      });
      assert.equal(transport.calls.length, 0);
    });
  });

  describe('single flight', () => {
    it('sends one request for two simultaneous jobs for the same device; both get the answer', async () => {
      const answer = deferred<ProvisionAnswer>();
      const transport = fakeTransport(() => answer.promise);
      const credentials = store();
      await credentials.ready(); // single flight is the point here, not the store's first load
      const provisioner = make(transport, { store: credentials });
      const a = provisioner.provision(job({ persist: true }));
      const b = provisioner.provision(
        job({ persist: false, target: { host: 'Tb.Example.Com', port: 8080 } }),
      );
      const c = provisioner.provision(job({ persist: true, reprovision: true }));
      const other = provisioner.provision(job({ deviceName: 'dev-2' }));
      for (let i = 0; i < 5; i++) await tick();
      assert.equal(transport.calls.length, 2);
      answer.resolve(token('shared-token-0001'));
      const results = await Promise.all([a, b, c, other]);
      for (const result of results.slice(0, 3)) {
        assert.equal(result.answer.credentialsValue, 'shared-token-0001');
        assert.equal(result.cached, false);
      }
      assert.equal(transport.calls.length, 2);
      results[0].answer.credentialsValue = 'mutated';
      assert.equal(
        results[1].answer.credentialsValue,
        'shared-token-0001',
        'each job gets its own copy',
      );
    });

    it('joins a request in flight even while the store is still loading', async () => {
      const answer = deferred<ProvisionAnswer>();
      const transport = fakeTransport(() => answer.promise);
      const loading = deferred<undefined>();
      const slowStore = Object.assign(Object.create(store()) as CredentialStore, {
        ready: () => loading.promise,
      });
      const provisioner = make(transport, { store: slowStore });
      const quick = provisioner.provision(job({ persist: false }));
      const patient = provisioner.provision(job({ persist: true }));
      for (let i = 0; i < 5; i++) await tick();
      answer.resolve(token('joined-token-0001'));
      await quick;
      loading.resolve(undefined);
      const joined = await patient;
      assert.equal(transport.calls.length, 1, 'one request for both');
      assert.equal(joined.answer.credentialsValue, 'joined-token-0001');
      assert.equal(joined.cached, false);
    });

    it('lets every job that comes before the store has loaded share one wait, each cancelled on its own', async () => {
      const loading = deferred<undefined>();
      const slowStore = Object.assign(Object.create(store()) as CredentialStore, {
        ready: () => loading.promise,
      });
      const transport = fakeTransport((request) =>
        Promise.resolve(token(`t-${request.deviceName}`)),
      );
      const provisioner = make(transport, { store: slowStore, concurrency: 50 });
      const own = new AbortController();
      const mine = provisioner.provision(
        job({ deviceName: 'own-signal', signal: own.signal, persist: true }),
      );
      const jobs = Array.from({ length: 2000 }, (_, i) =>
        provisioner.provision(job({ deviceName: `early-${i}`, persist: true })),
      );
      for (let i = 0; i < 5; i++) await tick();
      const closing = (provisioner as unknown as { closing: AbortController }).closing.signal;
      assert.equal(getEventListeners(closing, 'abort').length, 1, 'one shared wait on close');
      own.abort();
      await assert.rejects(mine, ProvisionCancelledError);
      loading.resolve(undefined);
      const results = await Promise.all(jobs);
      assert.equal(transport.calls.length, 2000);
      assert.equal(results[1999].answer.credentialsValue, 't-early-1999');
    });

    it('gives each job waiting for the store its own error when the provisioner closes or the store cannot load', async () => {
      const never = Object.assign(Object.create(store()) as CredentialStore, {
        ready: () => new Promise<void>(() => undefined),
      });
      const closed = make(
        fakeTransport(() => Promise.resolve(token('unused-token'))),
        {
          store: never,
        },
      );
      const waiting = [1, 2, 3].map((i) =>
        closed.provision(job({ deviceName: `w-${i}`, persist: true })),
      );
      const settled = Promise.allSettled(waiting);
      await closed.close();
      const cancelled = (await settled).map((r) => (r as PromiseRejectedResult).reason as Error);
      for (const err of cancelled) assert.ok(err instanceof ProvisionCancelledError);
      assert.equal(new Set(cancelled).size, 3);

      const broken = Object.create(store(), {
        ready: { value: () => Promise.reject(new Error('EACCES: permission denied')) },
        filePath: { value: '/nowhere/credentials.json' },
      }) as CredentialStore;
      const failing = make(
        fakeTransport(() => Promise.resolve(token('unused-token'))),
        {
          store: broken,
        },
      );
      const errors = await Promise.all(
        [1, 2].map((i) =>
          failing.provision(job({ deviceName: `f-${i}`, persist: true })).then(
            () => assert.fail('resolved'),
            (err: ProvisionError) => err,
          ),
        ),
      );
      for (const err of errors) {
        assert.equal(err.status, 'FAILURE');
        assert.match(err.message, /could not be read: EACCES/);
      }
      assert.notEqual(errors[0], errors[1]);
    });

    it('stores the shared answer when a joining job asks for it', async () => {
      const answer = deferred<ProvisionAnswer>();
      const credentials = store();
      const provisioner = make(
        fakeTransport(() => answer.promise),
        { store: credentials },
      );
      const leader = provisioner.provision(job({ persist: false }));
      const joiner = provisioner.provision(job({ persist: true }));
      for (let i = 0; i < 5; i++) await tick();
      answer.resolve(token('shared-token-0002'));
      await Promise.all([leader, joiner]);
      assert.equal(
        credentials.get('tb.example.com', 'profile-key', 'dev-1')?.answer.credentialsValue,
        'shared-token-0002',
      );
    });

    it('keeps the request going for the others when one job is aborted, and stops it when all are', async () => {
      const transport = fakeTransport((_r, options) => untilAborted(options));
      const provisioner = make(transport);
      const first = new AbortController();
      const second = new AbortController();
      const a = provisioner.provision(job({ signal: first.signal }));
      const b = provisioner.provision(job({ signal: second.signal }));
      for (let i = 0; i < 5; i++) await tick();
      first.abort();
      await assert.rejects(a, ProvisionCancelledError);
      assert.equal(transport.calls[0].options.signal?.aborted, false);
      second.abort();
      await assert.rejects(b, ProvisionCancelledError);
      assert.equal(transport.calls[0].options.signal?.aborted, true);
      assert.equal(transport.calls.length, 1);
    });
  });

  describe('concurrency queue', () => {
    it('runs at most `concurrency` exchanges at once, in FIFO order, and reports every change', async () => {
      const pending: Array<Deferred<ProvisionAnswer>> = [];
      let inFlight = 0;
      let maxInFlight = 0;
      const transport = fakeTransport(async () => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        const answer = deferred<ProvisionAnswer>();
        pending.push(answer);
        try {
          return await answer.promise;
        } finally {
          inFlight--;
        }
      });
      const activity: Array<{ inFlight: number; queued: number }> = [];
      const provisioner = make(transport, { concurrency: 3, onActivity: (s) => activity.push(s) });
      const jobs = Array.from({ length: 10 }, (_, i) =>
        provisioner.provision(job({ deviceName: `dev-${i}` })),
      );
      for (let i = 0; i < 5; i++) await tick();
      assert.equal(provisioner.inFlight, 3);
      assert.equal(provisioner.queued, 7);
      assert.deepEqual(activity.at(-1), { inFlight: 3, queued: 7 });
      while (pending.length > 0 || transport.calls.length < 10) {
        pending.shift()?.resolve(token('t-000001'));
        for (let i = 0; i < 5; i++) await tick();
      }
      await Promise.all(jobs);
      assert.equal(maxInFlight, 3);
      assert.deepEqual(
        transport.calls.map((c) => c.request.deviceName),
        Array.from({ length: 10 }, (_, i) => `dev-${i}`),
      );
      assert.deepEqual(activity.at(-1), { inFlight: 0, queued: 0 });
      assert.ok(activity.every((s) => s.inFlight <= 3));
      for (let i = 1; i < activity.length; i++) assert.notDeepEqual(activity[i], activity[i - 1]);
    });

    it('lets more through at once when the concurrency is raised', async () => {
      const transport = fakeTransport((_r, options) => untilAborted(options));
      const provisioner = make(transport, { concurrency: 1 });
      const jobs = Array.from({ length: 4 }, (_, i) =>
        provisioner.provision(job({ deviceName: `dev-${i}` })).catch(() => undefined),
      );
      await tick();
      assert.equal(transport.calls.length, 1);
      provisioner.setConcurrency(3);
      await tick();
      assert.equal(transport.calls.length, 3);
      assert.equal(provisioner.queued, 1);
      assert.throws(() => provisioner.setConcurrency(0), RangeError);
      await provisioner.close();
      await Promise.all(jobs);
    });
  });

  describe('retries', () => {
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

    it('keeps a generated certificate and its key in the store', async function () {
      this.timeout(10_000);
      const credentials = store();
      const transport = fakeTransport(async (r) => echo(r));
      const result = await make(transport, { store: credentials }).provision(
        job({ credentialsMode: 'X509_CERTIFICATE', persist: true }),
      );
      const stored = credentials.get('tb.example.com', 'profile-key', 'dev-1');
      assert.ok(stored?.generated?.privateKey);
      assert.deepEqual(stored.generated, result.generated);
    });

    it('does not hand out a generated key when the server answers with another certificate', async () => {
      const transport = fakeTransport(async () => ({
        status: 'SUCCESS',
        credentialsType: 'X509_CERTIFICATE',
        credentialsValue: 'MIIBpreProvisionedCertificateBody',
      }));
      const result = await make(transport).provision(job({ credentialsMode: 'X509_CERTIFICATE' }));
      assert.equal(result.answer.credentialsValue, 'MIIBpreProvisionedCertificateBody');
      assert.equal(result.generated, undefined);
    });
  });

  describe('aborting', () => {
    it('removes a queued job at once, without ever sending it', async () => {
      const transport = fakeTransport((_r, options) => untilAborted(options));
      const provisioner = make(transport, { concurrency: 1 });
      const running = provisioner
        .provision(job({ deviceName: 'running' }))
        .catch((e: unknown) => e);
      const controller = new AbortController();
      const queued = provisioner.provision(
        job({ deviceName: 'queued', signal: controller.signal }),
      );
      await tick();
      assert.equal(provisioner.queued, 1);
      controller.abort();
      await assert.rejects(queued, ProvisionCancelledError);
      assert.equal(provisioner.queued, 0);
      await provisioner.close();
      assert.ok((await running) instanceof ProvisionCancelledError);
      assert.deepEqual(
        transport.calls.map((c) => c.request.deviceName),
        ['running'],
      );
    });

    it('keeps a queued request while another job still waits for it, and drops it when none does', async () => {
      const release = deferred<undefined>();
      const transport = fakeTransport(async (request) => {
        if (request.deviceName === 'running') await release.promise;
        return token(`token-${request.deviceName}`);
      });
      const provisioner = make(transport, { concurrency: 1 });
      const running = provisioner.provision(job({ deviceName: 'running' }));
      const leaving = new AbortController();
      const staying = new AbortController();
      const first = provisioner.provision(job({ deviceName: 'shared', signal: leaving.signal }));
      const second = provisioner.provision(job({ deviceName: 'shared', signal: staying.signal }));
      const alone = new AbortController();
      const dropped = provisioner.provision(job({ deviceName: 'dropped', signal: alone.signal }));
      await tick();
      assert.equal(provisioner.queued, 2);

      leaving.abort();
      await assert.rejects(first, ProvisionCancelledError);
      assert.equal(provisioner.queued, 2, 'the second job still waits for the shared request');
      alone.abort();
      await assert.rejects(dropped, ProvisionCancelledError);
      assert.equal(provisioner.queued, 1, 'nobody waits for the dropped request any more');

      release.resolve(undefined);
      assert.equal((await running).answer.credentialsValue, 'token-running');
      assert.equal((await second).answer.credentialsValue, 'token-shared');
      assert.deepEqual(
        transport.calls.map((c) => c.request.deviceName),
        ['running', 'shared'],
      );
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

    it('ends a running attempt and rejects as cancelled, not as the transport error', async () => {
      const transport = fakeTransport((_r, options) => untilAborted(options));
      const controller = new AbortController();
      const pending = make(transport).provision(job({ signal: controller.signal, retries: 3 }));
      await tick();
      controller.abort();
      await assert.rejects(pending, ProvisionCancelledError);
      assert.equal(transport.calls.length, 1);
    });

    it('rejects a job whose signal is already aborted without doing anything', async () => {
      const transport = fakeTransport(async (r) => echo(r));
      await assert.rejects(
        make(transport).provision(job({ signal: AbortSignal.abort() })),
        ProvisionCancelledError,
      );
      assert.equal(transport.calls.length, 0);
    });

    it('close() cancels queued and running jobs and waits until their exchanges have ended', async () => {
      let torndown = 0;
      const transport = fakeTransport(
        (_r, options) =>
          new Promise((_resolve, reject) => {
            options.signal?.addEventListener('abort', () =>
              setTimeout(() => {
                torndown++;
                reject(new ProvisionError('CONNECTION_ERROR', 'Provisioning was cancelled'));
              }, 30),
            );
          }),
      );
      const provisioner = make(transport, { concurrency: 2 });
      const jobs = Array.from({ length: 5 }, (_, i) =>
        provisioner.provision(job({ deviceName: `dev-${i}` })),
      );
      await tick();
      await provisioner.close();
      assert.equal(torndown, 2, 'close() resolved before the running exchanges ended');
      for (const pending of jobs) await assert.rejects(pending, ProvisionCancelledError);
      assert.equal(transport.calls.length, 2);
      assert.equal(provisioner.inFlight, 0);
      assert.equal(provisioner.queued, 0);
      await assert.rejects(provisioner.provision(job()), ProvisionCancelledError);
    });
  });

  describe('lost answer recovery', () => {
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
      assert.deepEqual(
        credentials.get('tb.example.com', 'profile-key', 'dev-1')?.answer,
        token(sent),
      );
    });

    it('recovers MQTT basic credentials with the answer ThingsBoard would have sent', async () => {
      const transport = lostThenFailure();
      const result = await make(transport, { verifyCredentials: async () => true }).provision(
        job({
          credentialsMode: 'MQTT_BASIC',
          credentials: { clientId: 'c-1', username: 'u-1', password: 'p-secret-1' },
        }),
      );
      assert.deepEqual(result.answer, {
        status: 'SUCCESS',
        credentialsType: 'MQTT_BASIC',
        credentialsValue: { clientId: 'c-1', userName: 'u-1', password: 'p-secret-1' },
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
});
