/**
 * The Redis backend, for a fleet provisioned from several Node-RED instances. Its code and the
 * client library load when a Redis store is first opened, never at start-up.
 */
import { redisEndpoint, type RedisStoreOptions } from './options';
import type { RedisCredentialStore } from './store';

export {
  DEFAULT_REDIS_PREFIX,
  DEFAULT_REDIS_URL,
  RedisOptionsError,
  redisEndpoint,
  type RedisStoreOptions,
  type RedisTlsOptions,
} from './options';
export type { RedisCredentialStore } from './store';

/** A handle on the Redis store the options name; throws RedisOptionsError for unusable options. */
export function openRedisStore(options: RedisStoreOptions): RedisCredentialStore {
  const endpoint = redisEndpoint(options);
  const { RedisStore } = require('./store') as typeof import('./store');
  return new RedisStore(endpoint);
}
