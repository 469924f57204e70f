/**
 * What the Redis backend is told, checked before any connection: the URL (never with a password:
 * that is a credential of its own), the key prefix, TLS material and replication to wait for.
 */
import type { ConnectionOptions } from 'node:tls';
import type { StoreWarningListener } from '../types';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379/0';
export const DEFAULT_REDIS_PREFIX = 'tb-provision:';

/** The TLS material a core tls-config node gives, for rediss:// only. */
export type RedisTlsOptions = Pick<
  ConnectionOptions,
  'ca' | 'cert' | 'key' | 'passphrase' | 'servername' | 'rejectUnauthorized'
>;

export interface RedisStoreOptions {
  /** `redis://host:port/db` or `rediss://host:port/db`; a password in it is refused. */
  url?: string;
  /** Sent with AUTH; never part of the URL, a log line or an error text. */
  password?: string;
  /** Every key of this store starts with it, so several fleets can share one Redis. */
  prefix?: string;
  tls?: RedisTlsOptions;
  onWarning?: StoreWarningListener;
}

/** Where and how to connect, as parsed from the options. */
export interface RedisEndpoint {
  host: string;
  port: number;
  database: number;
  username: string | undefined;
  password: string | undefined;
  /** Set for rediss://, verifying the server's certificate unless told otherwise. */
  tls: RedisTlsOptions | undefined;
  /** Replicas each put waits for (`?wait=`), 0 for none. */
  waitReplicas: number;
  /** How long a put waits for them (`?waitTimeout=`, milliseconds). */
  waitTimeoutMs: number;
  prefix: string;
  /** The URL without user or password, for sentences. */
  shown: string;
}

const DEFAULT_WAIT_TIMEOUT_MS = 1000;

/** Thrown for options that can never work: the flow's author has to change them. */
export class RedisOptionsError extends Error {
  override readonly name = 'RedisOptionsError';
}

function wholeNumber(text: string | null, what: string, min: number, max: number): number {
  const n = Number(text);
  if (text === null || text.trim() === '' || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new RedisOptionsError(`${what} must be a whole number from ${min} to ${max}.`);
  }
  return n;
}

/** Parses and checks the options; throws RedisOptionsError with the fix in its text. */
export function redisEndpoint(options: RedisStoreOptions): RedisEndpoint {
  const text = (options.url ?? '').trim() || DEFAULT_REDIS_URL;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new RedisOptionsError(
      'The Redis URL is not a URL: write it as redis://host:6379/0 or rediss://host:6380/0.',
    );
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new RedisOptionsError(
      `The Redis URL must start with redis:// or rediss://, not ${url.protocol}//.`,
    );
  }
  if (url.password !== '') {
    // Never echo the URL here: it holds the password.
    throw new RedisOptionsError(
      'The Redis URL contains a password: remove it from the URL and enter it as the Redis ' +
        'password of the config node, which Node-RED keeps as a credential.',
    );
  }
  if (url.hostname === '') throw new RedisOptionsError('The Redis URL names no host.');
  const port = url.port === '' ? 6379 : wholeNumber(url.port, 'The Redis port', 1, 65535);
  const path = url.pathname.replace(/^\//, '');
  const database = path === '' ? 0 : wholeNumber(path, 'The Redis database (after /)', 0, 65535);
  for (const name of url.searchParams.keys()) {
    if (name !== 'wait' && name !== 'waitTimeout') {
      throw new RedisOptionsError(
        `The Redis URL has an unknown parameter ${JSON.stringify(name)}: only wait and ` +
          'waitTimeout are understood.',
      );
    }
  }
  const wait = url.searchParams.get('wait');
  const waitTimeout = url.searchParams.get('waitTimeout');
  const prefix = options.prefix ?? DEFAULT_REDIS_PREFIX;
  if (prefix === '' || /\s/.test(prefix)) {
    throw new RedisOptionsError('The Redis key prefix must be set and contain no spaces.');
  }
  const secure = url.protocol === 'rediss:';
  if (options.tls && !secure) {
    throw new RedisOptionsError(
      'A TLS configuration is chosen for Redis, but the URL starts with redis://: use rediss://.',
    );
  }
  const shown = `${url.protocol}//${url.host}/${database}`;
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port,
    database,
    username: url.username === '' ? undefined : decodeURIComponent(url.username),
    password: options.password === '' ? undefined : options.password,
    tls: secure ? { rejectUnauthorized: true, ...options.tls } : undefined,
    waitReplicas: wait === null ? 0 : wholeNumber(wait, 'wait (replicas)', 0, 100),
    waitTimeoutMs:
      waitTimeout === null
        ? DEFAULT_WAIT_TIMEOUT_MS
        : wholeNumber(waitTimeout, 'waitTimeout (milliseconds)', 1, 600_000),
    prefix,
    shown: wait === null ? shown : `${shown}?wait=${wait}`,
  };
}
