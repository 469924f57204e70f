/**
 * The Redis backend: entries under a key prefix, shared by every process that names the same
 * Redis and prefix. put() resolves once Redis acknowledged the write (and the replicas asked for
 * with `?wait=` did); get() answers what Redis holds. How durable an acknowledged write is depends
 * on Redis's own persistence (appendonly, appendfsync).
 */
import type {
  ClaimOptions,
  CredentialStore,
  DeviceClaim,
  DeviceKey,
  HeldElsewhere,
  StoredEntry,
} from '../types';
import { errorText } from '../../protocol/errors';
import { keyOf } from '../entry';
import { StoreUnavailableError } from '../errors';
import { RedisClaims } from './claims';
import { COMMAND_TIMEOUT_MS, RedisConnection, RedisUnavailableError } from './connection';
import type { RedisEndpoint } from './options';
import { deviceKeys, entryPattern, parseEntry, serializeEntry } from './records';

/** An answer in hand is worth waiting for: a put outlives an outage this long. */
const PUT_PATIENCE_MS = 30_000;
const PUT_RETRY_MS = 250;

/** A Redis store handle, with what only Redis has. */
export interface RedisCredentialStore extends CredentialStore {
  claim(key: DeviceKey, options: ClaimOptions): Promise<DeviceClaim | HeldElsewhere>;
  /** Every entry under the prefix; `onDamaged` hears of keys whose value cannot be used. */
  entries(onDamaged?: (redisKey: string, problem: string) => void): AsyncGenerator<StoredEntry>;
}

export class RedisStore implements RedisCredentialStore {
  private readonly commands: RedisConnection;
  /** Puts and the WAIT after them share a connection: WAIT counts that connection's writes. */
  private readonly writes: RedisConnection;
  private readonly claims: RedisClaims;
  private readonly puts = new Set<Promise<void>>();
  private released: Promise<void> | undefined;

  constructor(private readonly endpoint: RedisEndpoint) {
    this.commands = new RedisConnection(endpoint);
    this.writes = endpoint.waitReplicas > 0 ? new RedisConnection(endpoint) : this.commands;
    this.claims = new RedisClaims(
      this.commands,
      () => new RedisConnection(endpoint),
      endpoint.prefix,
    );
  }

  /** Nothing to load: whether Redis can be reached is told by each command. */
  ready(): Promise<void> {
    return this.released
      ? Promise.reject(new Error('This credential store was released'))
      : Promise.resolve();
  }

  /** Connected, or a StoreUnavailableError that says so; nothing is sent to the server then. */
  async writable(): Promise<boolean> {
    if (this.released) throw new Error('This credential store was released');
    try {
      await Promise.all([this.commands.reachable(), this.writes.reachable()]);
    } catch (err) {
      const name = this.describe();
      throw new StoreUnavailableError(
        'notWritable',
        `${name.charAt(0).toUpperCase()}${name.slice(1)}: ${errorText(err)}. ` +
          `${this.remedy('read').replace(/^./, (c) => c.toUpperCase())}.`,
        { cause: err },
      );
    }
    return false;
  }

  async get(key: DeviceKey): Promise<StoredEntry | undefined> {
    const redisKey = deviceKeys(this.endpoint.prefix, key).entry;
    const text = await this.commands.get(redisKey);
    return text === null ? undefined : parseEntry(text, redisKey);
  }

  put(entry: StoredEntry): Promise<void> {
    if (this.released) return Promise.reject(new Error('This credential store was released'));
    const done = this.keep(entry);
    this.puts.add(done);
    const forget = (): void => {
      this.puts.delete(done);
    };
    done.then(forget, forget);
    return done;
  }

  async flush(): Promise<void> {
    while (this.puts.size > 0) await Promise.allSettled([...this.puts]);
  }

  claim(key: DeviceKey, options: ClaimOptions): Promise<DeviceClaim | HeldElsewhere> {
    if (this.released) return Promise.reject(new Error('This credential store was released'));
    return this.claims.claim(key, options);
  }

  describe(): string {
    return `the Redis store ${this.endpoint.shown} (prefix ${JSON.stringify(this.endpoint.prefix)})`;
  }

  remedy(failure: 'read' | 'write'): string {
    return failure === 'read'
      ? 'check that Redis is running and reachable (the node reconnects by itself), then send ' +
          'the message again'
      : 'make Redis reachable again (the node reconnects by itself)';
  }

  async *entries(
    onDamaged?: (redisKey: string, problem: string) => void,
  ): AsyncGenerator<StoredEntry> {
    for await (const keys of this.commands.scan(entryPattern(this.endpoint.prefix))) {
      const values = (await this.commands.command(['MGET', ...keys])) as Array<string | null>;
      for (const [i, text] of values.entries()) {
        if (text === null) continue; // Deleted since the scan saw it.
        try {
          yield parseEntry(text, keys[i]);
        } catch (err) {
          onDamaged?.(keys[i], err instanceof Error ? err.message : String(err));
        }
      }
    }
  }

  release(): Promise<void> {
    this.released ??= (async () => {
      await this.flush();
      await this.claims.settled();
      this.claims.stop();
      this.commands.close();
      this.writes.close();
    })();
    return this.released;
  }

  /** Writes the entry, waiting out a short outage: an answer in hand must not be dropped. */
  private async keep(entry: StoredEntry): Promise<void> {
    const key = keyOf(entry);
    const value = serializeEntry(entry);
    const giveUpAt = Date.now() + PUT_PATIENCE_MS;
    for (;;) {
      try {
        await this.claims.keep(this.writes, key, value);
        break;
      } catch (err) {
        const refused = err instanceof RedisUnavailableError && err.refused;
        if (refused || Date.now() + PUT_RETRY_MS > giveUpAt) throw err;
        await new Promise((resolve) => setTimeout(resolve, PUT_RETRY_MS));
      }
    }
    const { waitReplicas, waitTimeoutMs } = this.endpoint;
    if (waitReplicas === 0) return;
    const acknowledged = Number(
      await this.writes.command(
        ['WAIT', String(waitReplicas), String(waitTimeoutMs)],
        waitTimeoutMs + COMMAND_TIMEOUT_MS,
      ),
    );
    if (acknowledged < waitReplicas) {
      throw new RedisUnavailableError(
        `Redis kept the entry, but only ${acknowledged} of ${waitReplicas} replicas confirmed ` +
          `it within ${waitTimeoutMs} ms`,
      );
    }
  }
}
