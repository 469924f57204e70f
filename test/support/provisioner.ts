/**
 * Shared by the provisioner suites. The job layer has no sockets by design, so an in-process
 * transport stands in for the network there; test/provisioner-emulator.test.ts runs it over the
 * real transports.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ProvisionError } from '../../src/protocol/errors';
import type { ProvisionAnswer, ProvisionRequest } from '../../src/protocol/types';
import { Provisioner, type ProvisionerOptions } from '../../src/provisioner/provisioner';
import type { ProvisionJob } from '../../src/provisioner/types';
import { deviceKey } from '../../src/store/entry';
import { openFileStore, type FileCredentialStore } from '../../src/store/file';
import type { CredentialStore, StoredEntry } from '../../src/store/types';
import type { Transport, TransportOptions } from '../../src/transports/types';

export const SECRET = 'provision-secret-Zq81';

export interface Call {
  request: ProvisionRequest;
  options: TransportOptions;
  startedAt: number;
}

type Handler = (
  request: ProvisionRequest,
  options: TransportOptions,
  call: number,
) => Promise<ProvisionAnswer>;

export function fakeTransport(handler: Handler): Transport & { calls: Call[] } {
  const calls: Call[] = [];
  const transport = (async (_target, request, options) => {
    calls.push({ request: structuredClone(request), options, startedAt: Date.now() });
    return handler(request, options, calls.length);
  }) as Transport & { calls: Call[] };
  transport.calls = calls;
  return transport;
}

export function token(value: string): ProvisionAnswer {
  return { status: 'SUCCESS', credentialsType: 'ACCESS_TOKEN', credentialsValue: value };
}

/** Echoes device-chosen credentials as ThingsBoard does; server-chosen: a fixed token. */
export function echo(request: ProvisionRequest): ProvisionAnswer {
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

export const transient = (maybeDelivered = false): ProvisionError =>
  new ProvisionError('CONNECTION_ERROR', 'Connection refused by tb.example.com:8080 (HTTP)', {
    transient: true,
    maybeDelivered,
  });

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Rejects like the real transports when the signal aborts. */
export function untilAborted(options: TransportOptions): Promise<never> {
  return new Promise((_, reject) => {
    const fail = (): void =>
      reject(new ProvisionError('CONNECTION_ERROR', 'Provisioning was cancelled'));
    if (options.signal?.aborted) fail();
    options.signal?.addEventListener('abort', fail, { once: true });
  });
}

export const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export async function ticks(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await tick();
}

export function job(overrides: Partial<ProvisionJob> = {}): ProvisionJob {
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

/** The entry a store holds for a device of the default job's server and profile. */
export function storedFor(
  store: CredentialStore,
  deviceName = 'dev-1',
  host = 'tb.example.com',
  profileKey = 'profile-key',
): Promise<StoredEntry | undefined> {
  return store.get(deviceKey(host, profileKey, deviceName));
}

export interface ProvisionerBench {
  /** A provisioner over `transport` for every transport name, closed after the test. */
  make(transport: Transport, options?: Partial<ProvisionerOptions>): Provisioner;
  /** A fresh file store in this test's folder, released after the test. */
  store(): FileCredentialStore;
  /** A store opened by the test itself, released after it. */
  adopt<T extends CredentialStore>(store: T): T;
  /** This test's temporary folder. */
  readonly root: string;
}

/** Installs mocha hooks: a temporary folder per test; after it, every provisioner and store closed. */
export function provisionerBench(): ProvisionerBench {
  const provisioners: Provisioner[] = [];
  const stores: CredentialStore[] = [];
  let root = '';

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-provisioner-test-'));
  });

  afterEach(async () => {
    await Promise.all(provisioners.splice(0).map((p) => p.close()));
    await Promise.all(stores.splice(0).map((s) => s.release()));
    fs.rmSync(root, { recursive: true, force: true });
  });

  const adopt = <T extends CredentialStore>(store: T): T => {
    stores.push(store);
    return store;
  };
  return {
    make(transport, options = {}) {
      const provisioner = new Provisioner({
        concurrency: 8,
        transports: { http: transport, mqtt: transport, coap: transport },
        sleep: async () => undefined,
        ...options,
      });
      provisioners.push(provisioner);
      return provisioner;
    },
    store() {
      const filePath = path.join(root, `store-${stores.length}`, 'credentials.json');
      return adopt(openFileStore({ filePath }));
    },
    adopt,
    get root() {
      return root;
    },
  };
}
